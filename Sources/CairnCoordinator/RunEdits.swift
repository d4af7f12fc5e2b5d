import CairnCore
import CairnGraph
import CairnStore
import Foundation

/// A run that is not active, as read from the store for an edit: its record, graph, the
/// checkpoint the edit starts from, the state there and the writes stored under it.
struct StoredRun {
    var record: RunRecord
    var graph: Graph
    var bundleHash: String?
    var checkpoint: CheckpointRecord
    /// Every channel at `checkpoint` (defaults for channels never written).
    var state: [String: JSONValue]
    /// Pending writes stored under `checkpoint` (tasks of its step that finished, or asked).
    var writes: [PendingWriteRecord]
}

/// What an edit decided: the rows to write (one batch, one transaction) and, for a run that
/// goes on, where it goes on from.
struct RunEdit {
    var record: RunRecord
    var checkpoint: CheckpointRecord
    var batch: StoreBatch
    var state: [String: JSONValue]
    var joins: [String: [String]]
    var planned: [PlannedTask]
    /// Tasks of the new checkpoint's step whose writes are carried over: they count as done.
    var done: [String: TaskOutcome]
}

/// The rules of time travel — resume, update, fork, rewind — as pure functions of what is
/// stored: no store, no clock (`now` and the new checkpoint id are given). Every door (the CLI,
/// and the HTTP API when it lands) goes through these, by way of the `Engine`.
///
/// Every edit writes a new checkpoint and never changes an old one, so any earlier point stays
/// reachable. Planned tasks get new ids at the new checkpoint (a task that runs again is a new
/// task); writes carried over are re-keyed to them.
enum RunEdits {
    struct Failure: Error, Equatable, CustomStringConvertible {
        enum Kind: Equatable { case conflict, invalid, notFound }
        var kind: Kind
        var message: String
        var description: String { message }
    }

    static func conflict(_ m: String) -> Failure { Failure(kind: .conflict, message: m) }
    static func invalid(_ m: String) -> Failure { Failure(kind: .invalid, message: m) }

    // MARK: - resume

    /// Answers a paused run's questions and lets it go on. Paused by `interrupt_before`: the
    /// node runs (given the answer as `resume`, if there is one); by `interrupt_after`: the next
    /// step runs; by a node's `interrupt`: that task runs again with the answer added to its
    /// `resumes`. Unanswered questions keep waiting: the run pauses again for them once the
    /// answered tasks are done. Recorded as a checkpoint (source `resume`) with the answers,
    /// who gave them and when, before anything runs.
    static func resume(_ s: StoredRun, answers: ResumeAnswers, by: String, now: Double, newID: String) throws -> RunEdit {
        let runID = s.record.runID
        guard s.record.status == .paused else {
            throw conflict("run \(runID) is not paused (it is \(s.record.status.rawValue)): there is nothing to resume")
        }
        let pending = PendingInterrupt.pending(in: s.record.interrupt, checkpointID: s.checkpoint.checkpointID)
        let chosen = try match(answers, pending: pending, runID: runID)

        let cp = s.checkpoint
        let step = cp.step
        var given: [JSONValue] = []
        var answeredTasks: [String: JSONValue?] = [:]  // task id → answer (node questions)
        var beforeNodes: [String: JSONValue] = [:]      // interrupt_before node → answer given
        for p in pending {
            guard let answer = chosen[p.id] else { continue }
            var o = p.json.objectValue ?? [:]
            if let a = answer { o["answer"] = a }
            o["value"] = nil
            if let q = p.value { o["question"] = q }
            given.append(.object(o))
            switch p.reason {
            case "node": if let task = p.taskID { answeredTasks[task] = answer }
            case "interrupt_before": if let a = answer { beforeNodes[p.node] = a }
            default: break
            }
        }
        var plan = CheckpointBuilder.next(of: cp)
        for i in plan.indices {
            if let answer = answeredTasks[plan[i].id] { plan[i].resumes.append(answer ?? .null) }
            if let a = beforeNodes[plan[i].node] { plan[i].resumes.append(a) }
        }
        // An answered task runs again: its stored question is not carried over.
        let carried = s.writes.filter { answeredTasks[$0.taskID] == nil }
        // What the resumed checkpoint said of itself stays, but its questions (answered now) and
        // an update note (of that checkpoint, not this one).
        var notes = cp.metadata.objectValue ?? [:]
        for key in ["joins", "interrupt", "update"] { notes[key] = nil }
        notes["resume"] = .object(["answers": .array(given), "by": .string(by), "at": .double(now)])
        var edit = derive(s, runID: runID, newID: newID, step: step, source: "resume", plan: plan, writes: carried,
                          versions: cp.channelVersions, joins: CheckpointBuilder.joins(of: cp), notes: notes, now: now)
        edit.record.status = .running
        edit.record.interrupt = nil
        edit.record.error = nil
        edit.record.finishedAt = nil
        edit.record.resumeCount += 1
        edit.batch.runs = [edit.record]
        return edit
    }

