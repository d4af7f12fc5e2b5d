import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

/// JSON given on the command line: inline, or `@file`.
enum JSONArgument {
    static func text(_ arg: String?, option: String, object: Bool) throws -> String? {
        guard var text = arg else { return nil }
        if text.hasPrefix("@") {
            let path = String(text.dropFirst())
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw ValidationError("cannot read the \(option.dropFirst(2)) file \(path)")
            }
        }
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(text) } catch {
            throw ValidationError(object ? "\(option) must be a JSON object of channel to value, like '{\"topic\": \"tides\"}' (\(error))"
                                         : "\(option) must be JSON, like '{\"approved\": true}' or '\"a string\"' (\(error))")
        }
        if object, case .object = parsed {} else if object {
            throw ValidationError("\(option) must be a JSON object of channel to value, like '{\"topic\": \"tides\"}'")
        }
        return text
    }

    /// Who is answering or editing: recorded in the new checkpoint.
    static var who: String {
        let env = ProcessInfo.processInfo.environment
        return "\(env["USER"] ?? env["LOGNAME"] ?? "someone")@\(ProcessInfo.processInfo.hostName)"
    }
}

/// What `--wait` does after resume, fork or rewind: follow the run to its end, like submit.
enum Follow {
    static func after(_ info: Cairn_V1_RunInfo, _ client: CairnClient, wait: Bool, json: Bool, verb: String) async throws -> String {
        let active = info.status == "running" || info.status == "queued"
        if !wait || !active {
            if json { Output.printJSON(Output.json(info)) } else {
                print("\(verb) \(Output.bold(info.runID)) · \(Output.status(info.status)) · checkpoint \(info.checkpointID)"
                      + (active ? " — watch it with: cairn watch \(info.runID)" : ""))
                for line in Output.pausedLines(info) { print(line) }
            }
            return info.status
        }
        if json {
            let last = try await client.watch(info.runID, finalOnly: true)
            Output.printJSON(Output.json(last.run))
            return last.run.status
        }
        print("\(verb) \(Output.bold(info.runID)) from checkpoint \(info.checkpointID)")
        return try await WatchView(json: false).follow(client, info.runID).run.status
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a paused run, answering the question it waits on.",
        discussion: """
            A run pauses before a node in interrupt_before, after one in interrupt_after, or when a node returns "interrupt": its question. cairn status and cairn watch show each pending question's id and the command that answers it.

            A node that asked runs again with the answer: exec nodes find it on stdin as "resume" (and every answer so far, oldest first, as "resumes"); Swift handlers as context.resume. A node may ask again.

            With one question pending, --value answers it. With several, answer one with --interrupt ID, or several with --value '{"i-…": …, "i-…": …}'; the run goes on, and pauses again for the questions still unanswered. Without --value every pending question is answered with null.

            The answer, who gave it and when are recorded as a checkpoint (source resume) before anything runs.

            With --wait: \(RunExit.help)

            Examples:
              cairn resume r-3k9x2m1q7a --value '{"approved": true}' --wait
              cairn resume r-3k9x2m1q7a --interrupt i-3f9a1c2e --value @answer.json
            """)

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "The answer: any JSON value, or @file to read it from a file.")
    var value: String?

    @Option(name: .customLong("interrupt"), help: "The id of the question to answer (see cairn status RUN).")
    var interruptID: String?

    @Flag(help: "Follow the run until it ends or pauses again; the exit status tells how.")
    var wait = false

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        var req = Cairn_V1_ResumeRequest()
        req.runID = self.run
        if let v = try JSONArgument.text(value, option: "--value", object: false) { req.valueJson = Data(v.utf8) }
        req.interruptID = interruptID ?? ""
        req.by = JSONArgument.who
        let (json, wait) = (connection.json, self.wait)
        let status = try await connection.with { client in
            try await Follow.after(try await client.resume(req), client, wait: wait, json: json, verb: "resumed")
        }
        if wait { throw ExitCode(RunExit.code(status)) }
    }
}

struct Update: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write values into a run's state, as a new checkpoint.",
        discussion: """
            The values go through the channels' reducers (an append channel appends), as if --as-node had written them: the next tasks are then planned as if that node had just run. Without --as-node the plan stays as it was (and so do pending questions).

            Works on runs that are paused, completed, failed or cancelled; nothing runs. A run with tasks left is paused afterwards: continue it with cairn resume. A failed run updated without --as-node retries its failed step when resumed.

            Examples:
              cairn update r-3k9x2m1q7a --values '{"screenplay": "A shorter one."}'
              cairn update r-3k9x2m1q7a --values '{"approved": true}' --as-node approve
            """)

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "A JSON object of channel to value, or @file.")
    var values: String

    @Option(name: .customLong("as-node"), help: "Plan the next tasks as if this node had written the values.")
    var asNode: String?

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        var req = Cairn_V1_UpdateRequest()
        req.runID = self.run
        req.valuesJson = Data((try JSONArgument.text(values, option: "--values", object: true) ?? "{}").utf8)
        req.asNode = asNode ?? ""
        req.by = JSONArgument.who
        let json = connection.json
        let info = try await connection.with { try await $0.update(req) }
        if json { Output.printJSON(Output.json(info)); return }
        print("updated \(Output.bold(info.runID)) · \(Output.status(info.status)) · checkpoint \(info.checkpointID)"
              + (info.nextNodes.isEmpty ? "" : " · next: \(info.nextNodes.joined(separator: ", "))"))
        if info.status == "paused" && Output.pausedLines(info).isEmpty { print("  continue it with: cairn resume \(info.runID)") }
        for line in Output.pausedLines(info) { print(line) }
    }
}

