import CairnCore
import CairnGraph
import CairnStore
import Logging

/// What happens to a run as its tasks finish: a task counted done, a failed attempt retried or
/// the run failed (by its node's retry policy), a step completed into its checkpoint (what
/// `StepFold` decides, written as one batch), a step paused on its questions, a run ended. The
/// `Scheduler` calls these with the run it holds; they write through `Effects` and revoke leases
/// in the `LeaseTable`, and decide nothing about workers or dispatch.
struct RunSteps {
    let config: CoordinatorConfig
    /// Jitter factor for a retry's delay, drawn in 0.8...1.2 (a fixed value in tests).
    let jitter: () -> Double
    /// A new checkpoint's id (time-sortable); injected so tests choose.
    let newCheckpointID: (Double) -> String

    /// A task's result is in: count it done (its writes are queued, or ride with the step's checkpoint).
    func markDone(_ run: ActiveRun, _ t: TaskState, _ outcome: TaskOutcome, records: TaskRecords, worker: String, _ fx: inout Effects) {
        t.phase = .done
        t.outcome = outcome
        if outcome.interrupt != nil { run.asked = true }
        run.stepDone += 1
        run.record.add(records)
        run.tasksDoneTotal += 1
        fx.counters.completed += 1
        fx.note(run, kind: "task_finished", node: t.planned.node, taskID: t.planned.id, worker: worker, attempt: t.attempt)
    }

