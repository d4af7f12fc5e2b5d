import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import CoreMetrics
import Foundation
import Logging
import NIOCore

extension Engine {
    /// A worker's result, handled on the event loop where it arrived. The worker is told it was
    /// accepted once its writes are durable; a result under a lease that is no longer current
    /// (task reassigned, run cancelled) is discarded, counted, and answered "not accepted".
    /// `channel` is the connection the result came on: a worker already presumed lost (no longer
    /// registered) is still told its late result was not accepted.
    func result(from workerID: String, _ r: Cairn_V1_TaskResult, channel: (any Channel)? = nil) {
        let w = workers[workerID]
        if let w, w.running.remove(r.lease) != nil { w.tasksDone += 1 }
        let ack: (Bool) -> Void = { accepted in
            var a = Cairn_V1_ResultAck()
            a.taskID = r.taskID
            a.accepted = accepted
            if let w {
                w.send(.resultAck(a))
            } else if let channel, let frame = try? WireCodec().encode(.resultAck(a), allocator: channel.allocator) {
                channel.writeAndFlush(frame, promise: nil)
            }
        }
        let run: ActiveRun, t: TaskState
        switch leaseTable.complete(r.lease, workerID: workerID) {
        case .success(let lease) where lease.taskID == r.taskID:
            guard let rr = runs[lease.runID], let tt = rr.tasks[lease.taskID], tt.lease == r.lease, tt.phase == .running else {
                fallthrough
            }
            run = rr
            t = tt
        default:
            staleResults += 1
            metrics.staleResults.increment()
            logger.notice("stale result discarded", metadata: ["task_id": "\(r.taskID)", "lease": "\(r.lease)", "worker_id": "\(workerID)"])
            ack(false)
            pump()
            return
        }
        t.lease = nil
        defer { pump() }
        let workerName = w?.name ?? workerID
        let finished = now
        metrics.taskLatency.recordNanoseconds(Int64(max(0, finished - t.startedAt) * 1e9))

        if !r.error.isEmpty {
            attemptFailed(run, t, message: r.error, errorKind: r.errorKind, nonRetryable: r.nonRetryable,
                          worker: workerName, finishedAt: finished, cost: r.cost, apiCalls: Int(r.apiCalls), ack: ack)
            return
        }

        let outcome: TaskOutcome
        do {
            outcome = try decodeOutcome(r, task: t)
        } catch {
            attemptFailed(run, t, message: "node '\(t.planned.node)' returned a bad result: \(error)", errorKind: "bad_result",
                          nonRetryable: true, worker: workerName, finishedAt: finished, cost: r.cost, apiCalls: Int(r.apiCalls), ack: ack)
            return
        }
        if let problem = run.planner.validate(outcome) {
            attemptFailed(run, t, message: problem.message, errorKind: "bad_result", nonRetryable: true,
                          worker: workerName, finishedAt: finished, cost: r.cost, apiCalls: Int(r.apiCalls), ack: ack)
            return
        }

        let runID = run.record.runID
        let cpID = run.checkpoint.checkpointID
        let execution = TaskExecutionRecord(runID: runID, taskID: t.planned.id, node: t.planned.node,
                                            step: run.checkpoint.step + 1, attempt: t.attempt, worker: workerName,
                                            status: "completed", startedAt: t.startedAt, finishedAt: finished,
                                            error: nil, cost: r.cost, apiCalls: Int(r.apiCalls))
        markDone(run, t, outcome, cost: r.cost, apiCalls: Int(r.apiCalls), worker: workerName)
        // The last task of its step: its writes go straight into the step's checkpoint, in one
        // transaction, instead of being stored as pending writes first (a chain's common case).
        if run.allDone {
            run.carry.taskExecutions.append(execution)
            completeStep(run, acks: [ack])
            return
        }
        var batch = StoreBatch()
        for (i, w) in outcome.writes.enumerated() {
            batch.pendingWrites.append(PendingWriteRecord(runID: runID, checkpointID: cpID, taskID: t.planned.id, idx: i,
                                                          channel: w.channel, value: w.value))
        }
        // The control record is needed only for what the writes do not say (routing, sends,
        // an interrupt, cost); a task that just wrote is rebuilt from its writes after a restart.
        if outcome.writes.isEmpty || !outcome.goto.isEmpty || !outcome.sends.isEmpty || outcome.interrupt != nil
            || r.cost != 0 || r.apiCalls != 0 {
            batch.pendingWrites.append(PendingWriteRecord(runID: runID, checkpointID: cpID, taskID: t.planned.id,
                                                          idx: PendingWriteRecord.resultIdx, channel: "__result__",
                                                          value: Self.resultRecord(outcome, cost: r.cost, apiCalls: Int(r.apiCalls))))
        }
        batch.taskExecutions.append(execution)
        // Counted done now; the step's checkpoint is queued behind these writes, so it can never
        // be durable without them.
        writer.enqueue(batch, durability: run.durability) { _ in ack(true) }
    }

