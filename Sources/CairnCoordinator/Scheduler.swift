import CairnCore
import CairnGraph
import CairnStore
import Foundation
import Logging

/// The coordinator's decisions, as a pure synchronous state machine: a run's lifecycle, leases,
/// dispatch, retries, poison, and when to acknowledge. Events go in with the time they happen
/// at; actions come out for the `Engine` to carry out (send, write, notify). No sockets, no
/// actors, no clock, no metrics: tests drive it with plain numbers for time and never sleep.
///
/// ```
///  event                       what the scheduler decides
///  ──────────────────────────  ──────────────────────────────────────────────────────────────
///  workerJoined / heartbeat    slots to fill → dispatch
///  result (current lease)      done → write (pending writes, or the step's checkpoint)
///                              → after commit: ack, notify, finish the run
///  result (any other lease)    stale → ack(accepted: false)
///  workerLost / tick           leases fenced or expired → hand back, retry, or poison
///  writeFailed                 hold: no dispatch until a write commits again
///  writeAbandoned(id)          the store is damaged: what waited on that write is refused
///  writeCommitted(id)          what waited on that write: acks, "step recorded", the run's end
/// ```
///
/// Every durable effect is a `.write` with an id; what must wait for durability (a worker's
/// ack, a watcher's "step N recorded", a run reported finished, a client's reply) waits for
/// `writeCommitted` of that id. The writer commits in order, so this is what makes the
/// guarantees in the README hold.
struct Scheduler {
    typealias WriteID = UInt64
    typealias ReplyID = UInt64

    let config: CoordinatorConfig
    var epoch: UInt64 { leases.epoch }
    /// What happens to a run as its tasks finish (results, retries, steps, ends).
    let steps: RunSteps

    var runs: [String: ActiveRun] = [:]
    /// The connected workers, and which ready task goes to which of them.
    private var dispatcher = Dispatcher()
    var workers: [String: WorkerState] { dispatcher.workers }
    /// Every running attempt's lease: the one place one is kept.
    private(set) var leases: LeaseTable
    /// What this event says and writes (actions, the ledger of writes, counters, notes).
    private var fx: Effects
    private(set) var stopping = false
    var counters: Counters { fx.counters }
    /// Runs someone watches: notes are built only for these.
    var watched: Set<String> { get { fx.watched } set { fx.watched = newValue } }
    /// Someone watches every run: notes are built for all of them.
    var watchAll: Bool { get { fx.watchAll } set { fx.watchAll = newValue } }
    private var now: Double { fx.now }

    init(config: CoordinatorConfig, epoch: UInt64, jitter: @escaping () -> Double = { Double.random(in: 0.8...1.2) },
         newCheckpointID: @escaping (Double) -> String = { Identifiers.sortable(now: Date(timeIntervalSince1970: $0)) }) {
        self.config = config
        self.leases = LeaseTable(epoch: epoch)
        self.fx = Effects(maxQueuedRows: config.maxQueuedRows)
        self.steps = RunSteps(config: config, jitter: jitter, newCheckpointID: newCheckpointID)
    }

    /// True while new work waits: the store refuses writes, or too many rows are not yet durable.
    var holding: Bool { fx.ledger.holding }
    /// Rows written and not yet durable.
    var queuedRows: Int { fx.ledger.queuedRows }

    /// Why a command that writes (`what`: "submitted", "cancelled") must be refused now, or nil.
    func refusal(_ what: String) -> String? { fx.ledger.refusal(what) }

    /// Ready tasks waiting for a worker, across runs.
    var queueDepth: Int { runs.values.reduce(0) { $0 + $1.tasks.values.filter { $0.phase == .ready }.count } }



    /// Node kinds registered by connected workers beyond the built-in ones (Swift handlers).
    var customKinds: Set<String> {
        var kinds = Set<String>()
        for w in workers.values { kinds.formUnion(w.info.kinds) }
        return kinds.subtracting(NodeKinds.builtin.keys)
    }

    /// Whether a worker with this id is registered (a worker presumed lost is not).
    func isRegistered(_ workerID: String) -> Bool { workers[workerID] != nil }

    // MARK: - the one way in

