import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a run of a graph file.",
        discussion: """
            The graph file's folder is packed and sent with the run when the graph has exec nodes, so relative commands like ./nodes/step.py run on any worker.

            With --wait: \(RunExit.help)
            """)

    @Argument(help: "The graph file (YAML or JSON).")
    var graph: String

    @Option(help: "The run's input: a JSON object of channel to value, or @file to read it from a file.")
    var input: String?

    @Option(name: .customLong("run-id"), help: "Choose the run's id (default: generated). A second submit with an active id is refused.")
    var runID: String?

    @Option(help: "hot or sync. Without a Redis tier every run is sync: each step is in SQLite before the next.")
    var durability: String?

    @Flag(help: "Wait for the run to end, showing its progress; exit status tells how it ended.")
    var wait = false

    @Option(help: "Submit this many runs of the graph over one connection (for load tests); --run-id becomes a prefix.")
    var count = 1

    @Flag(help: "With --wait: print on stderr how long the client waited, from sending the submit to seeing the run(s) end (no process start-up). scripts/bench times runs this way.")
    var timing = false

    @OptionGroup var connection: Connection

    /// `--input` as JSON text: inline, or read from `@file`; it must be a JSON object.
    static func inputText(_ input: String?) throws -> String? {
        try JSONArgument.text(input, option: "--input", object: true)
    }

    func validate() throws {
        guard (1...100_000).contains(count) else { throw ValidationError("--count is 1 to 100000") }
    }

    mutating func run() async throws {
        let inputText = try Self.inputText(input)
        guard FileManager.default.fileExists(atPath: graph) else { throw ValidationError("no graph file at \(graph)") }
        let req: Cairn_V1_SubmitRequest
        do {
            req = try .forFile(graph, input: inputText, runID: runID, durability: durability)
        } catch {
            FileHandle.standardError.write(Data("cairn: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let json = connection.json
        let wait = self.wait
        let timing = self.timing && wait
        func report(_ started: ContinuousClock.Instant) {
            guard timing else { return }
            let d = ContinuousClock.now - started
            let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            FileHandle.standardError.write(Data("timing: \(String(format: "%.6f", seconds)) s from submit sent to the end seen\n".utf8))
        }
        if count > 1 {
            let (n, prefix) = (count, runID)
            let statuses: [String] = try await connection.with { client in
                let started = ContinuousClock.now
                let requests = (0..<n).map { i -> Cairn_V1_SubmitRequest in
                    var r = req
                    if let prefix { r.runID = "\(prefix)-\(i)" }
                    return r
                }
                var finals: [Cairn_V1_RunInfo] = []
                for result in try await (wait ? client.submitAllAndWait(requests) : client.submitAll(requests)) {
                    switch result {
                    case .success(let info): finals.append(info)
                    case .failure(let e): FileHandle.standardError.write(Data("cairn: \(e.description)\n".utf8))
                    }
                }
                if wait { report(started) }
                if finals.isEmpty { throw ExitCode(1) }
                if json { Output.printJSON(.array(finals.map(Output.json))) } else {
                    print("submitted \(n) runs of \(finals.first?.graphName ?? "")" + (wait ? ": " + Dictionary(grouping: finals, by: \.status).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ") : ""))
                }
                return finals.map(\.status)
            }
            if wait { throw ExitCode(statuses.allSatisfy { $0 == "completed" } ? 0 : RunExit.code(statuses.first { $0 != "completed" } ?? "")) }
            return
        }
        let status: String = try await connection.with { client in
            let started = ContinuousClock.now
            // A refusal is reported by `connection.with`, as every command's is; a standby's answer
            // reaches it too, which asks the active coordinator instead.
            let info = try await client.submit(req)
            if !wait {
                if json { Output.printJSON(Output.json(info)) } else {
                    print("submitted \(Output.bold(info.runID)) (\(info.graphName)) — watch it with: cairn watch \(info.runID)")
                }
                return info.status
            }
            if json {
                // One JSON document: the run as it ended (`watch --json` streams the events).
                let last = try await client.watch(info.runID, finalOnly: true)
                report(started)
                Output.printJSON(Output.json(last.run))
                return last.run.status
            }
            print("submitted \(Output.bold(info.runID)) (\(info.graphName))")
            let last = try await WatchView(json: false).follow(client, info.runID)
            report(started)
            return last.run.status
        }
        if wait { throw ExitCode(RunExit.code(status)) }
    }
}
