import CairnCore
import CairnGraph
import CairnStore
import Synchronization

private let incarnations = Atomic<UInt64>(0)

/// A task of the current step: the one record the scheduler keeps of it (its lease, while it
/// runs, is in the scheduler's `LeaseTable`).
///
/// ```
///            assign (lease granted)         result under the current lease
///   ready ──────────────────────► running ─────────────────────────────────► done
///     ▲                              │  │
///     │  worker lost (lease fenced)  │  │  attempt failed (error, or the lease's
///     ├──────────────────────────────┘  │  deadline passed), retries left
///     │                                 ▼
///     └──────── retry due ───────── waitingRetry
/// ```
/// A result is accepted only under the lease the task holds now; any other lease is stale.
final class TaskState {
    enum Phase: Equatable {
        case ready          // waiting in the run's queue
        case waitingRetry   // backing off until `retryAt`
        case running        // assigned to a worker under a lease
        case done           // result in; its writes are queued for the store (acked once durable)
    }

    let planned: PlannedTask
    let kind: String
    var phase: Phase = .ready
    var attempt = 0
    var startedAt: Double = 0
    /// When it last became ready to run (planned, handed back, or its retry due).
    var queuedAt: Double = 0
    /// When the next attempt may start (phase `waitingRetry`).
    var retryAt: Double?
    var progress: [UInt8] = []
    /// Workers that died while running this task (poison detection).
    var lostWorkers = 0
    var outcome: TaskOutcome?

    init(planned: PlannedTask, kind: String) {
        self.planned = planned
        self.kind = kind
    }
}

/// Everything the coordinator holds in memory about a run that is not finished.
final class ActiveRun {
    var record: RunRecord
    let graph: Graph
    let planner: Planner
    let bundleHash: String?
    /// The checkpoint whose `next` tasks are running now.
    var checkpoint: CheckpointRecord
    /// The state at `checkpoint`, and its JSON as sent to workers (encoded once per step).
    var state: [String: JSONValue] {
        didSet { encodedState = nil; encodedReads = [:]; encodedChannels = [:]; channelNames = nil }
    }
    /// Per channel, its value as sent to workers (encoded once per step).
    private var encodedChannels: [String: [UInt8]] = [:]
    /// The state's channels in order, for tasks that read it whole (once per step).
    private var channelNames: [String]?
    /// This stay of the run in memory, unique in the process: within one, an `append` channel
    /// only grows (a resume, rewind or edit makes a new one), which the state cache relies on.
    let incarnation = incarnations.add(1, ordering: .relaxed).newValue
    private var encodedState: [UInt8]?
    /// Per node with `reads:`, what its tasks are sent, encoded once per step.
    private var encodedReads: [String: [UInt8]] = [:]
    var joins: [String: [String]]
    var tasks: [String: TaskState] = [:]
    var order: [String] = []
    /// Task ids waiting for a worker, in planned order.
    var ready: [String] = []
    var readyHead = 0
    /// How its append channels' values are stored next: a delta or a full value (`AppendChains`).
    var chains = AppendChains()
    var configBytes: [String: [UInt8]] = [:]
    var tasksDoneTotal = 0
    /// The run as last made durable: what queries report (the scheduler may be a step ahead).
    var durable: RunRecord
    /// Rows to write with the next checkpoint (a step's last result rides along with it).
    var carry = StoreBatch()
    /// A task of the current step asked a question (returned `interrupt`): the step will pause.
    var asked = false

    var durability: Durability { Durability(rawValue: record.durability) ?? .sync }

    init(record: RunRecord, graph: Graph, bundleHash: String?, checkpoint: CheckpointRecord,
         state: [String: JSONValue], joins: [String: [String]]) {
        self.record = record
        self.durable = record
        self.graph = graph
        self.planner = Planner(graph: graph)
        self.bundleHash = bundleHash
        self.checkpoint = checkpoint
        self.state = state
        self.joins = joins
        for node in graph.nodes.values { configBytes[node.name] = node.config.jsonBytes() }
    }

    /// The state, moved out (the run holds none until it is given back): the step that changes
    /// it then holds the only reference to each list, and its reducers append in place.
    func takeState() -> [String: JSONValue] {
        let s = state
        state = [:]
        return s
    }

    /// What a task of the node is sent as its state: what its kind reads (`NodeKinds.stateInput`),
    /// the whole state encoded once per step.
    func stateBytes(for node: NodeSpec?) -> [UInt8] {
        switch node.map({ NodeKinds.stateInput(kind: $0.kind, config: $0.config) }) ?? .whole {
        case .none: return []
        case .channel(let over): return JSONValue.object([over: state[over] ?? .null]).jsonBytes()
        case .channels(let names):
            let key = node?.name ?? ""
            if let e = encodedReads[key] { return e }
            var part: [String: JSONValue] = [:]
            for n in names { part[n] = state[n] ?? .null }
            let e = JSONValue.object(part).jsonBytes()
            encodedReads[key] = e
            return e
        case .whole:
            if let e = encodedState { return e }
            let e = JSONValue.object(state).jsonBytes()
            encodedState = e
            return e
        }
    }