    /// A task's result is in: count it done (its writes are queued, or ride with the step's checkpoint).
    func markDone(_ run: ActiveRun, _ t: TaskState, _ outcome: TaskOutcome, cost: Double, apiCalls: Int, worker: String) {
        t.phase = .done
        t.outcome = outcome
        run.stepDone += 1
        run.record.cost += cost
        run.record.apiCalls += apiCalls
        run.tasksDoneTotal += 1
        tasksCompleted += 1
        metrics.tasksCompleted.increment()
        publish(run, kind: "task_finished", node: t.planned.node, taskID: t.planned.id, worker: worker, attempt: t.attempt)
    }

    func decodeOutcome(_ r: Cairn_V1_TaskResult, task t: TaskState) throws -> TaskOutcome {
        var writes: [(channel: String, value: JSONValue)] = []
        if !r.writesJson.isEmpty {
            guard case .object(let o) = try JSONValue.parse([UInt8](r.writesJson)) else {
                throw PlanError("'writes' must be an object of channel to value")
            }
            writes = o.keys.sorted().map { ($0, o[$0]!) }
        }
        var sends: [(node: String, input: JSONValue)] = []
        for s in r.sends {
            sends.append((s.node, s.inputJson.isEmpty ? .null : try JSONValue.parse([UInt8](s.inputJson))))
        }
        let interrupt = r.interruptJson.isEmpty ? nil : try JSONValue.parse([UInt8](r.interruptJson))
        return TaskOutcome(taskID: t.planned.id, node: t.planned.node, writes: writes, goto: r.goto, sends: sends, interrupt: interrupt)
    }

    /// The control record stored beside a task's writes: enough to rebuild its outcome after a restart.
    static func resultRecord(_ o: TaskOutcome, cost: Double, apiCalls: Int) -> JSONValue {
        var rec: [String: JSONValue] = ["node": .string(o.node)]
        if !o.goto.isEmpty { rec["goto"] = .array(o.goto.map { .string($0) }) }
        if !o.sends.isEmpty { rec["sends"] = .array(o.sends.map { .object(["node": .string($0.node), "input": $0.input]) }) }
        if let i = o.interrupt { rec["interrupt"] = i }
        if cost != 0 { rec["cost"] = .double(cost) }
        if apiCalls != 0 { rec["api_calls"] = .int(Int64(apiCalls)) }
        return .object(rec)
    }

    /// A task's outcome rebuilt from its stored writes (after a restart); nil when the task has
    /// not finished. `node` is the planned task's node, for tasks stored without a control record.
    static func outcome(taskID: String, node plannedNode: String, records: [PendingWriteRecord]) -> TaskOutcome? {
        let writes = records.filter { $0.idx >= 0 }.sorted { $0.idx < $1.idx }.map { (channel: $0.channel, value: $0.value) }
        guard let result = records.first(where: { $0.idx == PendingWriteRecord.resultIdx })?.value else {
            return writes.isEmpty ? nil : TaskOutcome(taskID: taskID, node: plannedNode, writes: writes, goto: [], sends: [], interrupt: nil)
        }
        let node = result["node"]?.stringValue ?? plannedNode
        let sends = (result["sends"]?.arrayValue ?? []).compactMap { s -> (node: String, input: JSONValue)? in
            guard let n = s["node"]?.stringValue else { return nil }
            return (n, s["input"] ?? .null)
        }
        return TaskOutcome(taskID: taskID, node: node, writes: writes,
                           goto: (result["goto"]?.arrayValue ?? []).compactMap(\.stringValue), sends: sends,
                           interrupt: result["interrupt"])
    }

