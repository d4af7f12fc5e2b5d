import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct State: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a run's state (channels) at its newest or a given checkpoint.")

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "A checkpoint id from `cairn history` (default: the newest).")
    var checkpoint: String?

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let cp = checkpoint
        let s = try await connection.with { try await $0.state(runID, checkpoint: cp) }
        let state = Output.json(s.stateJson)
        if json {
            Output.printJSON(.object(["run_id": .string(s.runID), "checkpoint_id": .string(s.checkpointID), "step": .int(Int64(s.step)),
                                      "state": state, "next": .array(s.nextNodes.map { .string($0) })]))
            return
        }
        print(Output.dim("run \(s.runID) · checkpoint \(s.checkpointID) · step \(s.step)" + (s.nextNodes.isEmpty ? "" : " · next: \(Set(s.nextNodes).sorted().joined(separator: ", "))")))
        // Pretty-printing cannot fail for a parsed value; the compact form is the same value.
        print((try? state.jsonString(pretty: true)) ?? state.compactString)
    }
}
