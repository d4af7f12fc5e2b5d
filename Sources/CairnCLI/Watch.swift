import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a run live: its step, its tasks and a progress bar, until it ends.",
        discussion: "With --json, one event per line (JSON Lines), the last with \"final\": true. " + RunExit.help)

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        // With standby coordinators, a watch outlives a fail-over: it follows the run on the new
        // active coordinator (a fresh snapshot, then the events from there).
        let last = try await connection.following(what: "the run") { client in try await WatchView(json: json).follow(client, runID) }
        throw ExitCode(RunExit.code(last.run.status))
    }
}

/// Renders a run's events: a live status line on a terminal, one line per step otherwise.
struct WatchView {
    var json: Bool

    func follow(_ client: CairnClient, _ runID: String) async throws -> Cairn_V1_RunEvent {
        let started = Date()
        var running: [String: Int] = [:]
        var liveLine = false
        func clearLive() {
            if liveLine { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)); liveLine = false }
        }
        let last = try await client.watch(runID) { e in
            // Each event reaches a pipe (`| jq`, a log file) as it happens, not in 4 KiB blocks,
            // and printed lines keep their order with the live line's direct writes.
            defer { fflush(nil) }  // every output stream: stdout is the one written
            if json {
                print(Output.json(e).compactString)  // JSON Lines: one event per line
                return
            }
            let r = e.run
            switch e.kind {
            case "snapshot":
                print("\(Output.bold(r.runID)) · graph \(r.graphName) · \(Output.status(r.status)) · step \(e.step)")
            case "task_started":
                running[e.node, default: 0] += 1
            case "task_finished":
                running[e.node, default: 1] -= 1
            case "task_failed":
                running[e.node, default: 1] -= 1
                clearLive()
                print("  \(Output.color("✗", "31")) \(e.node) (attempt \(e.attempt)\(e.worker.isEmpty ? "" : " on \(e.worker)")): \(e.message)")
            case "checkpoint":
                running = [:]
                clearLive()
                let next = r.nextNodes.isEmpty ? "" : " → next: \(r.nextNodes.joined(separator: ", "))"
                print("  \(Output.color("✓", "32")) step \(r.step) recorded\(next)")
            case "progress":
                clearLive()
                print("  … \(e.node): \(e.message)")
            default: break
            }
            if e.final {
                clearLive()
                return
            }
            if Output.isTTY {
                let nodes = running.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                    .map { $0.value > 1 ? "\($0.key)×\($0.value)" : $0.key }.joined(separator: " ")
                let cost = r.cost > 0 ? String(format: "  $%.2f", r.cost) : ""
                let line = "  step \(r.step + 1) \(Output.bar(Int(r.tasksDone), Int(r.tasksTotal))) \(r.tasksDone)/\(r.tasksTotal) tasks"
                    + (nodes.isEmpty ? "" : "  running: \(nodes)") + cost + "  " + Output.dim(Output.duration(Date().timeIntervalSince(started)))
                FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + String(line.prefix(200))).utf8))
                liveLine = true
            }
        }
        if !json {
            let r = last.run
            var summary = "\(Output.bold(r.runID)) \(Output.status(r.status)) after \(r.step) step\(r.step == 1 ? "" : "s")"
            if r.finishedAt > 0 && r.createdAt > 0 { summary += " in \(Output.duration(r.finishedAt - r.createdAt))" }
            if r.cost > 0 { summary += String(format: ", cost $%.2f", r.cost) }
            print(summary)
            if !r.error.isEmpty { print("  error: \(r.error)") }
            for line in Output.pausedLines(r) { print(line) }
        }
        return last
    }
}
