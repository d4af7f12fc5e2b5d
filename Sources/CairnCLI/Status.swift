import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one run: status, step, error, output.")

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let info = try await connection.with { try await $0.status(runID) }
        if json { Output.printJSON(Output.json(info)); return }
        var rows: [(String, String)] = [
            ("run", info.runID), ("graph", "\(info.graphName) (version \(info.graphVersion))"),
            ("status", Output.status(info.status)), ("step", "\(info.step)"),
            ("created", "\(Output.time(info.createdAt)) (\(Output.ago(info.createdAt)))"),
        ]
        if info.finishedAt > 0 { rows.append(("finished", "\(Output.time(info.finishedAt)) after \(Output.duration(info.finishedAt - info.createdAt))")) }
        if !info.nextNodes.isEmpty { rows.append(("next", info.nextNodes.joined(separator: ", "))) }
        if info.tasksTotal > 0 { rows.append(("tasks", "\(info.tasksDone)/\(info.tasksTotal) of this step done")) }
        if info.cost > 0 || info.apiCalls > 0 {
            let tokens = info.tokensIn + info.tokensOut > 0 ? ", \(info.tokensIn) tokens in, \(info.tokensOut) out" : ""
            rows.append(("cost", String(format: "$%.4f, %d API calls", info.cost, info.apiCalls) + tokens))
        }
        rows.append(("durability", info.durability))
        rows.append(("checkpoint", info.checkpointID))
        if !info.error.isEmpty { rows.append(("error", Output.color(info.error, "31"))) }
        if !info.forkedFrom.isEmpty { rows.append(("forked from", info.forkedFrom)) }
        if info.resumeCount > 0 { rows.append(("resumed", "\(info.resumeCount) time\(info.resumeCount == 1 ? "" : "s")")) }
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(Output.dim(k.padding(toLength: width, withPad: " ", startingAt: 0)) + "  " + v) }
        for line in Output.pausedLines(info) { print(line) }
        if !info.outputJson.isEmpty {
            print(Output.dim("output"))
            let output = Output.json(info.outputJson)
            // Pretty-printing cannot fail for a parsed value; the compact form is the same value.
            print((try? output.jsonString(pretty: true)) ?? output.compactString)
        }
    }
}