    mutating func handle(_ event: Event, now: Double) -> [Action] {
        fx.begin(at: now)
        switch event {
        case .workerJoined(let info): workerJoined(info)
        case .heartbeat(let id, let tasks): heartbeat(id, tasks)
        case .result(let id, let r): result(from: id, r)
        case .workerLost(let id, let reason): workerLost(id, reason: reason)
        case .workerDraining(let id):
            workers[id]?.draining = true
            log(.info, "worker draining", ["worker_id": "\(id)"])
        case .tick: tick()
        case .writeCommitted(let id): committed(id)
        case .writeFailed(let why, let permanent):
            if fx.ledger.failed(why, permanent: permanent) { log(.warning, "store writes are failing: holding new work", ["error": "\(why)"]) }
        case .writeAbandoned(let id): abandoned(id)
        case .runSubmitted(let run, let batch, let reply):
            write(batch, run.durability, then: [.begin(run), .reply(reply)])
        case .runRecovered(let run, let done): recovered(run, done: done)
        case .runContinued(let run, let batch, let reply):
            write(batch, .sync, then: [.begin(run), .reply(reply)])
        case .cancel(let runID, let reply):
            guard let run = runs[runID], !run.record.status.isFinished else { fx.emit(.reply(reply)); break }
            finishRun(run, status: .cancelled, error: "cancelled by request", extra: StoreBatch(), then: [.reply(reply)])
        case .record(let batch, let reply):
            write(batch, .sync, then: reply.map { [.reply($0)] } ?? [])
        case .stop:
            stopping = true
        }
        pump()
        return fx.out
    }

    // MARK: - writes

    mutating func write(_ batch: StoreBatch, _ durability: Durability, then effects: [AfterCommit]) {
        fx.write(batch, durability, then: effects)
    }

    /// A write that will never commit: whoever waits on it is told so; acks are never sent (the
    /// workers' results were not stored), runs do not start, steps are not reported recorded.
    private mutating func abandoned(_ id: WriteID) {
        let why = refusal("done") ?? "the store refuses writes"
        for effect in fx.ledger.abandoned(id) {
            if case .reply(let r) = effect { fx.emit(.replyFailed(r, why)) }
        }
    }

    private mutating func committed(_ id: WriteID) {
        let (effects, healed) = fx.ledger.committed(id)
        if healed { log(.notice, "store writes succeed again: handing out work", [:]) }
        for effect in effects {
            switch effect {
            case .ack(let w, let task): fx.emit(.ack(workerID: w, taskID: task, accepted: true))
            case .reply(let r): fx.emit(.reply(r))
            case .begin(let run):
                // A run paused before its first step (interrupt_before) is not kept in memory.
                guard run.record.status.isActive else {
                    note(run, kind: "paused", message: "paused before its first step", step: run.checkpoint.step, final: true)
                    continue
                }
                runs[run.record.runID] = run
                note(run, kind: "started", message: "run started at step \(run.checkpoint.step + 1)")
                // A continued run whose step's tasks are all done already (a fork of a checkpoint
                // whose tasks' writes are stored) completes that step at once.
                if run.allDone { completeStep(run, acks: []) } else { activate(run.record.runID) }
            case .stepRecorded(let run, let record, let step, let next, let status, let reason):
                guard runs[run.record.runID] === run else { continue }
                run.durable = record
                var summary = run.summary
                summary.nextNodes = next
                note(run, kind: "checkpoint", message: "step \(step) recorded", step: step, summary: summary)
                if status == .paused { fx.emit(.paused(record)) }
                if status != .running {
                    close(run, final: status == .paused ? "paused" : "finished", message: reason ?? status.rawValue)
                    log(.info, "run \(status.rawValue)", ["run_id": "\(run.record.runID)", "steps": "\(step)", "error": "\(reason ?? "")"])
                }
            case .running(let run):
                guard runs[run.record.runID] === run, run.durable.status == .queued else { continue }
                run.durable.status = .running
                run.durable.updatedAt = run.record.updatedAt
                note(run, kind: "running", message: "a worker has its first task")
            case .runEnded(let run, let record, let status, let error):
                guard runs[run.record.runID] === run else { continue }
                run.durable = record
                if status == .paused { fx.emit(.paused(record)) }
                close(run, final: status == .paused ? "paused" : "finished", message: error ?? status.rawValue)
                log(.info, "run \(status.rawValue)", ["run_id": "\(run.record.runID)", status == .paused ? "waiting" : "error": "\(error ?? "")"])
            }
        }
    }

