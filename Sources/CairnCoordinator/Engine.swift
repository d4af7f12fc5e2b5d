import CairnCore
import CairnGraph
import CairnProtocol
import CairnRedis
import CairnStore
import CoreMetrics
import Foundation
import Logging
import NIOCore

/// A worker as the dispatcher sees it: its slots, what it runs now, and its connection.
final class WorkerHandle {
    let id: String
    let name: String
    let slots: Int
    let kinds: Set<String>
    let address: String
    let channel: any Channel
    let connectedAt: Double
    var lastHeartbeat: Double
    var running: Set<String> = []   // leases
    var tasksDone = 0
    var draining = false
    private var flushScheduled = false
    private static let codec = WireCodec()

    init(id: String, name: String, slots: Int, kinds: Set<String>, address: String, channel: any Channel, now: Double) {
        self.id = id; self.name = name; self.slots = slots; self.kinds = kinds; self.address = address
        self.channel = channel; self.connectedAt = now; self.lastHeartbeat = now
    }

    var free: Int { draining ? 0 : max(0, slots - running.count) }

    func accepts(_ kind: String) -> Bool { kinds.contains(kind) || kinds.contains("*") }

    /// Writes a message to the worker (called on the engine's event loop, which is the channel's).
    /// Messages written in one turn of the loop go out with one flush.
    func send(_ message: WireMessage) {
        guard let frame = try? Self.codec.encode(message, allocator: channel.allocator) else { return }
        channel.write(frame, promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        channel.eventLoop.execute {
            bound.value.flushScheduled = false
            bound.value.channel.flush()
        }
    }
}

/// Resumes a continuation the first time it is asked (confined to the engine's loop).
final class ResumeOnce {
    private var continuation: CheckedContinuation<Void, Never>?
    init(_ c: CheckedContinuation<Void, Never>) { continuation = c }
    func resume() {
        continuation?.resume()
        continuation = nil
    }
}

/// A failure the coordinator reports to a client with an error code.
struct EngineError: Error, CustomStringConvertible {
    let code: Cairn_V1_ErrorCode
    let message: String
    init(_ code: Cairn_V1_ErrorCode, _ message: String) { self.code = code; self.message = message }
    var description: String { message }
}

/// The scheduler: owns every active run, the ready queues, the workers and their leases.
///
/// One actor whose executor is the server's event loop, so there is one order of events and a
/// worker's result is handled where its bytes arrive (no thread hop). All durable state goes
/// through the `StoreWriter`, which commits in order (group commit); the engine plans ahead at
/// once and acknowledges — a worker's result accepted, a checkpoint recorded, a run finished —
/// only when what it depends on is durable.
actor Engine {
    nonisolated let loop: any EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }
    let store: any CheckpointStore
    let writer: StoreWriter
    let logger: Logger
    let epoch: UInt64
    let config: CoordinatorConfig

    var runs: [String: ActiveRun] = [:]
    /// Runs with ready tasks, in round-robin order.
    var rotation: [String] = []
    var rotationIndex = 0
    var workers: [String: WorkerHandle] = [:]
    var leaseTable: LeaseTable
    var subscribers: [String: [UUID: AsyncStream<Cairn_V1_RunEvent>.Continuation]] = [:]
    /// Watchers that want only a run's final event (scripts waiting for the outcome).
    var finalWatchers: [String: [UUID: AsyncStream<Cairn_V1_RunEvent>.Continuation]] = [:]
    let startedAt = Date()
    /// Graphs parsed and validated, by the SHA-256 of their source.
    var graphCache: [String: Graph] = [:]
    /// Run ids being submitted right now (between the id check and the first write).
    var pendingSubmits = Set<String>()

    /// Node kinds that connected workers registered beyond the built-in ones (Swift handlers).
    var customKinds: Set<String> {
        var kinds = Set<String>()
        for w in workers.values { kinds.formUnion(w.kinds) }
        return kinds.subtracting(GraphParser.builtinKinds.keys)
    }

