import CairnCore
import Foundation

/// What a handler gets for one task attempt.
public struct TaskContext: Sendable {
    public var runID: String
    public var taskID: String
    /// 1 for the first attempt; a retry or a reassignment after a lost worker counts up.
    public var attempt: Int
    public var node: String
    public var kind: String
    /// The run's state at the step's checkpoint: the whole of it, or the channels the node
    /// declares with `reads:`. For `exec` tasks it is left unparsed
    /// (`.null`) and `rawState` holds it: the program parses it, the worker only passes it on.
    public var state: JSONValue
    /// The state exactly as the coordinator sent it (JSON), for `exec` tasks.
    public var rawState: [UInt8]?
    /// The state channel by channel, when the worker's state cache built it (`exec` tasks; then
    /// `rawState` is nil and `stateView.json` is the same object).
    public var stateView: StateView?
    /// A send's own input (fan-out tasks); nil for edge-triggered tasks.
    public var input: JSONValue?
    /// The node's definition from the graph file.
    public var config: JSONValue
    /// The last progress an earlier attempt reported, so a long node can continue where it stopped.
    public var progress: JSONValue?
    /// Where the graph's folder is unpacked (relative `command` paths resolve here).
    public var bundleDirectory: String?
    /// How long the attempt may take, if the node has a timeout.
    public var timeout: Duration?
    /// Reports progress: sent with the next heartbeat and handed to the next attempt.
    public var reportProgress: @Sendable (JSONValue) -> Void
    /// The answers a person gave this task's questions, oldest first: a handler that returned
    /// `interrupt` runs again once the run is resumed, and finds the answer here. A node can
    /// ask again (return another `interrupt`) and will then run with both answers.
    public var resumes: [JSONValue] = []

    /// The node's free-form parameters: its `with:` object in the graph file (empty when none).
    public var params: JSONValue { config["with"] ?? .object([:]) }

    /// The newest answer to this task's question, nil when it has not asked (or not been answered).
    public var resume: JSONValue? { resumes.last }

    /// A key for the handler's own side effects: the same for every attempt of the same task.
    public var idempotencyKey: String { taskID }
    /// A key unique to this attempt.
    public var attemptKey: String { "\(taskID)#\(attempt)" }
}

/// What a handler returns when it succeeds.
public struct NodeResult: Sendable, Equatable, CarriesTaskRecords {
    public var writes: [String: JSONValue]
    public var goto: [String]
    public var sends: [Send]
    public var interrupt: JSONValue?
    /// Cost, API calls, tokens, other metrics and assets, stored with the attempt.
    public var records: TaskRecords

    public struct Send: Sendable, Equatable {
        public var node: String
        public var input: JSONValue
        public init(node: String, input: JSONValue) { self.node = node; self.input = input }
    }

    public init(writes: [String: JSONValue] = [:], goto: [String] = [], sends: [Send] = [], interrupt: JSONValue? = nil,
                cost: Double = 0, apiCalls: Int = 0, records: TaskRecords? = nil) {
        self.writes = writes; self.goto = goto; self.sends = sends; self.interrupt = interrupt
        self.records = records ?? TaskRecords()
        if records == nil { self.records.cost = cost; self.records.apiCalls = apiCalls }
    }
}

/// A failed attempt. `nonRetryable` failures skip the node's retry policy.
public struct NodeFailure: Error, Sendable, CustomStringConvertible, CarriesTaskRecords {
    public var message: String
    public var kind: String
    public var nonRetryable: Bool
    /// What the attempt spent before it failed: it counts toward the run's cost.
    public var records = TaskRecords()

    public init(_ message: String, kind: String = "error", nonRetryable: Bool = false) {
        self.message = message; self.kind = kind; self.nonRetryable = nonRetryable
    }

    public var description: String { message }
}

/// A node implementation in Swift. A worker binary registers handlers by kind name; graph
/// nodes with `run: <kind>` are sent to workers that registered it.
public protocol NodeHandler: Sendable {
    func run(_ context: TaskContext) async throws -> NodeResult
}

/// A handler from a closure.
public struct ClosureHandler: NodeHandler {
    let body: @Sendable (TaskContext) async throws -> NodeResult
    public init(_ body: @escaping @Sendable (TaskContext) async throws -> NodeResult) { self.body = body }
    public func run(_ context: TaskContext) async throws -> NodeResult { try await body(context) }
}

/// A handler that computes its result without I/O or waiting (no bundle, no child process, no
/// sleep). The worker runs it the moment its assignment is read, on the connection's event loop,
/// and writes the result back in the same turn: no task is spawned for it.
public protocol ImmediateNodeHandler: NodeHandler {
    func runNow(_ context: TaskContext) throws -> NodeResult
}

extension ImmediateNodeHandler {
    public func run(_ context: TaskContext) async throws -> NodeResult { try runNow(context) }
}

/// An immediate handler from a closure.
public struct ImmediateHandler: ImmediateNodeHandler {
    let body: @Sendable (TaskContext) throws -> NodeResult
    public init(_ body: @escaping @Sendable (TaskContext) throws -> NodeResult) { self.body = body }
    public func runNow(_ context: TaskContext) throws -> NodeResult { try body(context) }
}
