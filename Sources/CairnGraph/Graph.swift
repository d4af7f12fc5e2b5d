import CairnCore
import Foundation

/// A validated workflow graph: state channels, nodes and edges.
///
/// Graphs come from YAML or JSON files (`GraphParser`) or are built in Swift. A `Graph` is only
/// ever constructed through validation, so the scheduler can trust every name in it.
public struct Graph: Sendable {
    public var name: String
    public var version: Int
    public var channels: [String: ChannelSpec]
    public var nodes: [String: NodeSpec]
    public var edges: [Edge]
    public var interruptBefore: Set<String>
    public var interruptAfter: Set<String>
    /// Deadlines of pauses, by `interrupt_before:NODE` / `interrupt_after:NODE`.
    public var interruptDeadlines: [String: InterruptDeadline] = [:]
    public var limits: Limits

    public static let start = "START"
    public static let end = "END"

    public var nodeNames: [String] { nodes.keys.sorted() }
    public var channelNames: [String] { channels.keys.sorted() }

    /// The state every run starts from before its input is applied.
    public var initialState: [String: JSONValue] {
        var state: [String: JSONValue] = [:]
        for (name, channel) in channels {
            if let v = channel.initialValue { state[name] = v }
        }
        return state
    }
}

/// How long a pause may wait for a person, and what happens then.
public struct InterruptDeadline: Sendable, Equatable {
    public enum OnTimeout: Sendable, Equatable {
        /// The run fails, saying which question went unanswered for how long.
        case fail
        /// The run is resumed with this answer, as if a person had given it.
        case resume(JSONValue)
    }

    public var timeoutMS: Int64
    public var onTimeout: OnTimeout

    public init(timeoutMS: Int64, onTimeout: OnTimeout) { self.timeoutMS = timeoutMS; self.onTimeout = onTimeout }

    /// As a pending question records it.
    public var onTimeoutJSON: JSONValue {
        switch onTimeout {
        case .fail: return "fail"
        case .resume(let v): return .object(["resume": v])
        }
    }
}

public struct Limits: Sendable, Equatable {
    public var maxSteps: Int = 1_000
    public var maxTasksPerStep: Int = 10_000
    public init() {}
}

public struct ChannelSpec: Sendable, Equatable {
    public var name: String
    public var reducer: Reducer
    public var defaultValue: JSONValue?

    /// The value before any write: the declared default, or the reducer's identity.
    public var initialValue: JSONValue? {
        if let defaultValue { return defaultValue }
        switch reducer {
        case .replace: return nil
        case .append: return .array([])
        case .merge: return .object([:])
        case .sum: return .int(0)
        }
    }
}

public struct RetryPolicy: Sendable, Equatable {
    public var maxAttempts: Int = 1
    public var initialIntervalMS: Int64 = 1_000
    public var backoff: Double = 2.0
    public var maxIntervalMS: Int64 = 30_000
    public var jitter: Bool = true
    /// Error kinds (`error_kind` in a result) that are never retried.
    public var nonRetryable: [String] = []

    public init() {}

    /// The delay before attempt `next` (2, 3, …), without jitter.
    public func delayMS(beforeAttempt next: Int) -> Int64 {
        let exp = Double(initialIntervalMS) * pow(backoff, Double(max(0, next - 2)))
        return min(maxIntervalMS, Int64(exp))
    }
}

public struct NodeSpec: Sendable, Equatable {
    public var name: String
    /// The handler kind: `exec`, `echo`, `sleep`, `fail`, `flaky`, `map`, or a Swift handler's name.
    public var kind: String
    /// The node's whole definition, as JSON: handlers read their own keys from it.
    public var config: JSONValue
    public var retry: RetryPolicy
    public var timeoutMS: Int64?
}

public enum Edge: Sendable, Equatable {
    /// `from` → each of `to`, always.
    case direct(from: String, to: [String])
    /// `from` → the case matching the value of channel `on`, else `defaultTarget`.
    case route(from: String, on: String, cases: [String: String], defaultTarget: String?)
    /// All of `from` must have run (since the join last fired) → `to`.
    case join(from: [String], to: String)

    public var sources: [String] {
        switch self {
        case .direct(let from, _), .route(let from, _, _, _): return [from]
        case .join(let from, _): return from
        }
    }

    public var targets: [String] {
        switch self {
        case .direct(_, let to): return to
        case .route(_, _, let cases, let d): return Array(Set(cases.values).union(d.map { [$0] } ?? [])).sorted()
        case .join(_, let to): return [to]
        }
    }
}