    // counters
    var tasksDispatched: UInt64 = 0
    var tasksCompleted: UInt64 = 0
    var tasksFailed: UInt64 = 0
    var tasksRetried: UInt64 = 0
    var tasksReassigned: UInt64 = 0
    var tasksPoisoned: UInt64 = 0
    var staleResults: UInt64 = 0

    /// The hot tier, when Redis is configured (for stats).
    var hotTier: HotTierStore? { store as? HotTierStore }
    var walBytes: @Sendable () -> Int64 = { 0 }
    let metrics: CoordinatorMetrics

    init(store: any CheckpointStore, loop: any EventLoop, config: CoordinatorConfig, logger: Logger) {
        self.loop = loop
        self.store = store
        self.config = config
        self.logger = logger
        self.writer = StoreWriter(store: store, loop: loop, logger: logger, holdRows: config.maxQueuedRows)
        self.epoch = UInt64(Date().timeIntervalSince1970 * 1000)
        self.leaseTable = LeaseTable(epoch: epoch)
        self.metrics = CoordinatorMetrics(factory: config.metricsFactory)
    }

    var now: Double { Date().timeIntervalSince1970 }

    func setWALProbe(_ probe: @escaping @Sendable () -> Int64) { walBytes = probe }

    /// Once the store accepts writes again (or its queue drained), work resumes.
    func start() {
        writer.onResume = { [unowned self] in self.pump() }
    }

    /// Set by `shutdown`: no new work is handed out.
    var stopping = false