    /// The channels a task of the node is sent (nil: none), for the state cache's parts.
    func stateChannels(for node: NodeSpec?) -> [String]? {
        switch node.map({ NodeKinds.stateInput(kind: $0.kind, config: $0.config) }) ?? .whole {
        case .none: return nil
        case .channel(let over): return [over]
        case .channels(let names): return names
        case .whole:
            if let names = channelNames { return names }
            let names = state.keys.sorted()
            channelNames = names
            return names
        }
    }

    /// One channel's value as sent to workers, encoded once per step.
    func channelBytes(_ name: String) -> [UInt8] {
        if let e = encodedChannels[name] { return e }
        let e = (state[name] ?? .null).jsonBytes()
        encodedChannels[name] = e
        return e
    }

    /// What queries and watchers are told of the run: the record as last made durable, and the
    /// current step's progress.
    var summary: RunSummary {
        RunSummary(record: durable, tasksTotal: stepTotal, tasksDone: stepDone,
                   nextNodes: durable.status.isFinished ? [] : nextNodes, nodeCount: graph.nodes.count)
    }

    var hasReady: Bool { readyHead < ready.count }

    func popReady() -> TaskState? {
        while readyHead < ready.count {
            let id = ready[readyHead]
            readyHead += 1
            if readyHead > 1024 && readyHead * 2 > ready.count {
                ready.removeFirst(readyHead); readyHead = 0
            }
            if let t = tasks[id], t.phase == .ready { return t }
        }
        return nil
    }

    func peekReady() -> TaskState? {
        var i = readyHead
        while i < ready.count {
            if let t = tasks[ready[i]], t.phase == .ready { return t }
            i += 1
        }
        return nil
    }

    /// Puts a task at the back of the queue (a retry or a task handed back).
    func enqueue(_ t: TaskState, at now: Double) {
        t.phase = .ready
        t.queuedAt = now
        ready.append(t.planned.id)
    }

    /// Starts a new step: the tasks planned in `checkpoint.nextTasks`, minus those already done.
    func beginStep(planned: [PlannedTask], done: [String: TaskOutcome], at now: Double) {
        tasks = [:]; order = []; ready = []; readyHead = 0; stepDone = 0; asked = false
        for p in planned {
            let t = TaskState(planned: p, kind: graph.nodes[p.node]?.kind ?? "unknown")
            t.queuedAt = now
            tasks[p.id] = t
            order.append(p.id)
            if let outcome = done[p.id] {
                t.phase = .done
                t.outcome = outcome
                if outcome.interrupt != nil { asked = true }
                stepDone += 1
            } else {
                ready.append(p.id)
            }
        }
        computeNextNodes()
    }

    /// What task `t`'s attempt under `lease` is sent: the run's state whole, or as parts over what the
    /// worker's state cache holds (`mirror`, updated to what it will hold). Also the bytes of
    /// values sent, and of those the worker already held.
    func assignment(_ t: TaskState, lease: String, mirror: inout StateMirror?) -> (Assignment, sent: Int, kept: Int) {
        let node = graph.nodes[t.planned.node]
        let state: StateDelivery, sent: Int, kept: Int
        if mirror != nil, let channels = stateChannels(for: node) {
            let (parts, evict, s, k) = mirror!.parts(for: self, channels: channels)
            (state, sent, kept) = (.parts(parts, evict: evict), s, k)
        } else {
            let bytes = stateBytes(for: node)
            (state, sent, kept) = (.whole(bytes), bytes.count, 0)
        }
        let a = Assignment(taskID: t.planned.id, lease: lease, runID: record.runID, node: t.planned.node, kind: t.kind,
                           config: configBytes[t.planned.node] ?? [], state: state, input: t.planned.input,
                           resumes: t.planned.resumes, attempt: t.attempt, progress: t.progress, bundleHash: bundleHash ?? "",
                           step: checkpoint.step + 1, checkpointID: checkpoint.checkpointID,
                           timeoutMS: Int(node?.timeoutMS ?? 0))
        return (a, sent, kept)
    }

    var stepTotal: Int { order.count }
    /// Tasks of the current step whose results are in.
    var stepDone = 0
    var allDone: Bool { stepDone >= order.count }
    /// The nodes of the current step, in planned order (computed once per step).
    private(set) var nextNodes: [String] = []

    private func computeNextNodes() {
        var seen = Set<String>(); var out: [String] = []
        for id in order { if let n = tasks[id]?.planned.node, seen.insert(n).inserted { out.append(n) } }
        nextNodes = out
    }
}

/// An active run as reported: its durable record and the current step's progress.
struct RunSummary: Sendable, Equatable {
    var record: RunRecord
    var tasksTotal: Int
    var tasksDone: Int
    var nextNodes: [String]
    var nodeCount: Int
}
