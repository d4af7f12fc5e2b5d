import CairnCore
import Foundation

/// Runs a program for a node: the task as JSON on stdin, JSON lines back on stdout.
///
/// ```
/// stdin : {"run_id", "task_id", "attempt", "node", "state", "input", "config", "progress",
///          "resume", "resumes"}     resume: the newest answer to this task's interrupt (absent
///                                    until it asked and was answered); resumes: every answer, oldest first
/// stdout: {"progress": …}            zero or more; each is reported with the next heartbeat
///         {"writes": {…}, "goto": …, "sends": [{"node", "input"}], "interrupt": …,
///          "metrics": {"cost": …, "api_calls": …}}      the result (the last such line wins)
/// exit  : non-zero is a failure whose message is the tail of stderr
/// ```
public struct ExecHandler: NodeHandler {
    public init() {}

    public func run(_ ctx: TaskContext) async throws -> NodeResult {
        let (executable, arguments) = try resolveCommand(ctx)
        var stdin: [String: JSONValue] = [
            "run_id": .string(ctx.runID), "task_id": .string(ctx.taskID), "attempt": .int(Int64(ctx.attempt)),
            "node": .string(ctx.node), "state": ctx.state, "config": ctx.config,
        ]
        stdin["input"] = ctx.input ?? .null
        stdin["progress"] = ctx.progress ?? .null
        if let answer = ctx.resume {
            stdin["resume"] = answer
            stdin["resumes"] = .array(ctx.resumes)
        }
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_RUN_ID"] = ctx.runID
        env["CAIRN_TASK_ID"] = ctx.taskID
        env["CAIRN_ATTEMPT"] = String(ctx.attempt)
        env["CAIRN_NODE"] = ctx.node
        for (k, v) in ctx.config["env"]?.objectValue ?? [:] { env[k] = v.stringValue ?? v.compactString }

        let outcome = try await ChildProcess.run(executable: executable, arguments: arguments,
                                                 directory: ctx.bundleDirectory, environment: env,
                                                 stdin: JSONValue.object(stdin).jsonBytes() + [0x0A],
                                                 timeout: ctx.timeout, onLine: { line in
            // Lines that are not JSON are the program's own output (logs, prints): not progress.
            if let v = try? JSONValue.parse(line), case .object(let o) = v, o.count == 1, let p = o["progress"] {
                ctx.reportProgress(p)
            }
        })
        if outcome.timedOut {
            throw NodeFailure("timed out after \(ctx.timeout.map { "\($0)" } ?? "?"); the program was killed", kind: "timeout")
        }
        guard outcome.status == 0 else {
            let tail = outcome.stderrTail.trimmingCharacters(in: .whitespacesAndNewlines)
            let what = outcome.signaled ? "was killed by signal \(outcome.status)" : "exited with status \(outcome.status)"
            throw NodeFailure(tail.isEmpty ? "\(executable) \(what)" : "\(tail) (\(what))", kind: "exit")
        }
        var result: [String: JSONValue]?
        // The result is the last JSON object line; other lines are the program's own output.
        for line in outcome.lines {
            if let v = try? JSONValue.parse(line), case .object(let o) = v, !(o.count == 1 && o["progress"] != nil) { result = o }
        }
        guard let r = result else {
            if outcome.lines.isEmpty { return NodeResult() }
            throw NodeFailure("the program printed no JSON result line on stdout", kind: "bad_result", nonRetryable: true)
        }
        return try Self.parseResult(r)
    }

    static func parseResult(_ r: [String: JSONValue]) throws -> NodeResult {
        var out = NodeResult()
        if let w = r["writes"] {
            guard case .object(let o) = w else { throw NodeFailure("'writes' must be an object", kind: "bad_result", nonRetryable: true) }
            out.writes = o
        }
        switch r["goto"] {
        case .string(let s)?: out.goto = [s]
        case .array(let a)?: out.goto = a.compactMap(\.stringValue)
        default: break
        }
        for s in r["sends"]?.arrayValue ?? [] {
            guard let node = s["node"]?.stringValue else { throw NodeFailure("each send needs a 'node'", kind: "bad_result", nonRetryable: true) }
            out.sends.append(.init(node: node, input: s["input"] ?? .null))
        }
        if let i = r["interrupt"], !i.isNull { out.interrupt = i }
        out.cost = r["metrics"]?["cost"]?.doubleValue ?? 0
        out.apiCalls = Int(r["metrics"]?["api_calls"]?.intValue ?? 0)
        return out
    }

    func resolveCommand(_ ctx: TaskContext) throws -> (String, [String]) {
        switch ctx.config["command"] {
        case .string(let s)?:
            return ("/bin/sh", ["-c", s])
        case .array(let parts)?:
            let words = parts.compactMap(\.stringValue)
            guard let first = words.first else { break }
            if first.hasPrefix("/") { return (first, Array(words.dropFirst())) }
            if first.contains("/") {
                let base = ctx.bundleDirectory ?? FileManager.default.currentDirectoryPath
                return ((base as NSString).appendingPathComponent(first), Array(words.dropFirst()))
            }
            return ("/usr/bin/env", words)
        default: break
        }
        throw NodeFailure("exec node '\(ctx.node)' has no command", kind: "config", nonRetryable: true)
    }
}