    // MARK: - results

    /// A worker's result. Accepted only under the lease its task holds now; the worker is told
    /// so once the result's writes are durable. Any other lease (fenced, expired, a cancelled
    /// run, an earlier coordinator) is stale: discarded, counted, answered "not accepted".
    private mutating func result(from workerID: String, _ r: TaskReport) {
        let w = workers[workerID]
        if let w, leases.lease(r.lease)?.workerID == w.info.id { w.tasksDone += 1 }
        guard let (run, t, lease) = task(holding: r.lease), lease.workerID == workerID, t.planned.id == r.taskID else {
            fx.counters.stale += 1
            log(.notice, "stale result discarded", ["task_id": "\(r.taskID)", "lease": "\(r.lease)", "worker_id": "\(workerID)",
                                                    "lease_ended": "\(leaseEnd(r.lease)?.rawValue ?? "unknown")"])
            fx.emit(.ack(workerID: workerID, taskID: r.taskID, accepted: false))
            return
        }
        endLease(r.lease, .completed)
        let workerName = w?.info.name ?? workerID
        fx.emit(.taskLatency(seconds: max(0, now - t.startedAt)))
        let ack = AfterCommit.ack(workerID: workerID, taskID: r.taskID)
        let outcome: TaskOutcome, records: TaskRecords
        switch ResultVerdict(r, task: t, run: run, poisonAfter: config.poisonAfter) {
        case .resendWhole(let why):
            // The worker could not build the state from its cache (the two sides disagree, a bug):
            // not the node's failure. It drops the run's values, and the task goes out again whole.
            w?.mirror?.forget(run.record.runID)
            t.lostWorkers += 1
            run.enqueue(t, at: now)
            activate(run.record.runID)
            fx.counters.reassigned += 1
            log(.warning, "state cache out of step; task sent again whole", ["run_id": "\(run.record.runID)", "task_id": "\(r.taskID)",
                                                                            "worker": "\(workerName)", "error": "\(why)"])
            note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: workerName,
                 message: "\(why); task handed back", attempt: t.attempt)
            return
        case .failed(let message, let kind, let nonRetryable, let spent):
            attemptFailed(run, t, message: message, errorKind: kind, nonRetryable: nonRetryable, worker: workerName, records: spent, ack: ack)
            return
        case .done(let o, let spent):
            (outcome, records) = (o, spent)
        }
        let done = fx.execution(run, t, worker: workerName, status: "completed", error: nil, records: records)
        steps.markDone(run, t, outcome, records: records, worker: workerName, &fx)
        // The last task of its step: its writes go straight into the step's checkpoint, in one
        // transaction, instead of being stored as pending writes first (a chain's common case).
        // A step in which a task asked a question has no checkpoint yet: its writes are stored.
        if run.allDone && !run.asked {
            run.carry.taskExecutions.append(done)
            completeStep(run, acks: [ack])
            return
        }
        var batch = StoreBatch()
        batch.pendingWrites = StoredOutcome.rows(outcome, runID: run.record.runID, checkpointID: run.checkpoint.checkpointID,
                                                 cost: records.cost, apiCalls: records.apiCalls)
        batch.taskExecutions.append(done)
        // Counted done now; the step's checkpoint is written after these writes, so it can never
        // be durable without them.
        write(batch, run.durability, then: [ack])
        if run.allDone { completeStep(run, acks: []) }  // the step asked: it pauses
    }

    // MARK: - workers

    private mutating func workerJoined(_ info: WorkerInfo) {
        let w = WorkerState(info, now: now)
        dispatcher.join(w)
        log(.info, "worker joined", ["worker": "\(info.name)", "worker_id": "\(info.id)", "slots": "\(info.slots)", "address": "\(info.address)"])
        write(w.batch(disconnected: nil), .sync, then: [])
    }

    private mutating func heartbeat(_ workerID: String, _ tasks: [(lease: String, progress: [UInt8])]) {
        guard let w = workers[workerID] else { return }
        w.lastHeartbeat = now
        for p in tasks where !p.progress.isEmpty {
            guard let (run, t, lease) = task(holding: p.lease), lease.workerID == workerID else { continue }
            t.progress = p.progress
            note(run, kind: "progress", node: t.planned.node, taskID: t.planned.id, worker: w.info.name,
                 message: String(decoding: t.progress, as: UTF8.self), attempt: t.attempt)
        }
    }

    /// A worker's connection ended, or it went silent: its leases are fenced (a result it sends
    /// later is rejected) and its tasks go back to their runs' queues with their last progress.
    /// A task whose workers died `poisonAfter` times fails its run instead.
    private mutating func workerLost(_ workerID: String, reason: String) {
        guard let w = dispatcher.remove(workerID) else { return }
        var batch = w.batch(disconnected: now)
        var handedBack = 0
        var poisoned: [(ActiveRun, TaskState)] = []
        for lease in leases.held(by: workerID) {
            let holder = task(holding: lease.token)
            endLease(lease.token, .fenced)
            guard let (run, t, _) = holder else { continue }
            fx.counters.leasesFenced += 1
            batch.taskExecutions.append(fx.execution(run, t, worker: w.info.name, status: "lost",
                                                  error: "worker \(w.info.name) lost: \(reason)", errorKind: "lost"))
            t.lostWorkers += 1
            if t.lostWorkers >= config.poisonAfter {
                poisoned.append((run, t))
                continue
            }
            run.enqueue(t, at: now)
            activate(run.record.runID)
            handedBack += 1
            fx.counters.reassigned += 1
            note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: w.info.name,
                 message: "worker \(w.info.name) lost (\(reason)); task handed back", attempt: t.attempt)
        }
        log(.warning, "worker left", ["worker": "\(w.info.name)", "worker_id": "\(workerID)", "reason": "\(reason)",
                                      "tasks_handed_back": "\(handedBack)"])
        write(batch, .sync, then: [])
        for (run, t) in poisoned where runs[run.record.runID] === run {
            fx.counters.poisoned += 1
            let why = "task \(t.planned.id) (node '\(t.planned.node)') was running on \(t.lostWorkers) workers that all died; declared poisonous instead of handing it out again"
            log(.error, "poisonous task", ["run_id": "\(run.record.runID)", "task_id": "\(t.planned.id)", "node": "\(t.planned.node)"])
            note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: w.info.name, message: why, attempt: t.attempt)
            finishRun(run, status: .failed, error: why, extra: StoreBatch(), then: [])
        }
    }

    /// Silent workers are presumed lost; attempts past their deadline fail, whatever their
    /// worker says; retries whose time has come go back to their queues.
    private mutating func tick() {
        let silentBefore = now - config.heartbeatTimeout
        for w in workers.values.sorted(by: { $0.info.id < $1.info.id }) where w.lastHeartbeat < silentBefore {
            workerLost(w.info.id, reason: "no heartbeat for \(Int(config.heartbeatTimeout))s")
        }
        for lease in leases.overdue(at: now) {
            guard let (run, t, _) = task(holding: lease.token) else {
                endLease(lease.token, .expired)
                continue
            }
            let workerName = workers[lease.workerID]?.info.name ?? lease.workerID
            endLease(lease.token, .expired)
            fx.counters.leasesExpired += 1
            let limit = Durations.format(millis: run.graph.nodes[t.planned.node]?.timeoutMS ?? 0)
            attemptFailed(run, t, message: "no result within the node's timeout (\(limit)) and its grace period", errorKind: "timeout",
                          nonRetryable: false, worker: workerName, records: TaskRecords(), ack: nil)
        }
        for run in runs.values.sorted(by: { $0.record.runID < $1.record.runID }) {
            for id in run.order {
                guard let t = run.tasks[id], t.phase == .waitingRetry, let at = t.retryAt, at <= now else { continue }
                t.retryAt = nil
                run.enqueue(t, at: at)
                activate(run.record.runID)
            }
        }
    }

    // MARK: - leases

    /// The running task that holds `lease` now, with the lease, if any.
    func task(holding lease: String) -> (ActiveRun, TaskState, LeaseTable.Lease)? {
        guard let l = leases.lease(lease), let run = runs[l.runID], let t = run.tasks[l.taskID], t.phase == .running else { return nil }
        return (run, t, l)
    }

    /// Why a lease is not current: never issued (or from an earlier epoch), or how it ended.
    func leaseEnd(_ lease: String) -> LeaseEnd? { leases.howEnded(lease) }

    /// Ends a task's current lease: the task and its worker no longer hold it.
    mutating func endLease(_ lease: String, _ how: LeaseEnd) {
        leases.end(lease, how)
    }

    // MARK: - dispatch

    mutating func activate(_ runID: String) { fx.activate(runID) }

    /// Hands ready tasks to free worker slots as the `Dispatcher` picks them.
    private mutating func pump() {
        // While the store cannot keep up (or cannot be written), no new work: nothing is dropped.
        for runID in fx.activated { dispatcher.activate(runID) }
        fx.activated = []
        guard !workers.isEmpty, !holding, !stopping else { return }
        while let (run, t, w) = dispatcher.next(runs: runs, leases: leases) { assign(t, of: run, to: w) }
    }

    private mutating func assign(_ t: TaskState, of run: ActiveRun, to w: WorkerState) {
        let deadline = run.graph.nodes[t.planned.node]?.timeoutMS.map { now + Double($0) / 1000 + config.timeoutGrace }
        let lease = leases.grant(runID: run.record.runID, taskID: t.planned.id, to: w.info.id, deadline: deadline).token
        t.attempt += 1
        t.phase = .running
        t.startedAt = now
        fx.counters.dispatched += 1

        let (a, sent, kept) = run.assignment(t, lease: lease, mirror: &w.mirror)
        fx.counters.stateBytesSent += UInt64(sent)
        fx.counters.stateBytesKept += UInt64(kept)
        if run.record.status == .queued { firstTaskTaken(run) }
        fx.emit(.dispatch(workerID: w.info.id, a))
        note(run, kind: "task_started", node: t.planned.node, taskID: t.planned.id, worker: w.info.name, attempt: t.attempt)
    }

    // MARK: - runs

    /// A queued run (submitted or forked, no task with a worker yet) has its first task with a
    /// worker: it is running from now. Queries and watchers say so once its row does (`cairn
    /// list`, `stats`): a `running` event then.
    private mutating func firstTaskTaken(_ run: ActiveRun) {
        run.record.status = .running
        run.record.updatedAt = now
        var batch = StoreBatch()
        batch.runs.append(run.record)
        write(batch, run.durability, then: [.running(run)])
    }

    private mutating func recovered(_ run: ActiveRun, done: [String: TaskOutcome]) {
        let runID = run.record.runID
        run.beginStep(planned: CheckpointBuilder.next(of: run.checkpoint), done: done, at: now)
        runs[runID] = run
        if run.allDone {
            completeStep(run, acks: [])
        } else {
            activate(runID)
        }
    }

    /// Drops an ended or paused run from memory after telling its watchers.
    mutating func close(_ run: ActiveRun, final kind: String, message: String) {
        let runID = run.record.runID
        note(run, kind: kind, message: message, step: run.checkpoint.step, final: true)
        runs[runID] = nil
        dispatcher.forget(runID)
        for w in workers.values where w.mirror?.held.holds(run: runID) == true { w.mirror!.forget(runID) }
        fx.emit(.closed(runID: runID))
    }

    // MARK: - output helpers

    mutating func note(_ run: ActiveRun, kind: String, node: String = "", taskID: String = "", worker: String = "",
                       message: String = "", attempt: Int = 0, step: Int? = nil, final: Bool = false, summary: RunSummary? = nil) {
        fx.note(run, kind: kind, node: node, taskID: taskID, worker: worker, message: message, attempt: attempt, step: step,
                final: final, summary: summary)
    }

    mutating func log(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) { fx.log(level, message, metadata) }

    // MARK: - what happens to a run as its tasks finish (`RunSteps`)

    private mutating func completeStep(_ run: ActiveRun, acks: [AfterCommit]) { steps.completeStep(run, acks: acks, &fx, &leases) }

    private mutating func finishRun(_ run: ActiveRun, status: RunStatus, error: String?, extra: StoreBatch, then: [AfterCommit]) {
        steps.finishRun(run, status: status, error: error, extra: extra, then: then, &fx, &leases)
    }

    private mutating func attemptFailed(_ run: ActiveRun, _ t: TaskState, message: String, errorKind: String, nonRetryable: Bool,
                                        worker: String, records: TaskRecords, ack: AfterCommit?) {
        steps.attemptFailed(run, t, message: message, errorKind: errorKind, nonRetryable: nonRetryable, worker: worker,
                            records: records, ack: ack, &fx, &leases)
    }
}
