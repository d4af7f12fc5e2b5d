import CairnCore
import CairnProtocol
import Foundation

/// A task handed to a worker under a lease, as the scheduler decides it. The engine puts it on
/// the wire (`Cairn_V1_TaskAssignment(_:)`): the deciders see no protobuf type.
struct Assignment: Equatable {
    var taskID: String
    var lease: String
    var runID: String
    var node: String
    var kind: String
    /// The node's config object (JSON).
    var config: [UInt8]
    var state: StateDelivery
    /// A send's input (fan-out); nil for a task triggered by an edge.
    var input: JSONValue?
    /// Answers to the questions the task asked, oldest first.
    var resumes: [JSONValue]
    /// 1-based.
    var attempt: Int
    /// The last progress an earlier attempt reported.
    var progress: [UInt8]
    var bundleHash: String
    var step: Int
    var checkpointID: String
    /// 0: none.
    var timeoutMS: Int
}

/// How a task gets the run's state: whole (JSON), or as parts over what the worker's state
/// cache holds, after it drops the runs in `evict`.
enum StateDelivery: Equatable {
    case whole([UInt8])
    case parts([StatePart], evict: [String])
}

/// One channel of a task's state for a worker with a state cache (`StateMirror` decides).
struct StatePart: Equatable {
    enum Kind: Equatable {
        /// `value` is the channel's value.
        case whole
        /// `value` is a JSON array of items appended to the kept list at `baseVersion`.
        case append
        /// The kept value at `version` is current: `value` is empty.
        case kept
    }

    var channel: String
    /// The channel's version (a checkpoint id) after this part.
    var version: String
    var kind: Kind
    var value: [UInt8] = []
    var baseVersion = ""
    /// For `whole`: keep the value for later tasks of the run (else drop any kept one).
    var keep = false
}

/// A worker's result as the scheduler reads it, decoded from the wire by the connection that
/// received it (`TaskReport(wire:)`), off the engine's executor. What could not be read is said
/// as `Unreadable`, so the scheduler fails the attempt with the reason.
struct TaskReport {
    struct Failure: Equatable {
        var message: String
        var kind: String
        var nonRetryable: Bool
    }

    /// What a successful attempt produced.
    struct Produced {
        var writes: [(channel: String, value: JSONValue)] = []
        var goto: [String] = []
        var sends: [(node: String, input: JSONValue)] = []
        var interrupt: JSONValue?
    }

    struct Unreadable: Error, CustomStringConvertible {
        let description: String
    }

    var taskID: String
    var lease: String
    /// Set when the attempt failed.
    var failure: Failure?
    /// What the attempt reported about itself (metrics, API calls, assets).
    var records: Result<TaskRecords, Unreadable>
    /// The cost and API calls every result carries beside its records.
    var figures: TaskRecords
    var produced: Result<Produced, Unreadable>
}

extension TaskReport {
    init(wire r: Cairn_V1_TaskResult) {
        taskID = r.taskID
        lease = r.lease
        failure = r.error.isEmpty ? nil : Failure(message: r.error, kind: r.errorKind, nonRetryable: r.nonRetryable)
        var figures = TaskRecords()
        figures.cost = r.cost
        figures.apiCalls = Int(r.apiCalls)
        self.figures = figures
        if r.recordsJson.isEmpty {
            records = .success(figures)
        } else {
            do { records = .success(try TaskRecords.parse(json: try JSONValue.parse([UInt8](r.recordsJson)))) } catch {
                records = .failure(Unreadable(description: "\(error)"))
            }
        }
        do { produced = .success(try Self.produced(r)) } catch { produced = .failure(Unreadable(description: "\(error)")) }
    }

    private static func produced(_ r: Cairn_V1_TaskResult) throws -> Produced {
        var p = Produced()
        if !r.writesJson.isEmpty {
            guard case .object(let o) = try JSONValue.parse([UInt8](r.writesJson)) else {
                throw Unreadable(description: "'writes' must be an object of channel to value")
            }
            p.writes = o.keys.sorted().map { ($0, o[$0]!) }
        }
        for s in r.sends {
            p.sends.append((s.node, s.inputJson.isEmpty ? .null : try JSONValue.parse([UInt8](s.inputJson))))
        }
        p.goto = r.goto
        p.interrupt = r.interruptJson.isEmpty ? nil : try JSONValue.parse([UInt8](r.interruptJson))
        return p
    }
}

extension Cairn_V1_TaskAssignment {
    init(_ a: Assignment) {
        self.init()
        taskID = a.taskID
        lease = a.lease
        runID = a.runID
        node = a.node
        kind = a.kind
        configJson = Data(a.config)
        switch a.state {
        case .whole(let bytes): stateJson = Data(bytes)
        case .parts(let parts, let evict):
            stateParts = parts.map(Cairn_V1_StatePart.init)
            cacheEvict = evict
        }
        if let input = a.input { inputJson = Data(input.jsonBytes()) }
        if !a.resumes.isEmpty { resumeJson = Data(JSONValue.array(a.resumes).jsonBytes()) }
        attempt = UInt32(a.attempt)
        progressJson = Data(a.progress)
        bundleHash = a.bundleHash
        step = UInt32(a.step)
        checkpointID = a.checkpointID
        timeoutMs = UInt64(max(0, a.timeoutMS))
    }
}

extension Cairn_V1_StatePart {
    init(_ p: StatePart) {
        self.init()
        channel = p.channel
        version = p.version
        switch p.kind {
        case .whole: kind = .statePartWhole
        case .append: kind = .statePartAppend
        case .kept: kind = .statePartKept
        }
        valueJson = Data(p.value)
        baseVersion = p.baseVersion
        keep = p.keep
    }
}