    /// Stops handing out work and waits until every write queued so far has committed, or
    /// `timeout` passes (a store that refuses writes). Returns the rows still not written: their
    /// steps were never acknowledged and run again at the next start.
    func shutdown(timeout: TimeAmount) async -> Int {
        stopping = true
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let once = NIOLoopBound(ResumeOnce(c), eventLoop: loop)
            writer.whenIdle { once.value.resume() }
            loop.scheduleTask(in: timeout) { once.value.resume() }
        }
        return writer.rowsQueued
    }

    /// Why the store cannot be written right now (commits are being retried); nil when it can.
    var storeWriteFailure: String? { writer.failure }

    /// Writes a batch and waits until it is durable (for requests that answer only then).
    func write(_ batch: StoreBatch, durability: Durability = .sync) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            writer.enqueue(batch, durability: durability) { c.resume(with: $0) }
        }
    }

    // MARK: - workers

    /// Registers a worker on `channel` (on this event loop — the coordinator serves every
    /// connection from the one loop that is the engine's executor): welcomes it, arms the
    /// channel's tap so its results are handled right here, and hands it work.
    func register(hello: Cairn_V1_WorkerInfo, address: String, channel: any Channel, welcome: (String) -> WireMessage) -> String {
        let id = "w-" + Identifiers.random(8)
        let name = hello.name.isEmpty ? id : hello.name
        var kinds = Set(hello.kinds)
        if kinds.isEmpty { kinds = Set(GraphParser.builtinKinds.keys) }
        let w = WorkerHandle(id: id, name: name, slots: Int(max(1, min(hello.slots, 1024))), kinds: kinds,
                             address: address, channel: channel, now: now)
        workers[id] = w
        w.send(welcome(id))
        if let tap = try? channel.pipeline.syncOperations.handler(type: MessageTap.self) {
            tap.handler = { [unowned self] message, _ in
                guard case .taskResult(let r) = message else { return false }
                self.assumeIsolated { $0.result(from: id, r, channel: channel) }
                return true
            }
        }
        logger.info("worker joined", metadata: ["worker": "\(name)", "worker_id": "\(id)", "slots": "\(w.slots)", "address": "\(address)"])
        writer.enqueue(workerBatch(w, disconnected: nil))
        pump()
        return id
    }

    func workerBatch(_ w: WorkerHandle, disconnected: Double?) -> StoreBatch {
        var b = StoreBatch()
        b.workers.append(WorkerRecord(workerID: w.id, name: w.name, slots: w.slots, kinds: w.kinds.sorted(), address: w.address,
                                      connectedAt: w.connectedAt, lastSeen: w.lastHeartbeat, disconnectedAt: disconnected,
                                      tasksDone: w.tasksDone))
        return b
    }

    /// A worker's connection ended, or it went silent: its leases are fenced (a result it sends
    /// later is rejected) and its tasks go back to their runs' queues with their last progress.
    /// A task whose workers died `poisonAfter` times fails its run instead of being handed out forever.
    func workerLost(_ workerID: String, reason: String) {
        guard let w = workers.removeValue(forKey: workerID) else { return }
        var batch = workerBatch(w, disconnected: now)
        var handedBack = 0
        var poisoned: [(ActiveRun, TaskState)] = []
        for lease in leaseTable.fence(workerID: workerID) {
            guard let run = runs[lease.runID], let t = run.tasks[lease.taskID], t.lease == lease.token, t.phase == .running else { continue }
            batch.taskExecutions.append(TaskExecutionRecord(runID: run.record.runID, taskID: t.planned.id, node: t.planned.node,
                                                            step: run.checkpoint.step + 1, attempt: t.attempt, worker: w.name,
                                                            status: "lost", startedAt: t.startedAt, finishedAt: now,
                                                            error: "worker \(w.name) lost: \(reason)", cost: 0, apiCalls: 0))
            t.lease = nil
            t.workerID = nil
            t.lostWorkers += 1
            if t.lostWorkers >= config.poisonAfter {
                poisoned.append((run, t))
                continue
            }
            run.enqueue(t)
            activate(run.record.runID)
            handedBack += 1
            tasksReassigned += 1
            metrics.tasksReassigned.increment()
            publish(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: w.name,
                    message: "worker \(w.name) lost (\(reason)); task handed back", attempt: t.attempt)
        }
        w.running.removeAll()
        logger.warning("worker left", metadata: ["worker": "\(w.name)", "worker_id": "\(w.id)", "reason": "\(reason)",
                                                 "tasks_handed_back": "\(handedBack)"])
        writer.enqueue(batch)
        for (run, t) in poisoned where runs[run.record.runID] === run {
            tasksPoisoned += 1
            let why = "task \(t.planned.id) (node '\(t.planned.node)') was running on \(t.lostWorkers) workers that all died; declared poisonous instead of handing it out again"
            logger.error("poisonous task", metadata: ["run_id": "\(run.record.runID)", "task_id": "\(t.planned.id)", "node": "\(t.planned.node)"])
            publish(run, kind: "task_failed", node: t.planned.node, taskID: t.planned.id, worker: w.name, message: why, attempt: t.attempt)
            finishRun(run, status: .failed, error: why, extra: StoreBatch())
        }
        pump()
    }

    /// Records a heartbeat; false when the worker is no longer registered (it was presumed lost).
    func heartbeat(_ workerID: String, _ hb: Cairn_V1_Heartbeat) -> Bool {
        guard let w = workers[workerID] else { return false }
        w.lastHeartbeat = now
        for p in hb.tasks {
            guard leaseTable.heartbeat(p.lease, workerID: workerID, now: now), !p.progressJson.isEmpty,
                  let lease = leaseTable.lease(p.lease), let run = runs[lease.runID],
                  let t = run.tasks[lease.taskID], t.lease == p.lease else { continue }
            t.progress = [UInt8](p.progressJson)
            publish(run, kind: "progress", node: t.planned.node, taskID: t.planned.id, worker: w.name,
                    message: String(decoding: t.progress, as: UTF8.self), attempt: t.attempt)
        }
        return true
    }

    func drain(_ workerID: String) {
        workers[workerID]?.draining = true
        logger.info("worker draining", metadata: ["worker_id": "\(workerID)"])
    }

    /// Workers that missed heartbeats for longer than the timeout are presumed lost; attempts
    /// that outlived their node's timeout (plus a grace) are failed, whatever their worker says.
    func sweepWorkers() -> [String] {
        let deadline = now - config.heartbeatTimeout
        let silent = workers.values.filter { $0.lastHeartbeat < deadline }.map(\.id)
        for id in silent { workerLost(id, reason: "no heartbeat for \(Int(config.heartbeatTimeout))s") }
        for lease in leaseTable.expire(now: now) {
            metrics.leasesExpired.increment()
            let w = workers[lease.workerID]
            w?.running.remove(lease.token)
            guard let run = runs[lease.runID], let t = run.tasks[lease.taskID], t.lease == lease.token, t.phase == .running else { continue }
            t.lease = nil
            let limit = Durations.format(millis: run.graph.nodes[t.planned.node]?.timeoutMS ?? 0)
            attemptFailed(run, t, message: "no result within the node's timeout (\(limit)) and its grace period", errorKind: "timeout",
                                nonRetryable: false, worker: w?.name ?? lease.workerID, finishedAt: now, cost: 0, apiCalls: 0)
        }
        if !silent.isEmpty { pump() }
        return silent
    }

    // MARK: - dispatch

    func activate(_ runID: String) {
        if !rotation.contains(runID) { rotation.append(runID) }
    }

    /// Hands ready tasks to free worker slots, one task per run per turn (fair across runs).
    func pump() {
        // While the store cannot keep up (or cannot be written), no new work: nothing is dropped.
        guard !workers.isEmpty, !writer.holding, !stopping else { return }
        var idleTurns = 0
        while !rotation.isEmpty, idleTurns < rotation.count {
            if rotationIndex >= rotation.count { rotationIndex = 0 }
            let runID = rotation[rotationIndex]
            guard let run = runs[runID], run.record.status == .running, let t = run.peekReady() else {
                rotation.remove(at: rotationIndex)
                continue
            }
            guard let w = pickWorker(for: t.kind) else {
                // Every slot is taken: stop here, and this run is first in line for the next free slot.
                if workers.values.allSatisfy({ $0.free == 0 }) { return }
                // Slots are free, but not on a worker that runs this kind: let the next run try.
                idleTurns += 1
                rotationIndex += 1
                continue
            }
            idleTurns = 0
            _ = run.popReady()
            assign(t, of: run, to: w)
            rotationIndex += 1
        }
    }

    func pickWorker(for kind: String) -> WorkerHandle? {
        var best: WorkerHandle?
        for w in workers.values where w.free > 0 && w.accepts(kind) {
            if best == nil || w.free > best!.free || (w.free == best!.free && w.id < best!.id) { best = w }
        }
        return best
    }

    func assign(_ t: TaskState, of run: ActiveRun, to w: WorkerHandle) {
        t.attempt += 1
        let timeout = run.graph.nodes[t.planned.node]?.timeoutMS.map { Double($0) / 1000 + config.timeoutGrace }
        let lease = leaseTable.grant(runID: run.record.runID, taskID: t.planned.id, workerID: w.id, attempt: t.attempt,
                                     now: now, timeout: timeout).token
        t.phase = .running
        t.lease = lease
        t.workerID = w.id
        t.startedAt = now
        w.running.insert(lease)
        tasksDispatched += 1
        metrics.tasksDispatched.increment()

        var a = Cairn_V1_TaskAssignment()
        a.taskID = t.planned.id
        a.lease = lease
        a.runID = run.record.runID
        a.node = t.planned.node
        a.kind = t.kind
        a.configJson = Data(run.configBytes[t.planned.node] ?? [])
        a.stateJson = Data(run.stateBytes(for: run.graph.nodes[t.planned.node]))
        if let input = t.planned.input { a.inputJson = Data(input.jsonBytes()) }
        a.attempt = UInt32(t.attempt)
        a.progressJson = Data(t.progress)
        a.bundleHash = run.bundleHash ?? ""
        a.step = UInt32(run.checkpoint.step + 1)
        a.checkpointID = run.checkpoint.checkpointID
        a.timeoutMs = UInt64(run.graph.nodes[t.planned.node]?.timeoutMS ?? 0)
        w.send(.taskAssignment(a))
        publish(run, kind: "task_started", node: t.planned.node, taskID: t.planned.id, worker: w.name, attempt: t.attempt)
    }
}
