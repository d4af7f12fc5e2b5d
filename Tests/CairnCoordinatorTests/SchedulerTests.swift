@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation
import Testing

/// The scheduler with a test clock: events in, actions out; no ports, no sleeping. Writes
/// "commit" when the test says so, which is how the README's guarantees are checked here.
struct Harness {
    var scheduler: Scheduler
    var now: Double = 1_000
    /// Writes emitted and not yet committed, oldest first.
    var uncommitted: [(id: Scheduler.WriteID, batch: StoreBatch)] = []
    /// Every action so far, in order.
    var log: [Scheduler.Action] = []
    var nextCheckpoint = 0

    init(poisonAfter: Int = 3, heartbeatTimeout: Double = 10, jitter: @escaping () -> Double = { 1 }) {
        var config = CoordinatorConfig()
        config.poisonAfter = poisonAfter
        config.heartbeatTimeout = heartbeatTimeout
        config.timeoutGrace = 5
        var counter = 0
        scheduler = Scheduler(config: config, epoch: 7, jitter: jitter, newCheckpointID: { _ in
            counter += 1
            return String(format: "cp%06d", counter)
        })
    }

    /// Sends an event; returns its actions (and keeps their writes as uncommitted).
    @discardableResult
    mutating func send(_ e: Scheduler.Event) -> [Scheduler.Action] {
        let actions = scheduler.handle(e, now: now)
        log += actions
        for a in actions { if case .write(let id, let b, _) = a { uncommitted.append((id, b)) } }
        return actions
    }

    /// Commits the oldest write (as the writer does, in order); returns what that released.
    @discardableResult
    mutating func commitOne() -> [Scheduler.Action] {
        let w = uncommitted.removeFirst()
        return send(.writeCommitted(w.id))
    }

    @discardableResult
    mutating func commitAll() -> [Scheduler.Action] {
        var out: [Scheduler.Action] = []
        while !uncommitted.isEmpty { out += commitOne() }
        return out
    }

    mutating func join(_ id: String, slots: Int = 4, stateCache: Int = 0) {
        send(.workerJoined(.init(id: id, name: id, slots: slots, kinds: Set(NodeKinds.builtin.keys), address: "test",
                                 stateCacheBytes: stateCache)))
    }

    /// Submits a run of `yaml` and commits its first rows, so it starts.
    mutating func submit(_ yaml: String, runID: String = "r1", watched: Bool = true) throws {
        let graph = try GraphParser.parse(file: "g.yaml", text: yaml)
        let planner = Planner(graph: graph)
        let state = graph.initialState
        let first = try planner.firstTasks(checkpointID: "cp-input", step: 1, state: state)
        var record = RunRecord(runID: runID, graphHash: "g", graphName: graph.name, graphVersion: 1, status: .queued,
                               durability: "sync", input: .object([:]), createdAt: now)
        record.checkpointID = "cp-input"
        let cp = CheckpointRecord(runID: runID, checkpointID: "cp-input", parentID: nil, step: 0, source: "input",
                                  channelVersions: [:], nextTasks: .array(first.map(\.json)), metadata: .object([:]), createdAt: now)
        let run = ActiveRun(record: record, graph: graph, bundleHash: nil, checkpoint: cp, state: state, joins: [:])
        run.beginStep(planned: first, done: [:], at: now)
        var batch = StoreBatch()
        batch.checkpoints.append(cp)
        batch.runs.append(record)
        if watched { scheduler.watched.insert(runID) }
        send(.runSubmitted(run, batch, reply: 1))
        commitAll()
    }

    /// The assignments in `actions`, by worker, as the engine puts them on the wire.
    static func dispatches(_ actions: [Scheduler.Action]) -> [(worker: String, task: Cairn_V1_TaskAssignment)] {
        actions.compactMap { if case .dispatch(let w, let a) = $0 { return (w, Cairn_V1_TaskAssignment(a)) } else { return nil } }
    }

    static func acks(_ actions: [Scheduler.Action]) -> [(worker: String, task: String, accepted: Bool)] {
        actions.compactMap { if case .ack(let w, let t, let ok) = $0 { return (w, t, ok) } else { return nil } }
    }

