import CairnCore
import Foundation

/// Runs a program for a node: the task as JSON on stdin, JSON lines back on stdout.
///
/// ```
/// stdin : {"run_id", "task_id", "attempt", "node", "state", "input", "params", "config",
///          "progress", "resume", "resumes"}
///                          params: the node's `with:` object; resume: the newest answer to this
///                          task's interrupt (absent until it asked and was answered); resumes:
///                          every answer, oldest first
/// stdout: {"progress": …}            zero or more; each is reported with the next heartbeat
///         {"writes": {…}, "goto": …, "sends": [{"node", "input"}], "interrupt": …,
///          "metrics": {"cost", "api_calls", "tokens_in", "tokens_out", any: number},
///          "api_calls": [{provider, model, operation, tokens_in, tokens_out, cost, latency_ms, status}],
///          "assets": [{name, kind, uri, bytes, sha256, meta}]}      the result
///         {"error": "…", "retryable": false, "metrics"…}   or a failure, with its message (and
///                                                        what it spent: metrics, api_calls)
/// exit  : one-shot: non-zero is a failure whose message is the tail of stderr
/// ```
///
/// One-shot (the default): a process per task; the result is the last result line. Served
/// (`serve: true`, or `serve: {max_tasks, max_memory}`): processes of the program stay up, one
/// task at a time, each task one line on stdin, answered by exactly one result line; stdin
/// closed means exit. A served process that dies mid-task fails that attempt only and is replaced.
/// One whose results say `"state_cache": true` is sent `state_parts` and `state_evict` instead
/// of `state`: what changed since what it keeps (`ProcessStateMirror`).
public struct ExecHandler: NodeHandler {
    let pools: ProcessPools?
    /// The folder holding the worker's copy of the Python node library, first on PYTHONPATH.
    let pythonLibrary: String?

    /// Without pools, `serve:` nodes run one-shot.
    public init(pools: ProcessPools? = nil, pythonLibrary: String? = nil) {
        self.pools = pools
        self.pythonLibrary = pythonLibrary
    }

