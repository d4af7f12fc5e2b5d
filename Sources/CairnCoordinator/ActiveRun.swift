import CairnCore
import CairnGraph
import CairnStore

/// A task of the current step, as the dispatcher tracks it.
final class TaskState {
    enum Phase: Equatable {
        case ready          // waiting in the run's queue
        case waitingRetry   // backing off before its next attempt
        case running        // assigned to a worker under `lease`
        case done           // result in; its writes are queued for the store (acked once durable)
    }

    let planned: PlannedTask
    let kind: String
    var phase: Phase = .ready
    var attempt = 0
    var lease: String?
    var workerID: String?
    var startedAt: Double = 0
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
        didSet { encodedState = nil }
    }
    private var encodedState: [UInt8]?
    var joins: [String: [String]]
    var tasks: [String: TaskState] = [:]
    var order: [String] = []
    /// Task ids waiting for a worker, in planned order.
    var ready: [String] = []
    var readyHead = 0
    /// Deltas written per append channel since its last full snapshot.
    var appendDepth: [String: Int] = [:]
    var configBytes: [String: [UInt8]] = [:]
    var tasksDoneTotal = 0
    /// The run as last made durable: what queries report (the scheduler may be a step ahead).
    var durable: RunRecord
    /// Rows to write with the next checkpoint (a step's last result rides along with it).
    var carry = StoreBatch()

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

    /// What a task of `kind` is sent as its state. Handlers that never read the state (echo,
    /// sleep, fail, flaky) get none, `map` gets only the list it fans out over, and everything
    /// else (exec, Swift handlers) the whole state, encoded once per step.
    func stateBytes(for node: NodeSpec?) -> [UInt8] {
        switch node?.kind {
        case "echo", "sleep", "fail", "flaky": return []
        case "map":
            guard let over = node?.config["over"]?.stringValue else { return [] }
            return JSONValue.object([over: state[over] ?? .null]).jsonBytes()
        default:
            if let e = encodedState { return e }
            let e = JSONValue.object(state).jsonBytes()
            encodedState = e
            return e
        }
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
    func enqueue(_ t: TaskState) {
        t.phase = .ready
        ready.append(t.planned.id)
    }

    /// Starts a new step: the tasks planned in `checkpoint.nextTasks`, minus those already done.
    func beginStep(planned: [PlannedTask], done: [String: TaskOutcome]) {
        tasks = [:]; order = []; ready = []; readyHead = 0; stepDone = 0
        for p in planned {
            let t = TaskState(planned: p, kind: graph.nodes[p.node]?.kind ?? "unknown")
            tasks[p.id] = t
            order.append(p.id)
            if let outcome = done[p.id] {
                t.phase = .done
                t.outcome = outcome
                stepDone += 1
            } else {
                ready.append(p.id)
            }
        }
        computeNextNodes()
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