    /// Which pending question each answer goes to (nil: answered without a value).
    static func match(_ answers: ResumeAnswers, pending: [PendingInterrupt], runID: String) throws -> [String: JSONValue?] {
        let ids = pending.map(\.id)
        func list() -> String { pending.map { "\($0.id) (\($0.reason) '\($0.node)')" }.joined(separator: ", ") }
        switch answers {
        case .none:
            return Dictionary(uniqueKeysWithValues: ids.map { ($0, JSONValue?.none) })
        case .one(let id, let value):
            guard ids.contains(id) else {
                throw invalid(pending.isEmpty ? "run \(runID) has no pending interrupt '\(id)': it waits on no question; resume it without --interrupt"
                                              : "run \(runID) has no pending interrupt '\(id)' (pending: \(list()))")
            }
            return [id: value]
        case .value(let v):
            if case .object(let o) = v, !o.isEmpty, o.keys.allSatisfy({ $0.hasPrefix("i-") }) {
                // An object of id → answer (several questions at once).
                for k in o.keys.sorted() where !ids.contains(k) {
                    throw invalid("run \(runID) has no pending interrupt '\(k)' (pending: \(pending.isEmpty ? "none" : list()))")
                }
                return o.mapValues { JSONValue?.some($0) }
            }
            switch pending.count {
            case 0: throw invalid("run \(runID) waits on no question (it was paused by an update): resume it without --value")
            case 1: return [ids[0]: v]
            default:
                throw invalid("run \(runID) has \(pending.count) pending interrupts: \(list()). Answer one with --interrupt ID --value …, or several with --value '{\"\(ids[0])\": …, \"\(ids[1])\": …}'")
            }
        }
    }

    // MARK: - deadlines