    public func run(_ ctx: TaskContext) async throws -> NodeResult {
        let (executable, arguments) = try resolveCommand(ctx)
        var stdin: [String: JSONValue] = [
            "run_id": .string(ctx.runID), "task_id": .string(ctx.taskID), "attempt": .int(Int64(ctx.attempt)),
            "node": .string(ctx.node), "config": ctx.config,
        ]
        let rawState = ctx.rawState
        if rawState == nil && ctx.stateView == nil { stdin["state"] = ctx.state }
        stdin["input"] = ctx.input ?? .null
        stdin["params"] = ctx.params
        stdin["progress"] = ctx.progress ?? .null
        if let answer = ctx.resume {
            stdin["resume"] = answer
            stdin["resumes"] = .array(ctx.resumes)
        }
        let rest = JSONValue.object(stdin).jsonBytes()
        var env = ProcessInfo.processInfo.environment
        for (k, v) in ctx.config["env"]?.objectValue ?? [:] { env[k] = v.stringValue ?? v.compactString }
        if let pythonLibrary { env["PYTHONPATH"] = PythonLibraryFolder.pythonPath(pythonLibrary, before: env["PYTHONPATH"]) }
        if let pools, let limits = try Self.serveLimits(ctx.config["serve"], node: ctx.node) {
            env["CAIRN_SERVE"] = "1"
            // The process that takes it decides how the state goes in (whole, or what changed).
            return try await served(ctx, pools: pools, limits: limits, line: .init(rest: rest, state: rawState, view: ctx.stateView),
                                    key: .init(executable: executable, arguments: arguments,
                                               directory: ctx.bundleDirectory, environment: env))
        }
        env["CAIRN_RUN_ID"] = ctx.runID
        env["CAIRN_TASK_ID"] = ctx.taskID
        env["CAIRN_ATTEMPT"] = String(ctx.attempt)
        env["CAIRN_NODE"] = ctx.node

        // The result is the last JSON object line that is not progress; lines that are not
        // JSON objects are the program's own output (logs, prints).
        let seen = Locked<(result: [String: JSONValue]?, printed: Bool)>((nil, false))
        var bytes = rest
        if let raw = rawState ?? ctx.stateView?.json {
            // {"state":RAW,...the rest}: the state goes in as the coordinator sent it.
            bytes = Array(#"{"state":"#.utf8) + raw + [UInt8(ascii: ",")] + rest.dropFirst()
        }
        bytes.append(0x0A)
        let outcome = try await ChildProcess.run(executable: executable, arguments: arguments,
                                                 directory: ctx.bundleDirectory, environment: env,
                                                 stdin: bytes, timeout: ctx.timeout, onLine: { line in
            seen.withLock { $0.printed = true }
            guard let v = try? JSONValue.parse(line), case .object(let o) = v else { return }
            if o.count == 1, let p = o["progress"] { ctx.reportProgress(p) } else { seen.withLock { $0.result = o } }
        })
        if outcome.timedOut {
            throw NodeFailure("timed out after \(ctx.timeout.map { "\($0)" } ?? "?"); the program was killed", kind: "timeout")
        }
        if outcome.overlong {
            throw NodeFailure("the program printed a line of more than \(ChildProcess.maxLineBytes >> 20) MiB on stdout; it was killed",
                              kind: "bad_result", nonRetryable: true)
        }
        let (result, printed) = seen.withLock { $0 }
        if let r = result, r["error"] != nil { return try Self.parseResult(r, stderr: outcome.stderrTail) }
        guard outcome.status == 0 else {
            let tail = outcome.stderrTail.trimmingCharacters(in: .whitespacesAndNewlines)
            let what = outcome.signaled ? "was killed by signal \(outcome.status)" : "exited with status \(outcome.status)"
            throw NodeFailure(tail.isEmpty ? "\(executable) \(what)" : "\(tail) (\(what))", kind: "exit")
        }
        guard let r = result else {
            if !printed { return NodeResult() }
            throw NodeFailure("the program printed no JSON result line on stdout", kind: "bad_result", nonRetryable: true)
        }
        return try Self.parseResult(r)
    }

    func served(_ ctx: TaskContext, pools: ProcessPools, limits: ProcessPools.Limits, line: ServedProcess.Line,
                key: ProcessPools.Key) async throws -> NodeResult {
        let reply = await pools.perform(key, limits: limits, line: line, timeout: ctx.timeout,
                                             onProgress: ctx.reportProgress)
        switch reply {
        case .result(let r, let stderr):
            return try Self.parseResult(r, stderr: stderr)
        case .overlong:
            throw NodeFailure("the served program printed a line of more than \(ChildProcess.maxLineBytes >> 20) MiB on stdout; it was killed and will be replaced",
                              kind: "bad_result", nonRetryable: true)
        case .died(let why, let stderr, let timedOut):
            if timedOut {
                throw NodeFailure("timed out after \(ctx.timeout.map { "\($0)" } ?? "?"); the served program was killed and will be replaced", kind: "timeout")
            }
            let tail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw NodeFailure(tail.isEmpty ? "served program \(key.executable) \(why) during the task" : "\(tail) (\(why))", kind: "exit")
        }
    }

    /// `serve: true | false | {max_tasks: N, max_memory: "512MB"}`; nil for one-shot.
    static func serveLimits(_ v: JSONValue?, node: String) throws -> ProcessPools.Limits? {
        switch v {
        case nil, .null?, .bool(false)?: return nil
        case .bool(true)?: return .init()
        case .object(let o)?:
            var l = ProcessPools.Limits()
            l.maxTasks = o["max_tasks"]?.intValue.map { Int($0) }
            if let m = o["max_memory"] {
                guard let bytes = ByteSizes.parse(m) else {
                    throw NodeFailure("node '\(node)': serve.max_memory must be a size like 512MB", kind: "config", nonRetryable: true)
                }
                l.maxMemoryBytes = bytes
            }
            return l
        default:
            throw NodeFailure("node '\(node)': serve must be true, false or {max_tasks, max_memory}", kind: "config", nonRetryable: true)
        }
    }

    /// One line of a node program's stdout as the worker reads it: nil for a line that is not a
    /// JSON object (the program's own output), else its result (or the failure it reports).
    public static func parseResultLine(_ line: [UInt8], stderr: String = "") throws -> NodeResult? {
        guard let v = try? JSONValue.parse(line), case .object(let o) = v else { return nil }
        return try parseResult(o, stderr: stderr)
    }

    /// A result line as the node printed it; a failure carries the task's stderr tail after the
    /// node's own message (what a person debugging it reads first), unless the message has it.
    static func parseResult(_ r: [String: JSONValue], stderr: String = "") throws -> NodeResult {
        var out = NodeResult()
        if let e = r["error"], !e.isNull {
            var message = e.stringValue ?? e.compactString
            let tail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            if !tail.isEmpty && !message.contains(tail) { message += "\nstderr:\n" + tail }
            var f = NodeFailure(message, kind: r["kind"]?.stringValue ?? "error",
                                nonRetryable: r["retryable"]?.boolValue == false)
            do {
                f.records = try TaskRecords.parse(metrics: r["metrics"], apiCalls: r["api_calls"], assets: r["assets"])
            } catch {
                f.message += " (and its records were not stored: \(error))"
            }
            throw f
        }
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
        do {
            out.records = try TaskRecords.parse(metrics: r["metrics"], apiCalls: r["api_calls"], assets: r["assets"])
        } catch {
            throw NodeFailure("the result's records are malformed: \(error)", kind: "bad_result", nonRetryable: true)
        }
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
