import CairnCore

/// A task planned for a step: one node to run, with its own input when it came from a send.
public struct PlannedTask: Sendable, Equatable {
    public var id: String
    public var node: String
    /// The send's input (fan-out); nil for a task triggered by an edge.
    public var input: JSONValue?
    /// What triggered it: `edge` or `send:<n>`.
    public var trigger: String
    /// Answers to the questions this task asked (its `interrupt`s), oldest first: given to the
    /// task when it runs again after `cairn resume`.
    public var resumes: [JSONValue]

    public init(id: String, node: String, input: JSONValue?, trigger: String, resumes: [JSONValue] = []) {
        self.id = id; self.node = node; self.input = input; self.trigger = trigger; self.resumes = resumes
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["id": .string(id), "node": .string(node)]
        if trigger != "edge" { o["trigger"] = .string(trigger) }  // the common case is left out
        if let input { o["input"] = input }
        if !resumes.isEmpty { o["resume"] = .array(resumes) }
        return .object(o)
    }

    public init?(json: JSONValue) {
        guard let id = json["id"]?.stringValue, let node = json["node"]?.stringValue else { return nil }
        self.init(id: id, node: node, input: json["input"], trigger: json["trigger"]?.stringValue ?? "edge",
                  resumes: json["resume"]?.arrayValue ?? [])
    }

    /// The same task planned at another checkpoint: its id follows from where it is planned.
    public func replanned(checkpointID: String, namespace: String = "", step: Int) -> PlannedTask {
        var t = self
        t.id = Identifiers.taskID(checkpointID: checkpointID, namespace: namespace, step: step, node: node, trigger: trigger)
        return t
    }
}

/// What a finished task produced.
public struct TaskOutcome: Sendable, Equatable {
    public var taskID: String
    public var node: String
    /// Writes in the order they are applied (a task's object keys, sorted).
    public var writes: [(channel: String, value: JSONValue)]
    public var goto: [String]
    public var sends: [(node: String, input: JSONValue)]
    public var interrupt: JSONValue?
    /// The interrupt's id, fixed when the task asked (it stays the same while it waits).
    public var interruptID: String?

    public init(taskID: String, node: String, writes: [(channel: String, value: JSONValue)] = [],
                goto: [String] = [], sends: [(node: String, input: JSONValue)] = [], interrupt: JSONValue? = nil,
                interruptID: String? = nil) {
        self.taskID = taskID; self.node = node; self.writes = writes; self.goto = goto; self.sends = sends
        self.interrupt = interrupt; self.interruptID = interruptID
    }

    public static func == (a: TaskOutcome, b: TaskOutcome) -> Bool {
        a.taskID == b.taskID && a.node == b.node && a.goto == b.goto && a.interrupt == b.interrupt && a.interruptID == b.interruptID
            && a.writes.map(\.channel) == b.writes.map(\.channel) && a.writes.map(\.value) == b.writes.map(\.value)
            && a.sends.map(\.node) == b.sends.map(\.node) && a.sends.map(\.input) == b.sends.map(\.input)
    }
}

/// A reason the run cannot go on, found while applying writes or planning.
public struct PlanError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Pregel-style step logic over a `Graph`: pure, deterministic, no I/O.
///
/// A step's writes are applied in task order (the order the tasks were planned), never in the
/// order they finished, so the state after a step does not depend on which worker was fastest.
public struct Planner: Sendable {
    public let graph: Graph
    public let namespace: String

    public init(graph: Graph, namespace: String = "") {
        self.graph = graph
        self.namespace = namespace
    }

    /// Checks a task's writes, goto and sends against the graph before they are accepted.
    public func validate(_ outcome: TaskOutcome) -> PlanError? {
        for w in outcome.writes where graph.channels[w.channel] == nil {
            return PlanError("node '\(outcome.node)' wrote to '\(w.channel)', which is not a channel of graph '\(graph.name)'")
        }
        for g in outcome.goto where g != Graph.end && graph.nodes[g] == nil {
            return PlanError("node '\(outcome.node)' asked to go to unknown node '\(g)'")
        }
        for s in outcome.sends where graph.nodes[s.node] == nil {
            return PlanError("node '\(outcome.node)' sent work to unknown node '\(s.node)'")
        }
        return nil
    }