    /// An attempt failed (an error, a bad result, or its deadline passed): retried after the
    /// node's backoff with jitter while attempts remain and the error is retryable; otherwise
    /// the run fails, with the error stored as the task's final write.
    func attemptFailed(_ run: ActiveRun, _ t: TaskState, message: String, errorKind: String, nonRetryable: Bool,
                       worker: String, records: TaskRecords, ack: Scheduler.AfterCommit?, _ fx: inout Effects, _ leases: inout LeaseTable) {
        let runID = run.record.runID
        let policy = run.graph.nodes[t.planned.node]?.retry ?? RetryPolicy()
        var batch = StoreBatch()
        batch.taskExecutions.append(fx.execution(run, t, worker: worker, status: "failed", error: message,
                                                 errorKind: errorKind.isEmpty ? nil : errorKind, records: records))
        // What a failed attempt spent was spent: it counts toward the run's cost.
        run.record.add(records)
        let retryable = !nonRetryable && !policy.nonRetryable.contains(errorKind)
        if retryable && t.attempt < policy.maxAttempts {
            var delay = Double(policy.delayMS(beforeAttempt: t.attempt + 1)) / 1000
            if policy.jitter { delay *= jitter() }
            t.phase = .waitingRetry
            t.retryAt = fx.now + delay
            fx.counters.retried += 1
            fx.log(.info, "task attempt failed; retrying", ["run_id": "\(runID)", "task_id": "\(t.planned.id)", "node": "\(t.planned.node)",
                                                             "attempt": "\(t.attempt)", "delay_ms": "\(Int64(delay * 1000))", "error": "\(message)"])
            fx.note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: worker,
                    message: "attempt \(t.attempt) of \(policy.maxAttempts) failed: \(message); retrying in \(Durations.format(millis: Int64(delay * 1000)))",
                    attempt: t.attempt)
            fx.write(batch, run.durability, then: ack.map { [$0] } ?? [])
            fx.emit(.wake(at: fx.now + delay))
            return
        }
        fx.counters.failed += 1
        let attempts = t.attempt == 1 ? "1 attempt" : "\(t.attempt) attempts"
        batch.pendingWrites.append(PendingWriteRecord(runID: runID, checkpointID: run.checkpoint.checkpointID, taskID: t.planned.id,
                                                      idx: PendingWriteRecord.errorIdx, channel: "__error__",
                                                      value: .object(["node": .string(t.planned.node), "error": .string(message),
                                                                      "attempts": .int(Int64(t.attempt))])))
        fx.note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: worker, message: message, attempt: t.attempt)
        finishRun(run, status: .failed, error: "node '\(t.planned.node)' failed after \(attempts): \(message)", extra: batch,
                  then: ack.map { [$0] } ?? [], &fx, &leases)
    }

    /// Every task of the step is in: apply the writes in task order, plan the next step, and
    /// write the checkpoint (with the run's new status) as one batch. The next step is handed
    /// out at once (pipelined); the checkpoint note, the acks and a run's end wait for the
    /// commit. The writer commits in order, so a later step's writes can never be durable
    /// before this checkpoint.
    func completeStep(_ run: ActiveRun, acks: [Scheduler.AfterCommit], _ fx: inout Effects, _ leases: inout LeaseTable) {
        let runID = run.record.runID
        let outcomes = run.order.compactMap { run.tasks[$0]?.outcome }
        if outcomes.contains(where: { $0.interrupt != nil }) {
            pauseForQuestions(run, outcomes, acks: acks, &fx)
            return
        }
        var state = run.takeState()
        let fold: StepFold
        do {
            fold = try StepFold(state: &state, run: run, outcomes: outcomes, newID: newCheckpointID(fx.now), now: fx.now, config: config)
        } catch {
            run.state = state
            let carry = run.carry
            run.carry = StoreBatch()
            finishRun(run, status: .failed, error: "step \(run.checkpoint.step + 1): \(error)", extra: carry, then: acks, &fx, &leases)
            return
        }
        var batch = StoreBatch()
        batch.channelValues = fold.values
        batch.merge(run.carry)
        batch.checkpoints.append(fold.checkpoint)
        // The step's writes now live in the new checkpoint's channel values.
        batch.prunedWrites.append(CheckpointKey(runID: runID, checkpointID: run.checkpoint.checkpointID))
        batch.runs.append(fold.record)

        fx.counters.checkpoints += 1
        run.carry = StoreBatch()
        run.record = fold.record
        run.checkpoint = fold.checkpoint
        run.state = state
        run.joins = fold.joins
        run.chains = fold.chains
        run.beginStep(planned: fold.status == .running ? fold.next : [], done: [:], at: fx.now)
        fx.write(batch, run.durability, then: acks + [.stepRecorded(run, record: fold.record, step: fold.record.step, next: fold.nextNodes,
                                                                 status: fold.status, reason: fold.record.error)])
        if fold.status == .running { fx.activate(runID) }
    }

    /// Every task of the step is in and some asked a question: the run pauses inside the step.
    /// No checkpoint is written: the answered tasks run again after `cairn resume`, and the
    /// others' writes (stored as pending writes) count as done then. The questions are listed
    /// in the run's record, in task order, and the record is written durably.
    func pauseForQuestions(_ run: ActiveRun, _ outcomes: [TaskOutcome], acks: [Scheduler.AfterCommit], _ fx: inout Effects) {
        let cpID = run.checkpoint.checkpointID
        let pending = outcomes.compactMap { o -> PendingInterrupt? in
            guard let q = o.interrupt else { return nil }
            return PendingInterrupt(id: o.interruptID ?? PendingInterrupt.id(checkpointID: cpID, key: o.taskID), reason: "node",
                                    node: o.node, taskID: o.taskID, value: q)
        }
        var batch = run.carry
        run.carry = StoreBatch()
        var record = run.record
        record.status = .paused
        record.interrupt = PendingInterrupt.record(checkpointID: cpID, pending: pending)
        record.updatedAt = fx.now
        batch.runs.append(record)
        run.record = record
        for t in run.tasks.values where t.phase != .done { t.phase = .done }
        let asked = pending.map { "\($0.id) (node '\($0.node)')" }.joined(separator: ", ")
        fx.write(batch, .sync, then: acks + [.runEnded(run, record: record, status: .paused, error: "waiting for an answer to \(asked)")])
    }

    /// Ends a run that failed or was cancelled outside step completion. It stops at once (no
    /// more tasks handed out, its leases revoked); watchers hear of the end, and `then` runs,
    /// once it is durable.
    func finishRun(_ run: ActiveRun, status: RunStatus, error: String?, extra: StoreBatch, then: [Scheduler.AfterCommit],
                   _ fx: inout Effects, _ leases: inout LeaseTable) {
        guard !run.record.status.isFinished else {
            fx.write(StoreBatch(), .sync, then: then)
            return
        }
        for t in run.tasks.values {
            if let lease = leases.lease(runID: run.record.runID, taskID: t.planned.id) { leases.end(lease.token, .revoked) }
            if t.phase != .done { t.phase = .done }
        }
        run.record.status = status
        run.record.error = error
        run.record.updatedAt = fx.now
        run.record.finishedAt = fx.now
        var batch = extra
        batch.runs.append(run.record)
        fx.write(batch, .sync, then: then + [.runEnded(run, record: run.record, status: status, error: error)])
    }
}
