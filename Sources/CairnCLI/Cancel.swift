import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a run; results still arriving for it are discarded.")

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let info = try await connection.with { try await $0.cancel(runID) }
        if json { Output.printJSON(Output.json(info)) } else { print("\(info.runID) \(Output.status(info.status))") }
    }
}