    /// Applies writes to `state` through the channels' reducers; returns the channels updated.
    public func apply(_ writes: [(channel: String, value: JSONValue)], to state: inout [String: JSONValue]) throws -> Set<String> {
        var updated = Set<String>()
        for w in writes {
            guard let channel = graph.channels[w.channel] else {
                throw PlanError("write to unknown channel '\(w.channel)'")
            }
            // Moved out of the state while the reducer works, so a long list is appended to in place.
            var value = state.removeValue(forKey: w.channel) ?? channel.initialValue
            do {
                try channel.reducer.apply(&value, write: w.value)
            } catch {
                state[w.channel] = value  // unchanged: the reducer refused the write
                throw PlanError("channel '\(w.channel)': \(error)")
            }
            state[w.channel] = value ?? .null
            updated.insert(w.channel)
        }
        return updated
    }

    /// The tasks of the first step: START's successors.
    public func firstTasks(checkpointID: String, step: Int, state: [String: JSONValue]) throws -> [PlannedTask] {
        var joins: [String: [String]] = [:]
        return try next(after: [TaskOutcome(taskID: "", node: Graph.start)], state: state, joins: &joins,
                        checkpointID: checkpointID, step: step)
    }

    /// Plans the next step from the outcomes of the one just finished (in task order).
    /// `joins` holds, per join edge, which of its sources have run since it last fired.
    public func next(after outcomes: [TaskOutcome], state: [String: JSONValue], joins: inout [String: [String]],
                     checkpointID: String, step: Int) throws -> [PlannedTask] {
        var nodeOrder: [String] = []
        var triggered = Set<String>()
        var sends: [(node: String, input: JSONValue)] = []

        func trigger(_ target: String) {
            guard target != Graph.end, !triggered.contains(target) else { return }
            triggered.insert(target)
            nodeOrder.append(target)
        }

        for outcome in outcomes {
            let from = outcome.node
            if !outcome.goto.isEmpty {
                outcome.goto.forEach(trigger)
            } else {
                for (index, edge) in graph.edges.enumerated() {
                    switch edge {
                    case .direct(let f, let to) where f == from:
                        to.forEach(trigger)
                    case .route(let f, let on, let cases, let def) where f == from:
                        let value = state[on] ?? .null
                        if let t = cases[value.routeKey] ?? def {
                            trigger(t)
                        } else {
                            throw PlanError("route after '\(from)' on '\(on)': no case for '\(value.routeKey)' and no default (edges[\(index)])")
                        }
                    default: break
                    }
                }
            }
            for (index, edge) in graph.edges.enumerated() {
                if case .join(let sources, _) = edge, sources.contains(from) {
                    let key = "join:\(index)"
                    var seen = Set(joins[key] ?? [])
                    seen.insert(from)
                    joins[key] = seen.sorted()
                }
            }
            sends.append(contentsOf: outcome.sends)
        }
        // Joins fire once all their sources have run, after every outcome of the step is counted.
        for (index, edge) in graph.edges.enumerated() {
            if case .join(let sources, let to) = edge {
                let key = "join:\(index)"
                if Set(joins[key] ?? []).isSuperset(of: sources) {
                    joins[key] = nil
                    trigger(to)
                }
            }
        }

        var tasks: [PlannedTask] = []
        tasks.reserveCapacity(nodeOrder.count + sends.count)
        for node in nodeOrder {
            let id = Identifiers.taskID(checkpointID: checkpointID, namespace: namespace, step: step, node: node, trigger: "edge")
            tasks.append(PlannedTask(id: id, node: node, input: nil, trigger: "edge"))
        }
        for (k, send) in sends.enumerated() {
            let trig = "send:\(k)"
            let id = Identifiers.taskID(checkpointID: checkpointID, namespace: namespace, step: step, node: send.node, trigger: trig)
            tasks.append(PlannedTask(id: id, node: send.node, input: send.input, trigger: trig))
        }
        if tasks.count > graph.limits.maxTasksPerStep {
            throw PlanError("step \(step) would run \(tasks.count) tasks, over the limit of \(graph.limits.maxTasksPerStep) (limits.max_tasks_per_step)")
        }
        return tasks
    }
}