    static func notes(_ actions: [Scheduler.Action]) -> [Scheduler.RunNote] {
        actions.compactMap { if case .notify(let n) = $0 { return n } else { return nil } }
    }

    static func closed(_ actions: [Scheduler.Action]) -> [String] {
        actions.compactMap { if case .closed(let r) = $0 { return r } else { return nil } }
    }

    /// A successful result for an assignment.
    static func ok(_ a: Cairn_V1_TaskAssignment, writes: String = "{}") -> Cairn_V1_TaskResult {
        var r = Cairn_V1_TaskResult()
        r.taskID = a.taskID
        r.lease = a.lease
        r.writesJson = Data(writes.utf8)
        return r
    }

    static func failed(_ a: Cairn_V1_TaskAssignment, _ message: String, kind: String = "error") -> Cairn_V1_TaskResult {
        var r = Cairn_V1_TaskResult()
        r.taskID = a.taskID
        r.lease = a.lease
        r.error = message
        r.errorKind = kind
        return r
    }

    /// The run's record in the last write that carried one.
    func lastRunRecord(_ runID: String = "r1") -> RunRecord? {
        for a in log.reversed() {
            if case .write(_, let b, _) = a, let r = b.runs.last(where: { $0.runID == runID }) { return r }
        }
        return nil
    }
}

extension Scheduler.Event {
    /// A result as a worker sends it, read as the engine reads it (`TaskReport(wire:)`).
    static func result(workerID: String, _ r: Cairn_V1_TaskResult) -> Scheduler.Event {
        .result(workerID: workerID, TaskReport(wire: r))
    }
}

let oneNode = """
    name: one
    state:
      log: { reducer: append }
    nodes:
      a: { run: echo, writes: { log: a } }
    edges:
      - { from: START, to: a }
      - { from: a, to: END }
    """

let fanOut = """
    name: fan
    state:
      log: { reducer: append }
    nodes:
      a: { run: echo, writes: { log: a } }
      b: { run: echo, writes: { log: b } }
      c: { run: echo, writes: { log: c } }
    edges:
      - { from: START, to: a }
      - { from: START, to: b }
      - { from: START, to: c }
      - { from: a, to: END }
      - { from: b, to: END }
      - { from: c, to: END }
    """

@Suite struct SchedulerTests {
    @Test func aRunIsQueuedUntilAWorkerHasItsFirstTaskThenRunningInMemoryAndInTheStore() throws {
        var h = Harness()
        try h.submit(fanOut)
        #expect(h.scheduler.runs["r1"]?.record.status == .queued && h.lastRunRecord()?.status == .queued)
        #expect(h.scheduler.queueDepth == 3)
        h.now += 60  // an hour of no worker changes nothing
        h.send(.tick)
        #expect(h.scheduler.runs["r1"]?.record.status == .queued)

        h.join("w1", slots: 1)
        let first = Harness.dispatches(h.log)
        #expect(first.count == 1)
        // The run is running from its first dispatch, and a write says so before the result comes.
        #expect(h.scheduler.runs["r1"]?.record.status == .running)
        let rowWrites = h.uncommitted.filter { !$0.batch.runs.isEmpty }
        #expect(rowWrites.count == 1 && rowWrites[0].batch.runs[0].status == .running)
        // Queries and watchers are told once that row is durable: a `running` event.
        #expect(h.scheduler.runs["r1"]?.summary.record.status == .queued)
        let told = h.commitAll()
        #expect(h.scheduler.runs["r1"]?.summary.record.status == .running)
        #expect(Harness.notes(told).map(\.kind) == ["running"] && Harness.notes(told)[0].summary.record.status == .running)
        // Only once: later dispatches of the same run write no run row.
        h.send(.result(workerID: "w1", Harness.ok(first[0].task)))
        h.join("w2")
        #expect(Harness.dispatches(h.log).count == 3 && h.uncommitted.allSatisfy { $0.batch.runs.isEmpty })
    }

