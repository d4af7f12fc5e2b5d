import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a run's checkpoints, newest first, with the tasks each step ran.",
        discussion: "Read the state at any of them with: cairn state RUN --checkpoint ID")

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let h = try await connection.with { try await $0.history(runID) }
        if json { Output.printJSON(Output.json(h)); return }
        if !h.forkedFrom.isEmpty { print("\(Output.bold(h.runID)) was forked from \(h.forkedFrom); its parent's checkpoints follow its own (RUN column)") }
        let forked = h.checkpoints.contains { !$0.runID.isEmpty && $0.runID != h.runID }
        let header = ["STEP", "CHECKPOINT", "SOURCE", "TASKS", "UPDATED", "NEXT", "CREATED"] + (forked ? ["RUN"] : [])
        Output.table(header, h.checkpoints.map { c in
            let done = c.tasks.filter { $0.status == "completed" }
            var nodes: [String: Int] = [:]
            for t in done { nodes[t.node, default: 0] += 1 }
            let failed = c.tasks.count - done.count
            let tasks = nodes.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key)×\($0.value)" : $0.key }.joined(separator: " ")
                + (failed > 0 ? Output.color(" (+\(failed) failed/lost)", "33") : "")
            var next: [String: Int] = [:]
            for n in c.nextNodes { next[n, default: 0] += 1 }
            let nextText = next.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key)×\($0.value)" : $0.key }.joined(separator: " ")
            return ["\(c.step)", c.checkpointID.isEmpty ? Output.dim("(not recorded)") : c.checkpointID, c.source, tasks.isEmpty ? "-" : tasks,
                    c.updatedChannels.isEmpty ? "-" : c.updatedChannels.joined(separator: ","),
                    nextText.isEmpty ? "-" : nextText, Output.time(c.createdAt)]
                + (forked ? [c.runID == h.runID ? "" : Output.dim(c.runID)] : [])
        })
    }
}