/// Options fork and rewind share.
struct BranchOptions: ParsableArguments {
    @Option(help: "The checkpoint to start from (cairn history RUN lists them).")
    var checkpoint: String

    @Option(help: "Values to write first: a JSON object of channel to value, or @file.")
    var values: String?

    @Option(name: .customLong("as-node"), help: "With --values: plan the next tasks as if this node had written them.")
    var asNode: String?

    @Flag(help: "Follow the run until it ends or pauses; the exit status tells how.")
    var wait = false

    func request(_ runID: String) throws -> Cairn_V1_ForkRequest {
        var req = Cairn_V1_ForkRequest()
        req.runID = runID
        req.checkpointID = checkpoint
        if let v = try JSONArgument.text(values, option: "--values", object: true) { req.valuesJson = Data(v.utf8) }
        req.asNode = asNode ?? ""
        req.by = JSONArgument.who
        return req
    }
}

struct Fork: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a new run from any checkpoint of a run, and run it.",
        discussion: """
            The new run goes on from the checkpoint's planned tasks, with --values applied first. It records where it came from (forked_from in status and history), and its history reaches back through the parent's checkpoints. It stores only what changes after the fork point: the parent's values are read where they are.

            With --wait: \(RunExit.help)

            Example:
              cairn fork r-3k9x2m1q7a --checkpoint 0191f0c2a1b40000a1b2c3d4 --values '{"topic": "glaciers"}' --wait
            """)

    @Argument(help: "The run to fork.")
    var run: String

    @OptionGroup var branch: BranchOptions

    @Option(name: .customLong("run-id"), help: "The new run's id (default: generated); it must not exist.")
    var runID: String?

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        var req = try branch.request(self.run)
        req.newRunID = runID ?? ""
        let (json, wait) = (connection.json, branch.wait)
        let status = try await connection.with { client in
            try await Follow.after(try await client.fork(req), client, wait: wait, json: json, verb: "forked \(req.runID) →")
        }
        if wait { throw ExitCode(RunExit.code(status)) }
    }
}

struct Rewind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-run a run that is not active from an older checkpoint of its own.",
        discussion: """
            A new checkpoint (source rewind) copies the older one's state and plan, with --values applied first, and the run goes on from there under the same id. The checkpoints after the older one stay in its history. To keep the run as it ended and try something else beside it, use cairn fork.

            With --wait: \(RunExit.help)
            """)

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var branch: BranchOptions

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        var req = try branch.request(self.run)
        req.inPlace = true
        let (json, wait) = (connection.json, branch.wait)
        let status = try await connection.with { client in
            try await Follow.after(try await client.fork(req), client, wait: wait, json: json, verb: "rewound")
        }
        if wait { throw ExitCode(RunExit.code(status)) }
    }
}

extension Output {
    /// A paused run's questions, each with the command that answers it.
    static func pausedLines(_ r: Cairn_V1_RunInfo) -> [String] {
        guard r.status == "paused", !r.interruptJson.isEmpty else { return [] }
        let interrupt = json(r.interruptJson)
        let pending = interrupt["pending"]?.arrayValue ?? []
        if pending.isEmpty {
            if interrupt["reason"]?.stringValue == "update" { return ["  ⏸ paused after an update — continue: cairn resume \(r.runID)"] }
            return ["  ⏸ paused: \(interrupt.compactString) — continue: cairn resume \(r.runID)"]
        }
        var lines: [String] = []
        for p in pending {
            let id = p["id"]?.stringValue ?? "?", node = p["node"]?.stringValue ?? "?"
            let target = pending.count == 1 ? "" : " --interrupt \(id)"
            defer {
                if let at = p["deadline"]?.doubleValue {
                    let then = p["on_timeout"]?["resume"].map { "it is resumed with \($0.compactString)" } ?? "the run fails"
                    lines.append("     deadline: \(time(at)) (in \(duration(max(0, at - Date().timeIntervalSince1970)))); then \(then)")
                }
            }
            switch p["reason"]?.stringValue {
            case "node":
                let q = p["value"].map { $0.stringValue ?? $0.compactString } ?? "null"
                lines.append("  ⏸ \(bold(id))  node '\(node)' asks: \(q.count > 400 ? String(q.prefix(400)) + "…" : q)")
                lines.append("     answer: cairn resume \(r.runID)\(target) --value '<json>'")
            case "interrupt_before":
                lines.append("  ⏸ \(bold(id))  paused before '\(node)' (interrupt_before)")
                lines.append("     continue: cairn resume \(r.runID)\(target)   (a --value is given to '\(node)' as its resume)")
            default:
                lines.append("  ⏸ \(bold(id))  paused after '\(node)' (interrupt_after)")
                lines.append("     continue: cairn resume \(r.runID)\(target)")
            }
        }
        return lines
    }
}
