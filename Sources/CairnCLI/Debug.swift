import ArgumentParser
import CairnClient
import CairnCore
import CairnProtocol
import Foundation

struct Debug: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Everything about one step of a run: the state it started from, each task's input, attempts, errors, writes, and the checkpoint it made.",
        discussion: """
            Without --step: the step a failed, paused or cancelled run stopped in, or a finished
            run's last step. With --json, one document to attach to a bug report.
            Examples: cairn debug r-abc123   cairn debug r-abc123 --step 3 --json > step3.json
            """)

    @Argument(help: "The run id.") var run: String
    @Option(help: "The step (1 is the first step after the input).") var step: Int?
    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let runID = run, step = self.step
        if let step, step < 0 { throw ValidationError("--step takes a step number of 0 or more") }
        let doc = try await connection.with { try await $0.debug(runID, step: step) }
        if connection.json { Output.printJSON(doc); return }
        DebugReport.print(doc)
    }
}

enum DebugReport {
    static func short(_ v: JSONValue, _ width: Int = 100) -> String {
        let s = String(decoding: v.jsonBytes(), as: UTF8.self)
        return s.count > width ? String(s.prefix(width - 1)) + "…" : s
    }

    static func print(_ doc: JSONValue) {
        let run = doc["run"] ?? .null
        Swift.print("\(Output.bold("run \(run["id"]?.stringValue ?? "?")")) \(Output.status(run["status"]?.stringValue ?? "?"))  graph \(run["graph"]?.stringValue ?? "?") v\(run["graph_version"]?.intValue ?? 0)  step \(doc["step"]?.intValue ?? 0)")
        if let e = run["error"]?.stringValue { Swift.print("error: \(e)") }
        if let s = doc["started_from"], s != .null {
            Swift.print("\n\(Output.bold("started from")) checkpoint \(s["checkpoint_id"]?.stringValue ?? "?") (\(s["source"]?.stringValue ?? "?"), step \(s["step"]?.intValue ?? 0), \(Output.time(s["created_at"]?.doubleValue ?? 0)))")
            let state = s["state"]?.objectValue ?? [:]
            Output.table(["CHANNEL", "VALUE"], state.keys.sorted().map { [$0, short(state[$0] ?? .null)] })
        }
        for t in doc["tasks"]?.arrayValue ?? [] {
            var reads = "all"
            if let list = t["reads"]?.arrayValue { reads = list.isEmpty ? "nothing" : list.compactMap(\.stringValue).joined(separator: ", ") }
            Swift.print("\n\(Output.bold("task \(t["node"]?.stringValue ?? "?")")) \(t["task_id"]?.stringValue ?? "?")  kind \(t["kind"]?.stringValue ?? "-")  reads \(reads)")
            if let input = t["input"], input != .null { Swift.print("input: \(short(input))") }
            let attempts = t["attempts"]?.arrayValue ?? []
            if attempts.isEmpty {
                Swift.print(Output.dim("no attempt recorded yet"))
            } else {
                Output.table(["ATTEMPT", "WORKER", "STATUS", "QUEUED", "RAN", "STARTED", "ERROR"], attempts.map { a in
                    [String(a["attempt"]?.intValue ?? 0), a["worker"]?.stringValue ?? "-", Output.status(a["status"]?.stringValue ?? "?"),
                     a["queue_ms"]?.intValue.map { "\($0)ms" } ?? "-",
                     a["duration_ms"]?.doubleValue.map { String(format: "%.1fms", $0) } ?? "-",
                     Output.time(a["started_at"]?.doubleValue ?? 0), a["error"]?.stringValue.map { short(.string($0), 60) } ?? "-"]
                })
                for a in attempts {
                    if let e = a["error"]?.stringValue, e.count > 58 || e.contains("\n") {
                        Swift.print(Output.dim("attempt \(a["attempt"]?.intValue ?? 0) error:"))
                        Swift.print(e.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))
                    }
                }
            }
            if let writes = t["writes"]?.arrayValue, !writes.isEmpty {
                Output.table(["WRITE", "CHANNEL", "VALUE"], writes.map { [$0["kind"]?.stringValue ?? "?", $0["channel"]?.stringValue ?? "?", short($0["value"] ?? .null, 80)] })
            }
        }
        if let p = doc["produced"], p != .null {
            Swift.print("\n\(Output.bold("produced")) checkpoint \(p["checkpoint_id"]?.stringValue ?? "?") (\(p["source"]?.stringValue ?? "?"), \(Output.time(p["created_at"]?.doubleValue ?? 0)))")
            let updated = p["updated"]?.objectValue ?? [:]
            if updated.isEmpty { Swift.print(Output.dim("no channel changed")) } else {
                Output.table(["UPDATED", "VALUE"], updated.keys.sorted().map { [$0, short(updated[$0] ?? .null)] })
            }
            let next = (p["next_tasks"]?.arrayValue ?? []).compactMap { $0["node"]?.stringValue }
            Swift.print("next: \(next.isEmpty ? "nothing (the run ends here)" : next.joined(separator: ", "))")
        } else {
            Swift.print("\n\(Output.dim("this step has produced no checkpoint (it failed, paused, was cancelled, or is running)"))")
        }
    }
}
