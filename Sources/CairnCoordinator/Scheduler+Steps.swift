import CairnCore
import CairnGraph
import CairnStore
import Logging

/// Results, failed attempts, steps and the end of a run.
extension Scheduler {
    /// A worker's result. Accepted only under the lease its task holds now; the worker is told
    /// so once the result's writes are durable. Any other lease (fenced, expired, a cancelled
    /// run, an earlier coordinator) is stale: discarded, counted, answered "not accepted".
    mutating func result(from workerID: String, _ r: TaskReport) {
        let w = workers[workerID]
        if let w, leases.lease(r.lease)?.workerID == w.info.id { w.tasksDone += 1 }
        guard let (run, t, lease) = task(holding: r.lease), lease.workerID == workerID, t.planned.id == r.taskID else {
            counters.stale += 1
            log(.notice, "stale result discarded", ["task_id": "\(r.taskID)", "lease": "\(r.lease)", "worker_id": "\(workerID)",
                                                    "lease_ended": "\(leaseEnd(r.lease)?.rawValue ?? "unknown")"])
            emit(.ack(workerID: workerID, taskID: r.taskID, accepted: false))
            return
        }
        endLease(r.lease, .completed)
        let workerName = w?.info.name ?? workerID
        emit(.taskLatency(seconds: max(0, time - t.startedAt)))
        let ack = AfterCommit.ack(workerID: workerID, taskID: r.taskID)
        let outcome: TaskOutcome, records: TaskRecords
        switch ResultVerdict(r, task: t, run: run, poisonAfter: config.poisonAfter) {
        case .resendWhole(let why):
            // The worker could not build the state from its cache (the two sides disagree, a bug):
            // not the node's failure. It drops the run's values, and the task goes out again whole.
            w?.mirror?.forget(run.record.runID)
            t.lostWorkers += 1
            run.enqueue(t, at: time)
            activate(run.record.runID)
            counters.reassigned += 1
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
        let done = execution(run, t, worker: workerName, status: "completed", error: nil, records: records)
        markDone(run, t, outcome, records: records, worker: workerName)
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

    /// A task's result is in: count it done (its writes are queued, or ride with the step's checkpoint).
    private mutating func markDone(_ run: ActiveRun, _ t: TaskState, _ outcome: TaskOutcome, records: TaskRecords, worker: String) {
        t.phase = .done
        t.outcome = outcome
        if outcome.interrupt != nil { run.asked = true }
        run.stepDone += 1
        run.record.add(records)
        run.tasksDoneTotal += 1
        counters.completed += 1
        note(run, kind: "task_finished", node: t.planned.node, taskID: t.planned.id, worker: worker, attempt: t.attempt)
    }

    /// An attempt failed (an error, a bad result, or its deadline passed): retried after the
    /// node's backoff with jitter while attempts remain and the error is retryable; otherwise
    /// the run fails, with the error stored as the task's final write.
    mutating func attemptFailed(_ run: ActiveRun, _ t: TaskState, message: String, errorKind: String, nonRetryable: Bool,
                                worker: String, records: TaskRecords, ack: AfterCommit?) {
        let runID = run.record.runID
        let policy = run.graph.nodes[t.planned.node]?.retry ?? RetryPolicy()
        var batch = StoreBatch()
        batch.taskExecutions.append(execution(run, t, worker: worker, status: "failed", error: message,
                                              errorKind: errorKind.isEmpty ? nil : errorKind, records: records))
        // What a failed attempt spent was spent: it counts toward the run's cost.
        run.record.add(records)
        let retryable = !nonRetryable && !policy.nonRetryable.contains(errorKind)
        if retryable && t.attempt < policy.maxAttempts {
            var delay = Double(policy.delayMS(beforeAttempt: t.attempt + 1)) / 1000
            if policy.jitter { delay *= jitter() }
            t.phase = .waitingRetry
            t.retryAt = time + delay
            counters.retried += 1
            log(.info, "task attempt failed; retrying", ["run_id": "\(runID)", "task_id": "\(t.planned.id)", "node": "\(t.planned.node)",
                                                          "attempt": "\(t.attempt)", "delay_ms": "\(Int64(delay * 1000))", "error": "\(message)"])
            note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: worker,
                 message: "attempt \(t.attempt) of \(policy.maxAttempts) failed: \(message); retrying in \(Durations.format(millis: Int64(delay * 1000)))",
                 attempt: t.attempt)
            write(batch, run.durability, then: ack.map { [$0] } ?? [])
            emit(.wake(at: time + delay))
            return
        }
        counters.failed += 1
        let attempts = t.attempt == 1 ? "1 attempt" : "\(t.attempt) attempts"
        batch.pendingWrites.append(PendingWriteRecord(runID: runID, checkpointID: run.checkpoint.checkpointID, taskID: t.planned.id,
                                                      idx: PendingWriteRecord.errorIdx, channel: "__error__",
                                                      value: .object(["node": .string(t.planned.node), "error": .string(message),
                                                                      "attempts": .int(Int64(t.attempt))])))
        note(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: worker, message: message, attempt: t.attempt)
        finishRun(run, status: .failed, error: "node '\(t.planned.node)' failed after \(attempts): \(message)", extra: batch,
                  then: ack.map { [$0] } ?? [])
    }

    /// Every task of the step is in: apply the writes in task order, plan the next step, and
    /// write the checkpoint (with the run's new status) as one batch. The next step is handed
    /// out at once (pipelined); the checkpoint note, the acks and a run's end wait for the
    /// commit. The writer commits in order, so a later step's writes can never be durable
    /// before this checkpoint.
    mutating func completeStep(_ run: ActiveRun, acks: [AfterCommit]) {
        let runID = run.record.runID
        let outcomes = run.order.compactMap { run.tasks[$0]?.outcome }
        if outcomes.contains(where: { $0.interrupt != nil }) {
            pauseForQuestions(run, outcomes, acks: acks)
            return
        }
        var state = run.takeState()
        let fold: StepFold
        do {
            fold = try StepFold(state: &state, run: run, outcomes: outcomes, newID: newCheckpointID(time), now: time, config: config)
        } catch {
            run.state = state
            let carry = run.carry
            run.carry = StoreBatch()
            finishRun(run, status: .failed, error: "step \(run.checkpoint.step + 1): \(error)", extra: carry, then: acks)
            return
        }
        var batch = StoreBatch()
        batch.channelValues = fold.values
        batch.merge(run.carry)
        batch.checkpoints.append(fold.checkpoint)
        // The step's writes now live in the new checkpoint's channel values.
        batch.prunedWrites.append(CheckpointKey(runID: runID, checkpointID: run.checkpoint.checkpointID))
        batch.runs.append(fold.record)

        counters.checkpoints += 1
        run.carry = StoreBatch()
        run.record = fold.record
        run.checkpoint = fold.checkpoint
        run.state = state
        run.joins = fold.joins
        run.chains = fold.chains
        run.beginStep(planned: fold.status == .running ? fold.next : [], done: [:], at: time)
        write(batch, run.durability, then: acks + [.stepRecorded(run, record: fold.record, step: fold.record.step, next: fold.nextNodes,
                                                                 status: fold.status, reason: fold.record.error)])
        if fold.status == .running { activate(runID) }
    }

    /// Every task of the step is in and some asked a question: the run pauses inside the step.
    /// No checkpoint is written: the answered tasks run again after `cairn resume`, and the
    /// others' writes (stored as pending writes) count as done then. The questions are listed
    /// in the run's record, in task order, and the record is written durably.
    mutating func pauseForQuestions(_ run: ActiveRun, _ outcomes: [TaskOutcome], acks: [AfterCommit]) {
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
        record.updatedAt = time
        batch.runs.append(record)
        run.record = record
        for t in run.tasks.values where t.phase != .done { t.phase = .done }
        let asked = pending.map { "\($0.id) (node '\($0.node)')" }.joined(separator: ", ")
        write(batch, .sync, then: acks + [.runEnded(run, record: record, status: .paused, error: "waiting for an answer to \(asked)")])
    }

    /// Ends a run that failed or was cancelled outside step completion. It stops at once (no
    /// more tasks handed out, its leases revoked); watchers hear of the end, and `then` runs,
    /// once it is durable.
    mutating func finishRun(_ run: ActiveRun, status: RunStatus, error: String?, extra: StoreBatch, then: [AfterCommit]) {
        let runID = run.record.runID
        guard runs[runID] === run, !run.record.status.isFinished else {
            write(StoreBatch(), .sync, then: then)
            return
        }
        for t in run.tasks.values {
            if let lease = leases.lease(runID: run.record.runID, taskID: t.planned.id) { endLease(lease.token, .revoked) }
            if t.phase != .done { t.phase = .done }
        }
        run.record.status = status
        run.record.error = error
        run.record.updatedAt = time
        run.record.finishedAt = time
        var batch = extra
        batch.runs.append(run.record)
        write(batch, .sync, then: then + [.runEnded(run, record: run.record, status: status, error: error)])
    }
}
