import CairnCore
import Foundation

/// The handlers of the node kinds every worker runs, one per name in `NodeKinds.builtin`.
public enum BuiltinHandlers {
    public static func all(pools: ProcessPools? = nil, pythonLibrary: String? = nil) -> [String: any NodeHandler] {
        [
            "echo": ImmediateHandler { ctx in NodeResult(writes: writes(ctx)) },
            "sleep": ClosureHandler { ctx in
                let ms = ctx.config["duration"]?.stringValue.flatMap(Durations.parseMillis)
                    ?? ctx.config["duration"]?.doubleValue.map { Int64($0 * 1000) } ?? 0
                try await Task.sleep(nanoseconds: UInt64(max(0, ms)) * 1_000_000)
                return NodeResult(writes: writes(ctx))
            },
            "fail": ImmediateHandler { ctx in
                throw NodeFailure(ctx.config["message"]?.stringValue ?? "node '\(ctx.node)' failed (fail node)",
                                  kind: "fail", nonRetryable: ctx.config["non_retryable"]?.boolValue ?? false)
            },
            "flaky": ImmediateHandler { ctx in
                let failures = Int(ctx.config["failures"]?.intValue ?? 1)
                if ctx.attempt <= failures {
                    let msg = ctx.config["message"]?.stringValue ?? "flaky failure"
                    throw NodeFailure("\(msg) (attempt \(ctx.attempt); fails the first \(failures))", kind: "flaky")
                }
                return NodeResult(writes: writes(ctx))
            },
            "map": ImmediateHandler { ctx in
                guard let over = ctx.config["over"]?.stringValue, let to = ctx.config["to"]?.stringValue else {
                    throw NodeFailure("map node needs 'over' and 'to'", nonRetryable: true)
                }
                let value = ctx.state[over] ?? .null
                guard case .array(let items) = value else {
                    if value.isNull { return NodeResult() }
                    throw NodeFailure("map over '\(over)': it holds \(value.kindName), not a list", kind: "bad_state", nonRetryable: true)
                }
                return NodeResult(sends: items.map { NodeResult.Send(node: to, input: $0) })
            },
            "exec": ExecHandler(pools: pools, pythonLibrary: pythonLibrary),
        ]
    }

    static func writes(_ ctx: TaskContext) -> [String: JSONValue] {
        ctx.config["writes"]?.objectValue ?? [:]
    }
}