    /// A paused run whose question's deadline has passed at `now`: failed (`on_timeout: fail`),
    /// or resumed with the graph's answer (`on_timeout: {resume: VALUE}`), recorded as a resume
    /// by `cairn (deadline)`. Nil when nothing is due (the run was answered in time, or is not
    /// paused any more).
    static func expire(_ s: StoredRun, now: Double, newID: String) throws -> RunEdit? {
        guard s.record.status == .paused else { return nil }
        let pending = PendingInterrupt.pending(in: s.record.interrupt, checkpointID: s.checkpoint.checkpointID)
        guard let due = pending.filter({ ($0.deadline ?? .infinity) <= now }).min(by: { $0.deadline! < $1.deadline! }) else { return nil }
        let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: due.deadline!))
        if let answer = due.onTimeout?["resume"] {
            return try resume(s, answers: .one(id: due.id, value: answer), by: "cairn (the deadline of \(due.id) passed at \(when))",
                              now: now, newID: newID)
        }
        var r = s.record
        r.status = .failed
        r.error = "interrupt \(due.id) (\(due.reason) '\(due.node)') was not answered by its deadline, \(when) (on_timeout: fail)"
        r.updatedAt = now
        r.finishedAt = now
        var batch = StoreBatch()
        batch.runs = [r]
        return RunEdit(record: r, checkpoint: s.checkpoint, batch: batch, state: s.state, joins: CheckpointBuilder.joins(of: s.checkpoint),
                       planned: [], done: [:])
    }

    /// The earliest deadline among a paused run's questions.
    static func nextDeadline(_ record: RunRecord) -> Double? {
        guard record.status == .paused else { return nil }
        return PendingInterrupt.pending(in: record.interrupt, checkpointID: record.checkpointID ?? "").compactMap(\.deadline).min()
    }

    // MARK: - update

    /// Writes values into a run that is not active through the channels' reducers, as a new
    /// checkpoint (source `update`). With `asNode`, the next tasks are planned as if that node
    /// had just run and written them; without, the plan stays (and so do any pending questions).
    /// Nothing runs: a run with tasks to do is left paused for `cairn resume`; a run with none
    /// is completed with the new state as its output.
    static func update(_ s: StoredRun, values: [String: JSONValue], asNode: String?, by: String, now: Double, newID: String) throws -> RunEdit {
        let runID = s.record.runID
        guard !s.record.status.isActive else {
            throw conflict("run \(runID) is \(s.record.status.rawValue): only a run that is paused, completed, failed or cancelled can be updated (cancel it first, or fork it)")
        }
        let cp = s.checkpoint
        var (state, versions, rows, planned, joins, step) = try apply(s, values: values, asNode: asNode, newID: newID)
        var writes: [PendingWriteRecord] = []
        if asNode == nil {
            planned = CheckpointBuilder.next(of: cp)
            writes = s.writes
        }
        var edit = derive(s, runID: runID, newID: newID, step: step, source: "update", plan: planned, writes: writes,
                          versions: versions, joins: joins, notes: ["update": updateNote(values: rows, asNode: asNode, by: by, now: now)], now: now)
        edit.state = state
        edit.batch.channelValues = rows
        var r = edit.record
        r.error = nil
        if edit.planned.isEmpty {
            r.status = .completed
            r.output = .object(state)
            r.interrupt = nil
            r.finishedAt = r.finishedAt ?? now
        } else {
            r.status = .paused
            r.finishedAt = nil
            // Questions still pending stay so (their ids do not change); otherwise the run waits for `resume`.
            let pending = asNode == nil ? PendingInterrupt.pending(in: s.record.status == .paused ? s.record.interrupt : nil,
                                                                   checkpointID: cp.checkpointID) : []
            r.interrupt = PendingInterrupt.record(checkpointID: newID, pending: pending, reason: pending.isEmpty ? "update" : nil)
        }
        edit.record = r
        edit.batch.runs = [r]
        return edit
    }

    // MARK: - fork and rewind

    /// Starts run `into` from checkpoint `s.checkpoint` of run `s.record` (a fork: source
    /// `fork`, the new run's first checkpoint), or — `into` being the run itself — re-runs a run
    /// that is not active from an older checkpoint of its own (a rewind: source `rewind`, the
    /// checkpoints after it stay, as history). An update may be applied first. The new run
    /// names its parent's values in place (`RUN/VERSION`): a fork copies no value.
    static func branch(_ s: StoredRun, into runID: String, values: [String: JSONValue], asNode: String?, by: String,
                       now: Double, newID: String) throws -> RunEdit {
        let cp = s.checkpoint
        let inPlace = runID == s.record.runID
        if inPlace, s.record.status.isActive {
            throw conflict("run \(runID) is \(s.record.status.rawValue): a rewind re-runs a run that is not active (cancel it first, or fork it instead)")
        }
        var (state, versions, newValues, planned, _, step) = try apply(s, values: values, asNode: asNode, newID: newID)
        var writes: [PendingWriteRecord] = []
        if asNode == nil {
            planned = CheckpointBuilder.next(of: cp)
            writes = s.writes
        }
        // Values the parent wrote are read where they are.
        versions = versions.mapValues { v in v == newID ? v : ChannelVersion(v, run: cp.runID).stored(in: runID) }
        for i in newValues.indices { newValues[i].runID = runID }
        var metadata: [String: JSONValue] = [:]
        let origin = "\(cp.runID)@\(cp.checkpointID)"
        metadata[inPlace ? "rewound_to" : "forked_from"] = .string(origin)
        metadata["by"] = .string(by)
        if !values.isEmpty || asNode != nil { metadata["update"] = updateNote(values: newValues, asNode: asNode, by: by, now: now) }
        var edit = derive(s, runID: runID, newID: newID, step: step, source: inPlace ? "rewind" : "fork", plan: planned,
                          writes: writes.map { var w = $0; w.runID = runID; return w }, versions: versions,
                          joins: asNode == nil ? CheckpointBuilder.joins(of: cp) : [:], notes: metadata, now: now)
        edit.state = state
        edit.batch.channelValues = newValues
        var r = edit.record
        if !inPlace {
            r = RunRecord(runID: runID, graphHash: s.record.graphHash, graphName: s.record.graphName, graphVersion: s.record.graphVersion,
                          status: .running, durability: s.record.durability, input: s.record.input, createdAt: now)
            r.forkedFrom = origin
            r.step = step
            r.checkpointID = newID
        }
        // A fork is a new run: queued until a worker has its first task.
        r.status = edit.planned.isEmpty ? .completed : (inPlace ? .running : .queued)
        r.output = edit.planned.isEmpty ? .object(state) : nil
        r.error = nil
        r.interrupt = nil
        r.finishedAt = edit.planned.isEmpty ? now : nil
        r.updatedAt = now
        edit.record = r
        edit.batch.runs = [r]
        return edit
    }

    // MARK: - shared

    /// Applies `values` at the checkpoint; with `asNode`, plans the next step as if that node
    /// had run (the new checkpoint is then one step on). Returns the state, versions, the value
    /// rows, the plan (empty without `asNode`), joins and the new checkpoint's step.
    static func apply(_ s: StoredRun, values: [String: JSONValue], asNode: String?, newID: String) throws
        -> (state: [String: JSONValue], versions: [String: String], rows: [ChannelValueRecord], planned: [PlannedTask],
            joins: [String: [String]], step: Int) {
        let graph = s.graph
        for k in values.keys.sorted() where graph.channels[k] == nil {
            throw invalid("'\(k)' is not a channel of graph '\(graph.name)' (channels: \(graph.channelNames.joined(separator: ", ")))")
        }
        if let n = asNode, graph.nodes[n] == nil {
            throw invalid("--as-node '\(n)' is not a node of graph '\(graph.name)' (nodes: \(graph.nodes.keys.sorted().joined(separator: ", ")))")
        }
        let planner = Planner(graph: graph)
        var state = s.state
        let writes = values.keys.sorted().map { (channel: $0, value: values[$0]!) }
        let updated: Set<String>
        do { updated = try planner.apply(writes, to: &state) } catch { throw invalid("\(error)") }
        var versions = s.checkpoint.channelVersions
        var rows: [ChannelValueRecord] = []
        for ch in updated.sorted() {
            versions[ch] = newID
            rows.append(ChannelValueRecord(runID: s.record.runID, channel: ch, version: newID, baseVersion: nil, value: state[ch] ?? .null))
        }
        var joins = CheckpointBuilder.joins(of: s.checkpoint)
        var planned: [PlannedTask] = []
        var step = s.checkpoint.step
        if let n = asNode {
            step += 1
            do {
                planned = try planner.next(after: [TaskOutcome(taskID: "", node: n, writes: writes)], state: state, joins: &joins,
                                           checkpointID: newID, step: step + 1)
            } catch { throw invalid("planning after '\(n)': \(error)") }
        }
        return (state, versions, rows, planned, joins, step)
    }

    static func updateNote(values: [ChannelValueRecord], asNode: String?, by: String, now: Double) -> JSONValue {
        var o: [String: JSONValue] = ["channels": .array(values.map { .string($0.channel) }), "by": .string(by), "at": .double(now)]
        if let asNode { o["as_node"] = .string(asNode) }
        return .object(o)
    }

    /// The new checkpoint: `plan` re-planned at it (new task ids), `writes` re-keyed to those
    /// ids, and the tasks they belong to counted done.
    static func derive(_ s: StoredRun, runID: String, newID: String, step: Int, source: String, plan: [PlannedTask],
                       writes: [PendingWriteRecord], versions: [String: String], joins: [String: [String]], notes: [String: JSONValue],
                       now: Double) -> RunEdit {
        var ids: [String: String] = [:]
        let planned = plan.map { t -> PlannedTask in
            let n = t.replanned(checkpointID: newID, step: step + 1)
            ids[t.id] = n.id
            return n
        }
        var batch = StoreBatch()
        var carried: [PendingWriteRecord] = []
        for w in writes {
            guard let id = ids[w.taskID] else { continue }
            var c = w
            c.runID = runID
            c.checkpointID = newID
            c.taskID = id
            carried.append(c)
        }
        batch.pendingWrites = carried
        var done: [String: TaskOutcome] = [:]
        let nodes = Dictionary(planned.map { ($0.id, $0.node) }, uniquingKeysWith: { a, _ in a })
        for (taskID, records) in Dictionary(grouping: carried, by: \.taskID) {
            if let node = nodes[taskID], let o = StoredOutcome.outcome(taskID: taskID, node: node, records: records) { done[taskID] = o }
        }
        var made = CheckpointBuilder(runID: runID, id: newID, parentID: s.checkpoint.checkpointID, step: step, source: source,
                                     versions: versions)
        made.next = planned
        made.joins = joins
        made.notes = notes
        let cp = made.build(at: now)
        batch.checkpoints = [cp]
        // The run's newest checkpoint was resumed or updated: its writes live on under the new one.
        // (A fork or a rewind leaves the checkpoint it started from as it was.)
        if !writes.isEmpty, source == "resume" || source == "update" {
            batch.prunedWrites = [CheckpointKey(runID: runID, checkpointID: s.checkpoint.checkpointID)]
        }
        var record = s.record
        record.step = step
        record.checkpointID = newID
        record.updatedAt = now
        return RunEdit(record: record, checkpoint: cp, batch: batch, state: s.state, joins: CheckpointBuilder.joins(of: cp), planned: planned, done: done)
    }
}