    func attemptFailed(_ run: ActiveRun, _ t: TaskState, message: String, errorKind: String, nonRetryable: Bool,
                       worker: String, finishedAt: Double, cost: Double, apiCalls: Int, ack: ((Bool) -> Void)? = nil) {
        let runID = run.record.runID
        let policy = run.graph.nodes[t.planned.node]?.retry ?? RetryPolicy()
        var batch = StoreBatch()
        batch.taskExecutions.append(TaskExecutionRecord(runID: runID, taskID: t.planned.id, node: t.planned.node,
                                                        step: run.checkpoint.step + 1, attempt: t.attempt, worker: worker,
                                                        status: "failed", startedAt: t.startedAt, finishedAt: finishedAt,
                                                        error: message, cost: cost, apiCalls: apiCalls))
        run.record.cost += cost
        run.record.apiCalls += apiCalls
        let retryable = !nonRetryable && !policy.nonRetryable.contains(errorKind)
        if retryable && t.attempt < policy.maxAttempts {
            var delay = policy.delayMS(beforeAttempt: t.attempt + 1)
            if policy.jitter { delay = Int64(Double(delay) * Double.random(in: 0.8...1.2)) }
            t.phase = .waitingRetry
            tasksRetried += 1
            metrics.tasksRetried.increment()
            logger.info("task attempt failed; retrying", metadata: ["run_id": "\(runID)", "task_id": "\(t.planned.id)",
                                                                     "node": "\(t.planned.node)", "attempt": "\(t.attempt)",
                                                                     "delay_ms": "\(delay)", "error": "\(message)"])
            publish(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: worker,
                    message: "attempt \(t.attempt) of \(policy.maxAttempts) failed: \(message); retrying in \(Durations.format(millis: delay))",
                    attempt: t.attempt)
            writer.enqueue(batch, durability: run.durability) { _ in ack?(true) }
            let taskID = t.planned.id
            let attempt = t.attempt
            Task {
                try? await Task.sleep(nanoseconds: UInt64(max(0, delay)) * 1_000_000)
                self.retryDue(runID: runID, taskID: taskID, attempt: attempt)
            }
            return
        }
        tasksFailed += 1
        metrics.tasksFailed.increment()
        let attempts = t.attempt == 1 ? "1 attempt" : "\(t.attempt) attempts"
        let reason = "node '\(t.planned.node)' failed after \(attempts): \(message)"
        batch.pendingWrites.append(PendingWriteRecord(runID: runID, checkpointID: run.checkpoint.checkpointID, taskID: t.planned.id,
                                                      idx: PendingWriteRecord.errorIdx, channel: "__error__",
                                                      value: .object(["node": .string(t.planned.node), "error": .string(message),
                                                                      "attempts": .int(Int64(t.attempt))])))
        publish(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: worker, message: message, attempt: t.attempt)
        finishRun(run, status: .failed, error: reason, extra: batch) { ack?(true) }
    }

    func retryDue(runID: String, taskID: String, attempt: Int) {
        guard let run = runs[runID], let t = run.tasks[taskID], t.phase == .waitingRetry, t.attempt == attempt else { return }
        run.enqueue(t)
        activate(runID)
        pump()
    }