    @Test func aRunIsReportedFinishedOnlyOnceItsLastStepIsDurable() throws {
        var h = Harness()
        h.join("w1")
        try h.submit(oneNode)
        let a = try #require(Harness.dispatches(h.log).first)
        #expect(a.worker == "w1" && a.task.node == "a" && a.task.lease == "7.1")
        let afterResult = h.send(.result(workerID: "w1", Harness.ok(a.task, writes: #"{"log": "a"}"#)))
        // The step's checkpoint (status completed) is written, but nothing is told yet.
        #expect(h.lastRunRecord()?.status == .completed)
        #expect(h.lastRunRecord()?.output == .object(["log": .array(["a"])]))
        #expect(Harness.acks(afterResult).isEmpty)
        #expect(Harness.closed(afterResult).isEmpty)
        #expect(!Harness.notes(afterResult).contains { $0.final })
        #expect(h.scheduler.runs["r1"] != nil)
        let released = h.commitAll()
        #expect(Harness.acks(released).map(\.accepted) == [true])
        #expect(Harness.closed(released) == ["r1"])
        let final = try #require(Harness.notes(released).last)
        #expect(final.final && final.kind == "finished" && final.summary.record.status == .completed)
        #expect(h.scheduler.runs["r1"] == nil)
    }

    @Test func aResultUnderAStaleLeaseIsRefusedAndTheCurrentOneAccepted() throws {
        var h = Harness()
        h.join("frozen", slots: 1)
        try h.submit(oneNode)
        let first = try #require(Harness.dispatches(h.log).first?.task)
        // The worker goes silent past the heartbeat timeout: presumed lost, its lease fenced.
        h.join("alive", slots: 1)
        h.now += 11
        h.send(.heartbeat(workerID: "alive", tasks: []))
        let swept = h.send(.tick)
        let again = try #require(Harness.dispatches(swept).first)
        #expect(again.worker == "alive" && again.task.taskID == first.taskID)
        #expect(again.task.lease != first.lease && again.task.attempt == 2)
        #expect(h.scheduler.counters.leasesFenced == 1 && h.scheduler.counters.reassigned == 1)
        // It wakes and sends its result: refused at once, and nothing is written for it.
        let late = h.send(.result(workerID: "frozen", Harness.ok(first, writes: #"{"log": "late"}"#)))
        #expect(Harness.acks(late).map(\.accepted) == [false])
        #expect(!late.contains { if case .write = $0 { return true } else { return false } })
        #expect(h.scheduler.counters.stale == 1)
        // The same lease from another worker, or a lease from another epoch, is refused too.
        #expect(Harness.acks(h.send(.result(workerID: "frozen", Harness.ok(again.task)))).map(\.accepted) == [false])
        var foreign = Harness.ok(again.task); foreign.lease = "6.1"
        #expect(Harness.acks(h.send(.result(workerID: "alive", foreign))).map(\.accepted) == [false])
        h.send(.result(workerID: "alive", Harness.ok(again.task, writes: #"{"log": "a"}"#)))
        h.commitAll()
        #expect(h.lastRunRecord()?.output == .object(["log": .array(["a"])]), "the late write was not applied")
    }

    @Test func finishedTasksOfAStepAreNotRunAgainWhenAWorkerDies() throws {
        var h = Harness()
        h.join("w1", slots: 2)
        h.join("w2", slots: 2)
        try h.submit(fanOut)
        let tasks = Harness.dispatches(h.log)
        #expect(tasks.count == 3)
        // Two tasks finish on their workers; the third's worker dies before it reports.
        let dying = try #require(tasks.first { t in tasks.filter { $0.worker == t.worker }.count == 1 })
        for t in tasks where t.task.taskID != dying.task.taskID {
            h.send(.result(workerID: t.worker, Harness.ok(t.task, writes: #"{"log": "\#(t.task.node)"}"#)))
        }
        let lost = h.send(.workerLost(workerID: dying.worker, reason: "kill -9"))
        let redone = Harness.dispatches(lost)
        #expect(redone.map(\.task.taskID) == [dying.task.taskID], "only the unfinished task is handed out again")
        h.send(.result(workerID: redone[0].worker, Harness.ok(redone[0].task, writes: #"{"log": "\#(dying.task.node)"}"#)))
        h.commitAll()
        let log = try #require(h.lastRunRecord()?.output?["log"]?.arrayValue)
        #expect(log.count == 3 && Set(log) == ["a", "b", "c"], "each write applied once: \(log)")
        #expect(h.scheduler.counters.completed == 3 && h.scheduler.counters.dispatched == 4)
    }

    @Test func aRecoveredStepRunsOnlyTheTasksWhoseWritesWereNotStored() throws {
        var h = Harness()
        h.join("w1")
        let graph = try GraphParser.parse(file: "g.yaml", text: fanOut)
        let planned = try Planner(graph: graph).firstTasks(checkpointID: "cp-input", step: 1, state: graph.initialState)
        let cp = CheckpointRecord(runID: "r1", checkpointID: "cp-input", parentID: nil, step: 0, source: "input",
                                  channelVersions: [:], nextTasks: .array(planned.map(\.json)), metadata: .object([:]), createdAt: 0)
        let run = ActiveRun(record: RunRecord(runID: "r1", graphHash: "g", graphName: "fan", graphVersion: 1, status: .running,
                                              durability: "sync", input: nil, createdAt: 0),
                            graph: graph, bundleHash: nil, checkpoint: cp, state: graph.initialState, joins: [:])
        let doneTask = planned[0]
        let actions = h.send(.runRecovered(run, done: [doneTask.id: TaskOutcome(taskID: doneTask.id, node: doneTask.node,
                                                                                 writes: [("log", .string(doneTask.node))])]))
        let handed = Harness.dispatches(actions)
        #expect(Set(handed.map(\.task.taskID)) == Set(planned.dropFirst().map(\.id)))
        for t in handed { h.send(.result(workerID: t.worker, Harness.ok(t.task, writes: #"{"log": "\#(t.task.node)"}"#))) }
        h.commitAll()
        #expect(Set(h.lastRunRecord()?.output?["log"]?.arrayValue ?? []) == ["a", "b", "c"])
    }

    @Test func aTaskWhoseWorkersKeepDyingIsPoisonous() throws {
        var h = Harness(poisonAfter: 3)
        try h.submit(oneNode)
        for i in 1...3 {
            h.join("w\(i)", slots: 1)
            let a = try #require(Harness.dispatches(h.log).last)
            #expect(a.worker == "w\(i)" && a.task.attempt == UInt32(i))
            h.send(.workerLost(workerID: "w\(i)", reason: "segfault"))
        }
        #expect(h.scheduler.counters.poisoned == 1)
        #expect(h.lastRunRecord()?.status == .failed)
        #expect(h.lastRunRecord()?.error?.contains("poisonous") == true)
        h.join("w4", slots: 1)
        #expect(Harness.dispatches(h.log).count == 3, "never handed out again")
        let released = h.commitAll()
        #expect(Harness.closed(released) == ["r1"])
    }

    @Test func retriesWaitTheirBackoffWithJitterInBounds() throws {
        let flaky = """
            name: flaky
            state:
              log: { reducer: append }
            nodes:
              a: { run: flaky, failures: 5, writes: { log: a }, retry: { max_attempts: 5, initial_interval: 2s, backoff: 2, max_interval: 60s, jitter: true } }
            edges:
              - { from: START, to: a }
              - { from: a, to: END }
            """
        for factor in [0.8, 1.2] {
            var h = Harness(jitter: { factor })
            h.join("w1")
            try h.submit(flaky)
            var expected = 2.0
            for attempt in 1...3 {
                let a = try #require(Harness.dispatches(h.log).last)
                #expect(a.task.attempt == UInt32(attempt))
                let failed = h.send(.result(workerID: "w1", Harness.failed(a.task, "boom")))
                let wake = failed.compactMap { if case .wake(let at) = $0 { return at } else { return nil } }
                #expect(wake.count == 1)
                let delay = (wake.first ?? 0) - h.now
                #expect(abs(delay - expected * factor) < 1e-9, "attempt \(attempt): waits \(delay)s, not \(expected) × \(factor)")
                // Not a moment before it is due.
                let due = try #require(wake.first)
                h.now = due - 0.001
                #expect(Harness.dispatches(h.send(.tick)).isEmpty)
                h.now = due
                h.send(.heartbeat(workerID: "w1", tasks: []))  // the worker is alive all along
                #expect(Harness.dispatches(h.send(.tick)).count == 1)
                expected *= 2
            }
        }
        // The default jitter stays within 0.8–1.2 of the backoff.
        var h = Harness(jitter: { Double.random(in: 0.8...1.2) })
        h.join("w1")
        try h.submit(flaky)
        let a = try #require(Harness.dispatches(h.log).last)
        let wake = h.send(.result(workerID: "w1", Harness.failed(a.task, "boom"))).compactMap { if case .wake(let at) = $0 { return at } else { return nil } }
        let delay = try #require(wake.first) - h.now
        #expect(delay >= 1.6 && delay <= 2.4)
    }

    @Test func aNonRetryableErrorFailsTheRunOnceItIsDurable() throws {
        var h = Harness()
        h.join("w1")
        try h.submit(oneNode)
        let a = try #require(Harness.dispatches(h.log).first)
        var r = Harness.failed(a.task, "bad input", kind: "bad_input")
        r.nonRetryable = true
        let after = h.send(.result(workerID: "w1", r))
        #expect(h.lastRunRecord()?.status == .failed)
        #expect(h.lastRunRecord()?.error == "node 'a' failed after 1 attempt: bad input")
        #expect(Harness.closed(after).isEmpty)
        #expect(Harness.closed(h.commitAll()) == ["r1"])
        #expect(h.scheduler.counters.failed == 1 && h.scheduler.counters.retried == 0)
    }

    @Test func anAttemptPastItsDeadlineFailsAndItsLateResultIsStale() throws {
        let slow = """
            name: slow
            nodes:
              a: { run: sleep, duration: 1s, timeout: 10s, retry: { max_attempts: 2, initial_interval: 1s } }
            edges:
              - { from: START, to: a }
              - { from: a, to: END }
            """
        var h = Harness()
        h.join("w1")
        try h.submit(slow)
        let a = try #require(Harness.dispatches(h.log).first)
        h.now += 14.9  // the timeout (10 s) plus the grace (5 s) has not passed
        h.send(.heartbeat(workerID: "w1", tasks: [(a.task.lease, [])]))
        #expect(h.scheduler.task(holding: a.task.lease) != nil)
        h.send(.tick)
        #expect(h.scheduler.task(holding: a.task.lease) != nil)
        h.now += 0.2
        h.send(.heartbeat(workerID: "w1", tasks: [(a.task.lease, [])]))
        h.send(.tick)
        #expect(h.scheduler.task(holding: a.task.lease) == nil)
        #expect(h.scheduler.leaseEnd(a.task.lease) == .expired)
        #expect(h.scheduler.counters.leasesExpired == 1 && h.scheduler.counters.retried == 1)
        let late = h.send(.result(workerID: "w1", Harness.ok(a.task)))
        #expect(Harness.acks(late).map(\.accepted) == [false])
    }

    @Test func aFailingStoreHoldsDispatchUntilAWriteCommits() throws {
        var h = Harness()
        h.join("w1", slots: 1)
        try h.submit(fanOut)
        let first = try #require(Harness.dispatches(h.log).first)
        h.send(.writeFailed("database or disk is full"))
        #expect(h.scheduler.holding)
        // The result is taken (its writes queue behind the failing one), but no new work goes out.
        let held = h.send(.result(workerID: "w1", Harness.ok(first.task, writes: #"{"log": "x"}"#)))
        #expect(Harness.dispatches(held).isEmpty)
        h.join("w2", slots: 4)
        #expect(Harness.dispatches(h.log).count == 1)
        // The writer got it through: work resumes, every remaining task handed out.
        let resumed = h.commitOne()
        #expect(!h.scheduler.holding)
        #expect(Harness.dispatches(resumed).count == 2)
    }

    @Test func commandsThatWriteAreRefusedAtOnceWhileTheStoreRefusesWrites() throws {
        var h = Harness()
        h.join("w1")
        #expect(h.scheduler.refusal("submitted") == nil)
        h.send(.writeFailed("database or disk is full"))
        let why = try #require(h.scheduler.refusal("submitted"))
        #expect(why.contains("not submitted") && why.contains("database or disk is full") && why.contains("nothing was done"))
        _ = h.commitOne()
        #expect(h.scheduler.refusal("cancelled") == nil, "accepted again once a write commits")
    }

    @Test func aDamagedStoreAnswersWhatWaitedOnItsWritesWithAnErrorAndRefusesTheRest() throws {
        var h = Harness()
        h.join("w1")
        h.commitAll()
        // A submit whose first rows are queued: then the store turns out to be damaged.
        let graph = try GraphParser.parse(file: "g.yaml", text: oneNode)
        let record = RunRecord(runID: "r9", graphHash: "g", graphName: "one", graphVersion: 1, status: .running, durability: "sync",
                               input: .object([:]), createdAt: h.now)
        let cp = CheckpointRecord(runID: "r9", checkpointID: "c0", parentID: nil, step: 0, source: "input", channelVersions: [:],
                                  nextTasks: .array([]), metadata: .object([:]), createdAt: h.now)
        let run = ActiveRun(record: record, graph: graph, bundleHash: nil, checkpoint: cp, state: [:], joins: [:])
        var batch = StoreBatch(); batch.runs = [record]
        h.send(.runSubmitted(run, batch, reply: 42))
        let pending = try #require(h.uncommitted.last)
        h.send(.writeFailed("database disk image is malformed (SQLite code 11) writing /x.db", permanent: true))
        let answered = h.send(.writeAbandoned(pending.id))
        let failed = answered.compactMap { if case .replyFailed(let id, let why) = $0 { return (id, why) } else { return nil } }
        #expect(failed.map(\.0) == [42])
        #expect(failed.first?.1.contains("the store is damaged") == true && failed.first?.1.contains("nothing was done") == true)
        #expect(h.scheduler.runs["r9"] == nil, "the run never started")
        let why = try #require(h.scheduler.refusal("submitted"))
        #expect(why.contains("not submitted") && why.contains("integrity_check") && why.contains("move it aside"))
        #expect(h.scheduler.holding)
    }

    @Test func tooManyRowsWaitingHoldsDispatchToo() throws {
        var config = CoordinatorConfig()
        config.maxQueuedRows = 2
        var h = Harness()
        h.scheduler = Scheduler(config: config, epoch: 7, jitter: { 1 })
        h.join("w1", slots: 1)   // 1 row
        try h.submit(fanOut)     // committed
        let first = try #require(Harness.dispatches(h.log).first)
        let after = h.send(.result(workerID: "w1", Harness.ok(first.task, writes: #"{"log": "x"}"#)))  // 2 rows: pending write + attempt
        #expect(h.scheduler.queuedRows == 2 && !h.scheduler.holding)
        #expect(Harness.dispatches(after).count == 1)
        let second = Harness.dispatches(after)[0]
        h.send(.result(workerID: "w1", Harness.ok(second.task, writes: #"{"log": "y"}"#)))
        #expect(h.scheduler.holding)
        #expect(Harness.dispatches(h.log).count == 2, "held while 4 rows wait")
        h.commitAll()
        #expect(Harness.dispatches(h.log).count == 3)
    }

    @Test func readyTasksOfDifferentRunsAreTakenInTurn() throws {
        var h = Harness()
        try h.submit(fanOut, runID: "big")
        try h.submit(oneNode, runID: "small")
        h.join("w1", slots: 2)
        let order = Harness.dispatches(h.log).map(\.task.runID)
        #expect(order == ["big", "small"], "the small run is not starved by the fan-out: \(order)")
    }
}
