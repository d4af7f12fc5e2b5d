import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import CoreMetrics
import Foundation
import Logging
import NIOCore

/// The scheduler's driver: one actor whose executor is the server's event loop, so there is one
/// order of events and a worker's result is handled where its bytes arrive (no thread hop).
///
/// Every decision is the `Scheduler`'s (a pure state machine): the engine turns what happens —
/// a worker joins, a result arrives, a write commits, time passes — into events, and carries
/// out the actions that come back: frames to workers, batches to the `StoreWriter` (which
/// commits in order, group commit), events to watchers, replies to clients, metrics and logs.
///
/// It reads nothing from the store and decides no request: the run commands (`RunCommands`,
/// `TimeTravel`, `DataLife`) read, decide through pure functions, and hand it what to hold
/// (`Engine+Commands`). It keeps the claims on run ids (`RunClaims`) beside the runs it holds,
/// so "is this id free" has one answer.
actor Engine {
    nonisolated let loop: any EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }
    let store: any CheckpointStore & MaintainedStore
    let writer: StoreWriter
    let logger: Logger
    let epoch: UInt64
    let config: CoordinatorConfig
    let hotTier: (any HotTierStatus)?

    var scheduler: Scheduler
    /// Open worker connections, by worker id. A worker presumed lost stays here until its
    /// connection closes, so its late results can still be answered "not accepted".
    var connections: [String: WorkerConnection] = [:]
    /// Every watcher of run events: the TCP watch and the HTTP streams alike.
    let hub: EventHub
    var replies: [Scheduler.ReplyID: CheckedContinuation<Void, Never>] = [:]
    /// Replies answered with an error instead (`replyFailed`), until their `ask` reads them.
    var failedReplies: [Scheduler.ReplyID: String] = [:]
    /// Replies let go of while the store refuses writes, with the store's error.
    var unconfirmedReplies: [Scheduler.ReplyID: String] = [:]
    var nextReply: Scheduler.ReplyID = 0
    /// Events raised while actions are carried out wait here, so each is handled whole, in order.
    var inbox: [Scheduler.Event] = []
    var handling = false
    let startedAt = Date()
    /// Run ids a request is submitting or changing right now.
    var claims = RunClaims()
    /// Told of every paused run the scheduler reports, to arm its question's deadline (`TimeTravel`).
    var onPaused: (@Sendable (RunRecord) -> Void)?
    var walBytes: @Sendable () -> Int64 = { 0 }
    let metrics: CoordinatorMetrics
    var reported = Scheduler.Counters()

    init(store: any CheckpointStore & MaintainedStore, hotTier: (any HotTierStatus)?, loop: any EventLoop, config: CoordinatorConfig, logger: Logger) {
        self.loop = loop
        self.store = store
        self.hotTier = hotTier
        self.config = config
        self.logger = logger
        self.writer = StoreWriter(store: store, loop: loop, logger: logger)
        self.epoch = config.epoch ?? UInt64(Date().timeIntervalSince1970 * 1000)
        self.scheduler = Scheduler(config: config, epoch: epoch)
        let metrics = CoordinatorMetrics(factory: config.metricsFactory)
        self.metrics = metrics
        self.hub = EventHub { [logger] id in
            metrics.watchersDropped.increment()
            logger.warning("a watcher fell \(EventHub.buffer) events behind and was dropped", metadata: ["watcher": "\(id)"])
        }
    }

    var now: Double { Date().timeIntervalSince1970 }

    func setWALProbe(_ probe: @escaping @Sendable () -> Int64) { walBytes = probe }

    func setPausedHandler(_ handler: @escaping @Sendable (RunRecord) -> Void) { onPaused = handler }

    /// A failing write holds new work until a write commits again.
    func start() {
        writer.onFailure = { [unowned self] why, permanent in self.assumeIsolated { $0.handle(.writeFailed(why, permanent: permanent)) } }
    }

    /// Why the store cannot be written right now (commits are being retried); nil when it can.
    var storeWriteFailure: String? { writer.failure }
    /// True once the store has failed in a way no retry heals: it takes no more writes.
    var storeDamaged: Bool { writer.stopped != nil }

    // MARK: - events in, actions out

    /// Hands an event to the scheduler and carries out what it decides.
    func handle(_ event: Scheduler.Event) {
        inbox.append(event)
        guard !handling else { return }
        handling = true
        defer { handling = false }
        while !inbox.isEmpty {
            let e = inbox.removeFirst()
            perform(scheduler.handle(e, now: now))
        }
        syncMetrics()
    }

    /// Hands an event to the scheduler and waits for the reply it names; throws when what it
    /// waited for will never happen (the store is damaged: nothing was done), and `Unconfirmed`
    /// when its write has waited `unconfirmedAfter` while the store refuses writes (it is queued
    /// and takes effect once the store heals: the caller says so, and how to find out).
    func ask(_ event: (Scheduler.ReplyID) -> Scheduler.Event) async throws {
        nextReply += 1
        let id = nextReply
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            replies[id] = c
            handle(event(id))
            watchReply(id)
        }
        if let why = failedReplies.removeValue(forKey: id) { throw EngineError(.errorUnavailable, why) }
        if let why = unconfirmedReplies.removeValue(forKey: id) { throw Unconfirmed(storeError: why) }
    }

    /// `ask`, with an unconfirmed write reported as "WHAT, but not yet recorded …".
    func ask(_ event: (Scheduler.ReplyID) -> Scheduler.Event, unconfirmed what: String, runID: String) async throws {
        do { try await ask(event) } catch let u as Unconfirmed { throw u.answer(what, check: runID) }
    }

    /// Every `unconfirmedAfter`, while a reply is still awaited: if the store is refusing writes,
    /// the waiter is let go (the reply, when it comes, finds no one).
    private func watchReply(_ id: Scheduler.ReplyID) {
        let bound = NIOLoopBound(self, eventLoop: loop)
        loop.scheduleTask(in: .milliseconds(Int64(config.unconfirmedAfter * 1000))) {
            bound.value.assumeIsolated { engine in
                guard engine.replies[id] != nil else { return }
                if let failure = engine.writer.failure {
                    engine.unconfirmedReplies[id] = failure
                    engine.replies.removeValue(forKey: id)?.resume()
                } else {
                    engine.watchReply(id)
                }
            }
        }
    }

    private func perform(_ actions: [Scheduler.Action]) {
        for action in actions {
            switch action {
            case .dispatch(let workerID, let a):
                connections[workerID]?.send(.taskAssignment(Cairn_V1_TaskAssignment(a)))
            case .write(let id, let batch, let durability):
                writer.enqueue(batch, durability: durability) { [unowned self] result in
                    switch result {
                    case .success: self.assumeIsolated { $0.handle(.writeCommitted(id)) }
                    case .failure: self.assumeIsolated { $0.handle(.writeAbandoned(id)) }
                    }
                }
            case .ack(let workerID, let taskID, let accepted):
                var a = Cairn_V1_ResultAck()
                a.taskID = taskID
                a.accepted = accepted
                connections[workerID]?.send(.resultAck(a))
            case .notify(let note):
                publish(note)
            case .paused(let record):
                onPaused?(record)
            case .closed(let runID):
                hub.runClosed(runID)
                scheduler.watched.remove(runID)
            case .reply(let id):
                replies.removeValue(forKey: id)?.resume()
            case .replyFailed(let id, let why):
                guard let c = replies.removeValue(forKey: id) else { break }  // its waiter was let go
                failedReplies[id] = why
                c.resume()
            case .wake(let at):
                let bound = NIOLoopBound(self, eventLoop: loop)
                loop.scheduleTask(in: .milliseconds(Int64(max(0, (at - now) * 1000).rounded(.up)))) {
                    bound.value.assumeIsolated { $0.handle(.tick) }
                }
            case .taskLatency(let seconds):
                metrics.taskLatency.recordNanoseconds(Int64(seconds * 1e9))
            case .log(let level, let message, let metadata):
                logger.log(level: level, "\(message)", metadata: metadata)
            }
        }
    }

    /// Counters become metrics by their growth since the last event.
    private func syncMetrics() {
        let c = scheduler.counters
        guard c != reported else { return }
        func add(_ counter: Counter, _ now: UInt64, _ before: UInt64) { if now > before { counter.increment(by: Int64(now - before)) } }
        add(metrics.tasksDispatched, c.dispatched, reported.dispatched)
        add(metrics.tasksCompleted, c.completed, reported.completed)
        add(metrics.tasksFailed, c.failed, reported.failed)
        add(metrics.tasksRetried, c.retried, reported.retried)
        add(metrics.tasksReassigned, c.reassigned, reported.reassigned)
        add(metrics.staleResults, c.stale, reported.stale)
        add(metrics.leasesExpired, c.leasesExpired, reported.leasesExpired)
        add(metrics.checkpointWrites, c.checkpoints, reported.checkpoints)
        reported = c
    }

    /// Stops handing out work and waits until every write queued so far has committed, or
    /// `timeout` passes (a store that refuses writes). Returns the rows still not written: their
    /// steps were never acknowledged and run again at the next start.
    func shutdown(timeout: TimeAmount) async -> Int {
        handle(.stop)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let once = NIOLoopBound(ResumeOnce(c), eventLoop: loop)
            writer.whenIdle { once.value.resume() }
            loop.scheduleTask(in: timeout) { once.value.resume() }
        }
        return writer.rowsQueued
    }

    // MARK: - workers

    /// Registers a worker on `channel` (on this event loop — the coordinator serves every
    /// connection from the one loop that is the engine's executor): welcomes it, arms the
    /// channel's tap so its results are handled right here, and hands it work.
    func register(hello: Cairn_V1_WorkerInfo, address: String, channel: any Channel, welcome: (String) -> WireMessage) -> String {
        let id = "w-" + Identifiers.random(8)
        var kinds = Set(hello.kinds)
        if kinds.isEmpty { kinds = Set(NodeKinds.builtin.keys) }
        let connection = WorkerConnection(channel: channel, logger: logger)
        connections[id] = connection
        connection.send(welcome(id))
        // Every connection's pipeline has a tap (FramedChannel.configure): without one, results still arrive through the session.
        if let tap = try? channel.pipeline.syncOperations.handler(type: MessageTap.self) {
            tap.handler = { [unowned self] message, _ in
                guard case .taskResult(let r) = message else { return false }
                let report = TaskReport(wire: r)
                self.assumeIsolated { $0.handle(.result(workerID: id, report)) }
                return true
            }
        }
        handle(.workerJoined(.init(id: id, name: hello.name.isEmpty ? id : hello.name, slots: Int(max(1, min(hello.slots, 1024))),
                                   kinds: kinds, address: address, stateCacheBytes: Int(min(hello.stateCacheBytes, 1 << 40)))))
        return id
    }

    /// The worker's connection ended: it is lost (if it was not already presumed so).
    func disconnected(_ workerID: String, reason: String) {
        handle(.workerLost(workerID: workerID, reason: reason))
        connections[workerID] = nil
    }

    /// Records a heartbeat; false when the worker is no longer registered (it was presumed lost).
    func heartbeat(_ workerID: String, _ hb: Cairn_V1_Heartbeat) -> Bool {
        guard scheduler.isRegistered(workerID) else { return false }
        handle(.heartbeat(workerID: workerID, tasks: hb.tasks.map { ($0.lease, [UInt8]($0.progressJson)) }))
        return true
    }

    func drain(_ workerID: String) { handle(.workerDraining(workerID: workerID)) }

    /// Periodic: presumes silent workers lost and fails attempts past their deadline.
    func sweep() { handle(.tick) }
}