    /// Every task of the step is in: apply the writes in task order, plan the next step, and
    /// queue the checkpoint (with the run's new status) as one transaction. The next step is
    /// handed out at once (pipelined); the checkpoint event, the acks and a run's end are sent
    /// once the checkpoint is durable. The writer commits in order, so a later step's writes
    /// can never be durable before this checkpoint.
    func completeStep(_ run: ActiveRun, acks: [(Bool) -> Void] = []) {
        let runID = run.record.runID
        let outcomes = run.order.compactMap { run.tasks[$0]?.outcome }
        let step = run.checkpoint.step + 1
        var state = run.state
        var updated = Set<String>()
        var appended: [String: [JSONValue]] = [:]
        let newID = Identifiers.sortable()
        var joins = run.joins
        let next: [PlannedTask]
        do {
            for o in outcomes {
                updated.formUnion(try run.planner.apply(o.writes, to: &state))
                for w in o.writes where run.graph.channels[w.channel]?.reducer == .append {
                    if case .array(let items) = w.value { appended[w.channel, default: []] += items } else { appended[w.channel, default: []].append(w.value) }
                }
            }
            next = try run.planner.next(after: outcomes, state: state, joins: &joins, checkpointID: newID, step: step + 1)
        } catch {
            finishRun(run, status: .failed, error: "step \(step): \(error)", extra: run.carry) { acks.forEach { $0(true) } }
            run.carry = StoreBatch()
            return
        }

        var versions = run.checkpoint.channelVersions
        var batch = StoreBatch()
        for ch in updated.sorted() {
            let base = versions[ch]
            if let base, let delta = appended[ch], (run.appendDepth[ch] ?? Int.max) < config.appendSnapshotEvery {
                batch.channelValues.append(ChannelValueRecord(runID: runID, channel: ch, version: newID, baseVersion: base, value: .array(delta)))
                run.appendDepth[ch, default: 0] += 1
            } else {
                batch.channelValues.append(ChannelValueRecord(runID: runID, channel: ch, version: newID, baseVersion: nil, value: state[ch] ?? .null))
                run.appendDepth[ch] = 0
            }
            versions[ch] = newID
        }

        let handlerInterrupt = outcomes.first(where: { $0.interrupt != nil })
        let pauseAfter = outcomes.first(where: { run.graph.interruptAfter.contains($0.node) })?.node
        let pauseBefore = next.first(where: { run.graph.interruptBefore.contains($0.node) })?.node
        var status = RunStatus.running
        var error: String?
        var interrupt: JSONValue?
        if let h = handlerInterrupt {
            status = .paused
            interrupt = .object(["reason": "node", "node": .string(h.node), "value": h.interrupt ?? .null])
        } else if next.isEmpty {
            status = .completed
        } else if step >= run.graph.limits.maxSteps {
            status = .failed
            error = "stopped after \(step) steps: the step limit (limits.max_steps = \(run.graph.limits.maxSteps)) was reached with \(Set(next.map(\.node)).sorted().joined(separator: ", ")) still to run"
        } else if let n = pauseAfter {
            status = .paused
            interrupt = .object(["reason": "interrupt_after", "node": .string(n)])
        } else if let n = pauseBefore {
            status = .paused
            interrupt = .object(["reason": "interrupt_before", "node": .string(n)])
        }

        batch.merge(run.carry)
        // Which channels a checkpoint updated is not stored: they are the ones whose version is it.
        var metadata: [String: JSONValue] = [:]
        if !joins.isEmpty { metadata["joins"] = .object(joins.mapValues { .array($0.map { .string($0) }) }) }
        if let interrupt { metadata["interrupt"] = interrupt }
        let cp = CheckpointRecord(runID: runID, checkpointID: newID, parentID: run.checkpoint.checkpointID, step: step,
                                  source: "loop", channelVersions: versions, nextTasks: .array(next.map(\.json)),
                                  metadata: .object(metadata), createdAt: now)
        batch.checkpoints.append(cp)
        // The step's writes now live in the new checkpoint's channel values.
        batch.prunedWrites.append(CheckpointKey(runID: runID, checkpointID: run.checkpoint.checkpointID))
        var record = run.record
        record.step = step
        record.checkpointID = newID
        record.status = status
        record.error = error
        record.interrupt = interrupt
        record.updatedAt = now
        if status == .completed { record.output = .object(state) }
        if status.isFinished { record.finishedAt = now }
        batch.runs.append(record)

        metrics.checkpointWrites.increment()
        run.carry = StoreBatch()
        run.record = record
        run.checkpoint = cp
        run.state = state
        run.joins = joins
        run.beginStep(planned: status == .running ? next : [], done: [:])
        let newStatus = status, reason = error
        var nextNodes: [String] = []
        if status == .running || status == .paused {
            var seen = Set<String>()
            for t in next where seen.insert(t.node).inserted { nextNodes.append(t.node) }
        }
        writer.enqueue(batch, durability: run.durability) { _ in
            acks.forEach { $0(true) }
            guard self.runs[runID] === run else { return }
            run.durable = record
            self.publish(run, kind: "checkpoint", message: "step \(step) recorded", step: step, next: nextNodes, includeRun: true)
            if newStatus != .running {
                self.close(run, final: newStatus == .paused ? "paused" : "finished", message: reason ?? newStatus.rawValue)
                self.logger.info("run \(newStatus.rawValue)", metadata: ["run_id": "\(runID)", "steps": "\(step)", "error": "\(reason ?? "")"])
            }
        }
        if status == .running { activate(runID) }
    }

    /// Ends a run that failed or was cancelled outside step completion. It stops at once (no
    /// more tasks handed out); watchers hear of the end, and `done` runs, once it is durable.
    func finishRun(_ run: ActiveRun, status: RunStatus, error: String?, extra: StoreBatch, done: (() -> Void)? = nil) {
        let runID = run.record.runID
        guard runs[runID] === run, !run.record.status.isFinished else { done?(); return }
        for t in run.tasks.values {
            if let lease = t.lease { leaseTable.revoke(lease) }
            t.lease = nil
            if t.phase != .done { t.phase = .done }
        }
        run.record.status = status
        run.record.error = error
        run.record.updatedAt = now
        run.record.finishedAt = now
        let record = run.record
        var batch = extra
        batch.runs.append(record)
        writer.enqueue(batch) { _ in
            if self.runs[runID] === run {
                run.durable = record
                self.close(run, final: "finished", message: error ?? status.rawValue)
                self.logger.info("run \(status.rawValue)", metadata: ["run_id": "\(runID)", "error": "\(error ?? "")"])
            }
            done?()
        }
    }

    /// Drops an ended or paused run from memory and tells its watchers.
    func close(_ run: ActiveRun, final kind: String, message: String) {
        let runID = run.record.runID
        runs[runID] = nil
        rotation.removeAll { $0 == runID }
        publish(run, kind: kind, message: message, includeRun: true, final: true)
        if let subs = subscribers.removeValue(forKey: runID) { subs.values.forEach { $0.finish() } }
        if let subs = finalWatchers.removeValue(forKey: runID) { subs.values.forEach { $0.finish() } }
    }
}
