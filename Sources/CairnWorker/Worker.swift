import CairnCore
import CairnProtocol
import CairnTLS
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import CoreMetrics

public struct WorkerConfig: Sendable {
    /// The coordinator to connect to first.
    public var host: String = "127.0.0.1"
    public var port: Int = 7400
    /// More coordinators of the same store (standbys), tried in turn when one does not answer:
    /// the worker serves whichever is active.
    public var others: [CoordinatorAddress] = []
    public var name: String = ""
    public var slots: Int = 4
    public var token: String?
    /// TLS to the coordinator: `ca` (its certificate's CA), and `certificate`/`key` for mutual TLS; nil: plaintext.
    public var tls: TLSFiles?
    /// Where fetched graph bundles are unpacked, one folder per SHA-256.
    public var cacheDirectory: String = WorkerConfig.defaultCacheDirectory
    public var maxFrameSize: Int = Frame.defaultMaxSize
    public var reconnectInitialDelay: Double = 0.1
    public var reconnectMaxDelay: Double = 5.0
    /// How long heartbeats may go unacknowledged before the connection counts as dead (a
    /// coordinator that vanished without a FIN: a partition, a host gone): then reconnect.
    public var peerTimeout: Double = 10.0
    /// How long a draining worker lets running tasks finish before it disconnects.
    public var drainGrace: Double = 30.0
    /// Bytes of channel values kept between tasks of a run (`StateCache`), so that only what
    /// changed travels; 0 keeps none and every task gets its state whole.
    public var stateCacheBytes: Int = 64 << 20
    /// Where metrics go (the executable bootstraps Prometheus; the default discards them).
    public var metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance

    public init() {}

    public static var defaultCacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? NSTemporaryDirectory()) + "/.cache")
        return base + "/cairn/bundles"
    }
}

/// An error that stops the worker instead of making it reconnect.
public struct WorkerFatalError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The worker runtime: connects to the coordinator, runs the tasks it is given on its handlers,
/// heartbeats, reconnects with backoff, and drains on request.
public final class Worker: Service, Sendable {
    public let config: WorkerConfig
    let handlers: [String: any NodeHandler]
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let stopSignal = StopSignal()
    let codec = WireCodec()
    let metrics: WorkerMetrics
    /// Long-lived programs of `serve:` exec nodes.
    public let pools: ProcessPools
    /// The TLS context made from `config.tls` (a bad file is reported when the worker runs).
    let tlsSetup: Result<NIOSSLContext, any Error>?
    var tls: NIOSSLContext? { if case .success(let c)? = tlsSetup { c } else { nil } }

    public init(config: WorkerConfig, handlers: [String: any NodeHandler] = [:], logger: Logger) {
        self.config = config
        // A program that exits without reading its stdin must fail a write, not kill the worker.
        signal(SIGPIPE, SIG_IGN)
        self.pools = ProcessPools(maxIdle: config.slots, stateBudget: config.stateCacheBytes, logger: logger)
        var all = BuiltinHandlers.all(pools: pools,
                                      pythonLibrary: PythonLibraryFolder.installed(cacheDirectory: config.cacheDirectory, logger: logger))
        for (k, v) in handlers { all[k] = v }
        self.handlers = all
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.metrics = WorkerMetrics(factory: config.metricsFactory)
        self.tlsSetup = config.tls.map { files in Result { try CairnTLS.clientContext(files, holder: "worker") } }
    }

    /// Asks the worker to drain: take no new tasks, finish running ones, then return from `run()`.
    public func stop() { stopSignal.fire() }

    /// Serves until stopped or, under a `ServiceGroup`, until a graceful shutdown (SIGTERM), which
    /// drains: no new tasks, running ones finish within the grace period, then it disconnects.
    public func run() async throws {
        if case .failure(let e)? = tlsSetup { throw WorkerFatalError(message: "\(e)") }
        try await withGracefulShutdownHandler {
            try await serve()
        } onGracefulShutdown: {
            self.logger.notice("signal received: draining")
            self.stop()
        }
    }

    /// Reconnects with exponential backoff when the coordinator is away; a wrong token or protocol
    /// version ends it with `WorkerFatalError`.
    func serve() async throws {
        defer { group.shutdownGracefully { _ in } }
        // Running tasks are done or given up by now (drained): the served programs' stdin is
        // closed and they exit; any still up after the grace are killed.
        do {
            try await sessions()
        } catch {
            await pools.shutdown(grace: 5)
            throw error
        }
        await pools.shutdown(grace: 5)
    }

    /// Connects to each coordinator in turn until one serves; after a round where none did, waits
    /// (exponential backoff, capped lower when there are standbys: one of them is about to take
    /// over, and the worker should be there when it does).
    func sessions() async throws {
        let all = [CoordinatorAddress(host: config.host, port: config.port)] + config.others
        let maxDelay = all.count > 1 ? min(config.reconnectMaxDelay, 0.5) : config.reconnectMaxDelay
        var delay = config.reconnectInitialDelay
        var index = 0
        var lastServed: CoordinatorAddress?
        // With standbys: the newest epoch served. A coordinator of an older one was deposed and
        // has not noticed yet (it woke from a pause): its dispatches are refused.
        let floor = Following(checksEpochs: all.count > 1)
        var failedRounds = 0
        var jumped = false
        while !stopSignal.fired {
            let target = all[index % all.count]
            do {
                _ = try await session(target, movedFrom: lastServed.flatMap { $0 == target ? nil : $0 }, floor: floor)
            } catch let e as WorkerFatalError {
                throw e
            } catch is DrainComplete {
                return
            } catch let s as StandbyAnswer where !jumped && s.leader != nil && s.leader != target && all.contains(s.leader!) {
                // A standby named the active coordinator: go there now (once a round: a row that
                // names a coordinator that is itself standing by must not make a loop).
                index = all.firstIndex(of: s.leader!)!
                jumped = true
                continue
            } catch {
                if floor.served != target, index % all.count == all.count - 1 {
                    // With standbys a fail-over takes a few rounds: the first and every 20th are told.
                    failedRounds += 1
                    let level: Logger.Level = all.count == 1 || failedRounds % 20 == 1 ? .info : .debug
                    logger.log(level: level, "coordinator unreachable; retrying", metadata: ["address": "\(all.map(\.description).joined(separator: ","))",
                                                                                           "error": "\(error)", "delay_s": "\(delay)"])
                }
            }
            if floor.served == target {
                // It served (and then went away, or the session ended): start afresh.
                delay = config.reconnectInitialDelay
                lastServed = target
                failedRounds = 0
                floor.served = nil
            }
            if stopSignal.fired { break }
            index += 1
            // A lost connection tries the next coordinator at once; a round with none serving waits.
            guard index % all.count == 0 else { continue }
            jumped = false
            let jittered = delay * Double.random(in: 0.8...1.2)
            // Either the backoff passed or a stop was asked: the loop checks which.
            try? await stopSignal.wait(timeout: jittered)
            delay = min(maxDelay, delay * 2)
        }
    }

    struct DrainComplete: Error {}

    /// One connection. Returns true when it got past the handshake.
    func session(_ target: CoordinatorAddress, movedFrom: CoordinatorAddress?, floor: Following? = nil) async throws -> Bool {
        let maxFrame = config.maxFrameSize
        let cache = StateCache()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(5))
            .connect(host: target.host, port: target.port) { (ch: any Channel) -> EventLoopFuture<FramedChannel.AsyncChannel> in
                do {
                    try DeadPeer.arm(ch, idle: 5, interval: 2, count: 3, timeout: self.config.peerTimeout)
                    // A coordinator that took the connection but says nothing (frozen) is left for the next.
                    try ch.pipeline.syncOperations.addHandler(AnswerDeadline(timeout: .milliseconds(Int64(min(5, self.config.peerTimeout) * 1000))))
                } catch {
                    return ch.eventLoop.makeFailedFuture(error)
                }
                if let tls = self.tls {
                    do { try ch.pipeline.syncOperations.addHandler(try CairnTLS.clientHandler(tls, host: target.host)) } catch {
                        return ch.eventLoop.makeFailedFuture(error)
                    }
                }
                return FramedChannel.configure(ch, maxFrameSize: maxFrame, tap: { self.immediateTap(cache) })
            }
        let codec = self.codec
        return try await channel.executeThenClose { inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            var hello = Cairn_V1_Hello()
            hello.protocolVersion = cairnProtocolVersion
            hello.role = .worker
            hello.token = config.token ?? ""
            hello.worker.name = config.name
            hello.worker.slots = UInt32(config.slots)
            hello.worker.kinds = handlers.keys.sorted()
            hello.worker.version = "cairn-worker 0.1"
            hello.worker.stateCacheBytes = UInt64(max(0, config.stateCacheBytes))
            try await outbound.send(.hello(hello), codec: codec)
            let answer: Frame?
            do { answer = try await frames.next() } catch {
                // One that closes mid-handshake is starting, stopping, or taking or giving up the
                // lead: asked again (the next one first, with standbys), never a reason to stop.
                if CairnTLS.closedDuringHandshake(error) { throw ClosedBeforeAnswering() }
                // Certificates and TLS on one side only do not mend by retrying: say so and stop.
                if CairnTLS.isTLSError(error) {
                    throw WorkerFatalError(message: CairnTLS.describeClientFailure(error, files: config.tls ?? TLSFiles(), host: target.host))
                }
                if let f = error as? FrameError, f.isTLSRecord {
                    throw WorkerFatalError(message: "the coordinator at \(target) speaks TLS: pass --tls-ca (or CAIRN_TLS_CA)")
                }
                throw error
            }
            // A coordinator that closes before answering is starting, stopping, taking or giving
            // up the lead (a standby's door closes as it takes over), or frozen and cut by
            // AnswerDeadline: asked again, as an unreachable one is (found by a test that killed
            // a lone coordinator on PostgreSQL: the worker used to stop here for good).
            guard let first = answer else { throw ClosedBeforeAnswering() }
            let welcome: Cairn_V1_Welcome
            switch try codec.decode(first) {
            case .welcome(let w): welcome = w
            case .error(let e) where e.code == .errorStandby:
                throw StandbyAnswer(leader: CoordinatorAddress(parsing: e.leader))
            case .error(let e):
                if e.code == .errorUnauthenticated || e.code == .errorPermissionDenied || e.code == .errorVersion {
                    throw WorkerFatalError(message: "the coordinator refused this worker: \(e.message)")
                }
                throw ProtocolError.unexpected(expected: "Welcome", got: "error: \(e.message)")
            case let other: throw ProtocolError.unexpected(expected: "Welcome", got: "\(other.type)")
            }
            if let floor {
                guard !floor.checksEpochs || welcome.epoch >= floor.newest else {
                    throw StaleCoordinator(description: "\(target) leads with epoch \(welcome.epoch), older than \(floor.newest) served before: it was deposed")
                }
                floor.newest = welcome.epoch
                floor.served = target
            }
            if let movedFrom {
                logger.notice("the active coordinator moved: serving it", metadata: ["from": "\(movedFrom)", "to": "\(target)",
                                                                                  "worker_id": "\(welcome.workerID)"])
            } else {
                logger.notice("connected to coordinator", metadata: ["address": "\(target)", "worker_id": "\(welcome.workerID)",
                                                                     "slots": "\(config.slots)"])
            }
            let (outStream, outbox) = AsyncStream<WireMessage>.makeStream()
            let state = SessionState(outbox: outbox)
            let interval = max(0.05, Double(welcome.heartbeatIntervalMs) / 1000)
            let heard = LastHeard()
            do {
                // Discarding: a task's child is gone once it has answered (a group that keeps its
                // children's results grew by about 5 KB a task over a connection's life). Its
                // children do not throw: the connection's end is the body's to report.
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask {
                        do {
                            for await m in outStream { try await outbound.send(m, codec: codec) }
                        } catch {}
                        // The outbox was finished (draining is done), or the connection is gone: hang up.
                        try? await channel.channel.close()
                    }
                    group.addTask { [config, logger] in
                        while !Task.isCancelled {
                            do { try await Task.sleep(nanoseconds: UInt64(interval * 1e9)) } catch { return }
                            // The coordinator answers every heartbeat: one that has not for the
                            // peer timeout is frozen or wedged (its kernel still acknowledges
                            // bytes, so TCP cannot tell): leave it for the next coordinator.
                            let silent = heard.silence()
                            if silent > max(config.peerTimeout, interval * 3) {
                                logger.warning("the coordinator has not answered heartbeats: leaving it", metadata: ["address": "\(target)", "silent_s": "\(Int(silent))"])
                                try? await channel.channel.close()
                                return
                            }
                            outbox.yield(.heartbeat(await state.heartbeat()))
                        }
                    }
                    group.addTask { [stopSignal, config, logger] in
                        do { try await stopSignal.wait() } catch { return }
                        logger.notice("draining: no new tasks; finishing running ones", metadata: ["grace_s": "\(config.drainGrace)"])
                        outbox.yield(.drain(Cairn_V1_Drain()))
                        await state.waitIdle(timeout: config.drainGrace)
                        outbox.finish()
                    }
                    // However the connection ends, whoever waits on it (a bundle fetch) hears so at
                    // once: the session's tasks can then end, and the worker reconnects.
                    defer { Task { await state.connectionEnded() } }
                    while let frame = try await frames.next() {
                        switch try codec.decode(frame) {
                        case .taskAssignment(let a):
                            await state.started(a.lease)
                            if StateCache.uses(a) {
                                // Built by the tap in arrival order (or here, in the same order, without one).
                                switch cache.take(a.lease) ?? self.applyCache(cache, a) {
                                case .success(let view):
                                    group.addTask { await self.execute(a, state, view: view) }
                                case .failure(let mismatch):
                                    let failed = self.finish(a, started: Date()) { throw NodeFailure("state cache: \(mismatch)", kind: "state_cache") }
                                    group.addTask { await state.finished(a.lease, result: failed) }
                                }
                                continue
                            }
                            group.addTask { await self.execute(a, state) }
                        case .heartbeat:
                            heard.now()
                        case .bundleData(let d):
                            await state.bundleArrived(d)
                        case .resultAck(let ack):
                            if !ack.accepted {
                                logger.notice("coordinator discarded a late result", metadata: ["task_id": "\(ack.taskID)"])
                            }
                        case .error(let e):
                            logger.warning("the coordinator ended the session", metadata: ["reason": "\(e.message)"])
                            throw ConnectionLost()
                        case let other:
                            throw ProtocolError.unexpected(expected: "a coordinator message", got: "\(other.type)")
                        }
                    }
                    throw ConnectionLost()
                }
            } catch is ConnectionLost {
                if stopSignal.fired {
                    logger.notice("drained; disconnected")
                } else {
                    logger.warning("lost the coordinator connection")
                }
            }
            outbox.finish()
            return true
        }
    }

    struct ConnectionLost: Error {}

    struct ClosedBeforeAnswering: Error, CustomStringConvertible {
        var description: String { "the coordinator closed the connection before answering the handshake (starting, stopping or changing role)" }
    }

    /// Answers assignments of immediate handlers (echo, fail, flaky, map, and any Swift
    /// `ImmediateNodeHandler` without a bundle) where they are read, on the event loop; the
    /// results of one read burst go out in one write. Other assignments go on to the session.
    func immediateTap(_ cache: StateCache) -> MessageTap {
        let codec = self.codec
        let logger = self.logger
        return MessageTap(types: [.taskAssignment, .resultAck], codec: codec) { message, context in
            // An ack only tells that a result was refused: read where it arrives.
            if case .resultAck(let ack) = message {
                if !ack.accepted { logger.notice("coordinator discarded a late result", metadata: ["task_id": "\(ack.taskID)"]) }
                return true
            }
            guard case .taskAssignment(var a) = message else { return false }
            var built: Result<StateView, StateCache.Mismatch>?
            if StateCache.uses(a) {
                // Every assignment's cache parts are applied here, in the order they arrive.
                let b = self.applyCache(cache, a)
                guard case .success(let view) = b, a.bundleHash.isEmpty, self.handlers[a.kind] is any ImmediateNodeHandler else {
                    cache.stash(a.lease, b)
                    return false
                }
                a.stateJson = Data(view.json)
                built = b
            }
            guard a.bundleHash.isEmpty,
                  let handler = self.handlers[a.kind] as? any ImmediateNodeHandler,
                  // A result that cannot be encoded here (too large for a frame) goes the session's way, which reports it.
                  let frame = try? codec.encode(.taskResult(self.immediateResult(for: a, handler)), allocator: context.channel.allocator)
            else {
                if let built { cache.stash(a.lease, built) }
                return false
            }
            context.write(NIOAny(frame), promise: nil)
            return true
        }
    }

    /// Applies an assignment's state parts to the cache; the runs it drops, the served processes drop too.
    func applyCache(_ cache: StateCache, _ a: Cairn_V1_TaskAssignment) -> Result<StateView, StateCache.Mismatch> {
        pools.forget(runs: a.cacheEvict)
        return cache.apply(a)
    }

    func immediateResult(for a: Cairn_V1_TaskAssignment, _ handler: any ImmediateNodeHandler) -> Cairn_V1_TaskResult {
        let started = Date()
        metrics.started.increment()
        return finish(a, started: started) {
            try handler.runNow(try self.context(for: a, bundleDirectory: nil, reportProgress: { _ in }))
        }
    }

    func execute(_ a: Cairn_V1_TaskAssignment, _ state: SessionState, view: StateView? = nil) async {
        await state.finished(a.lease, result: await result(for: a, state, view: view))
    }

    /// Runs the task's handler and turns what it returns (or throws) into a result message.
    func result(for a: Cairn_V1_TaskAssignment, _ state: SessionState, view: StateView? = nil) async -> Cairn_V1_TaskResult {
        let started = Date()
        metrics.started.increment()
        metrics.running.increment()
        defer { metrics.running.decrement() }
        let outcome: Result<NodeResult, any Error>
        do {
            let ctx = try await context(for: a, state, view: view)
            guard let handler = handlers[a.kind] else {
                throw NodeFailure("this worker has no handler for node kind '\(a.kind)'", kind: "no_handler")
            }
            if let timeout = ctx.timeout {
                outcome = .success(try await withTimeout(timeout, node: a.node) { try await handler.run(ctx) })
            } else {
                outcome = .success(try await handler.run(ctx))
            }
        } catch {
            outcome = .failure(error)
        }
        return finish(a, started: started) { try outcome.get() }
    }

    /// The result message for what a handler returned or threw, with metrics and a log line.
    func finish(_ a: Cairn_V1_TaskAssignment, started: Date, _ body: () throws -> NodeResult) -> Cairn_V1_TaskResult {
        var r = Cairn_V1_TaskResult()
        r.taskID = a.taskID
        r.lease = a.lease
        var failed: String?
        do {
            let result = try body()
            r.writesJson = Data(JSONValue.object(result.writes).jsonBytes())
            r.goto = result.goto
            r.sends = result.sends.map { s in
                var m = Cairn_V1_Send()
                m.node = s.node
                m.inputJson = Data(s.input.jsonBytes())
                return m
            }
            if let i = result.interrupt { r.interruptJson = Data(i.jsonBytes()) }
            Self.attach(result.records, to: &r)
        } catch let f as NodeFailure {
            r.error = f.message
            r.errorKind = f.kind
            r.nonRetryable = f.nonRetryable
            Self.attach(f.records, to: &r)
            failed = f.message
        } catch {
            r.error = "\(error)"
            r.errorKind = "error"
            failed = "\(error)"
        }
        let elapsed = Date().timeIntervalSince(started)
        r.durationMs = UInt64(max(0, elapsed * 1000))
        metrics.duration.recordNanoseconds(Int64(elapsed * 1e9))
        if let failed {
            metrics.failed.increment()
            logger.info("task failed", metadata: ["run_id": "\(a.runID)", "task_id": "\(a.taskID)", "node": "\(a.node)",
                                                  "attempt": "\(a.attempt)", "error": "\(failed)"])
        } else {
            metrics.completed.increment()
            if logger.logLevel <= .debug {
                logger.debug("task done", metadata: ["run_id": "\(a.runID)", "task_id": "\(a.taskID)", "node": "\(a.node)", "attempt": "\(a.attempt)"])
            }
        }
        return r
    }

    func context(for a: Cairn_V1_TaskAssignment, _ state: SessionState, view: StateView? = nil) async throws -> TaskContext {
        var bundleDir: String?
        if !a.bundleHash.isEmpty { bundleDir = try await bundle(a.bundleHash, state) }
        let lease = a.lease
        return try context(for: a, bundleDirectory: bundleDir, view: view, reportProgress: { p in Task { await state.progress(lease, p) } })
    }

    /// `view`: the state as the worker's cache built it (the assignment's `state_json` is then empty).
    func context(for a: Cairn_V1_TaskAssignment, bundleDirectory: String?, view: StateView? = nil,
                 reportProgress: @escaping @Sendable (JSONValue) -> Void) throws -> TaskContext {
        func json(_ d: Data) throws -> JSONValue? {
            d.isEmpty ? nil : try JSONValue.parse([UInt8](d))
        }
        // An exec program parses the state itself: the worker passes the bytes on untouched.
        let passOn = a.kind == "exec" && (!a.stateJson.isEmpty || view != nil)
        // Built whole only for a handler that parses it (an exec program is handed what it needs).
        var ctx = TaskContext(runID: a.runID, taskID: a.taskID, attempt: Int(a.attempt), node: a.node, kind: a.kind,
                           state: passOn ? .null : try json(view.map { Data($0.json) } ?? a.stateJson) ?? .object([:]), input: try json(a.inputJson),
                           config: try json(a.configJson) ?? .object([:]), progress: try json(a.progressJson),
                           bundleDirectory: bundleDirectory, timeout: a.timeoutMs > 0 ? .milliseconds(Int64(a.timeoutMs)) : nil,
                           reportProgress: reportProgress, resumes: try json(a.resumeJson)?.arrayValue ?? [])
        if passOn {
            if let view { ctx.stateView = view } else { ctx.rawState = [UInt8](a.stateJson) }
        }
        return ctx
    }

    /// The unpacked bundle's folder, fetching it from the coordinator the first time.
    func bundle(_ hash: String, _ state: SessionState) async throws -> String {
        guard hash.count == 64, hash.allSatisfy({ $0.isHexDigit }) else { throw NodeFailure("bad bundle hash '\(hash)'", nonRetryable: true) }
        let dir = (config.cacheDirectory as NSString).appendingPathComponent(hash)
        if FileManager.default.fileExists(atPath: dir) { return dir }
        let data = try await state.fetchBundle(hash)
        guard data.found else {
            throw NodeFailure(data.error.isEmpty ? "the coordinator has no bundle \(hash)" : "the coordinator cannot read bundle \(hash): \(data.error)", kind: "bundle")
        }
        let archive = try BundleArchive(packed: [UInt8](data.data), expectedHash: hash)
        let tmp = dir + ".tmp-" + Identifiers.random(6)
        try archive.unpack(into: tmp)
        do {
            try FileManager.default.moveItem(atPath: tmp, toPath: dir)
        } catch {
            // Best effort: a leftover temporary folder is only disk, and the error that matters follows.
            try? FileManager.default.removeItem(atPath: tmp)
            guard FileManager.default.fileExists(atPath: dir) else { throw error }
        }
        logger.info("bundle cached", metadata: ["hash": "\(hash.prefix(12))", "files": "\(archive.entries.count)"])
        return dir
    }

    func withTimeout(_ timeout: Duration, node: String, _ body: @escaping @Sendable () async throws -> NodeResult) async throws -> NodeResult {
        try await withThrowingTaskGroup(of: NodeResult?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: timeout + .milliseconds(500))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw NodeFailure("node '\(node)' timed out after \(timeout)", kind: "timeout")
            }
            return result
        }
    }
}

/// Per-connection state: running leases with unsent progress, bundle fetches in flight.
actor SessionState {
    let outbox: AsyncStream<WireMessage>.Continuation
    var running: [String: [UInt8]?] = [:] {
        didSet { if running.isEmpty && !idleWaiters.isEmpty { wakeIdleWaiters() } }
    }
    /// Who waits for `running` to empty (a drain), by id so a cancelled wait can leave.
    private var idleWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter: UInt64 = 0
    var bundleWaiters: [String: [CheckedContinuation<Cairn_V1_BundleData, any Error>]] = [:]
    /// Set once the connection is gone: bundle fetches fail at once instead of waiting forever.
    var ended = false

    init(outbox: AsyncStream<WireMessage>.Continuation) { self.outbox = outbox }

    func started(_ lease: String) { running[lease] = .some(nil) }

    func progress(_ lease: String, _ value: JSONValue) {
        guard running[lease] != nil else { return }
        running[lease] = .some(value.jsonBytes())
    }

    func finished(_ lease: String, result: Cairn_V1_TaskResult) {
        running[lease] = nil
        outbox.yield(.taskResult(result))
    }

    func heartbeat() -> Cairn_V1_Heartbeat {
        var hb = Cairn_V1_Heartbeat()
        for (lease, progress) in running.sorted(by: { $0.key < $1.key }) {
            var p = Cairn_V1_TaskProgress()
            p.lease = lease
            if let bytes = progress ?? nil {
                p.progressJson = Data(bytes)
                running[lease] = .some(nil)
            }
            hb.tasks.append(p)
        }
        return hb
    }

    /// Returns once no task runs, after `timeout` seconds, or when cancelled (a drain cut short).
    func waitIdle(timeout: Double) async {
        guard !running.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.untilIdle() }
            group.addTask { try? await Task.sleep(for: .seconds(timeout)) }
            await group.next()
            group.cancelAll()
        }
    }

    private func untilIdle() async {
        nextWaiter += 1
        let id = nextWaiter
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                if running.isEmpty || Task.isCancelled { c.resume() } else { idleWaiters[id] = c }
            }
        } onCancel: {
            Task { await self.leaveIdleWait(id) }
        }
    }

    private func leaveIdleWait(_ id: UInt64) { idleWaiters.removeValue(forKey: id)?.resume() }

    private func wakeIdleWaiters() {
        let waiting = idleWaiters
        idleWaiters = [:]
        for c in waiting.values { c.resume() }
    }

    func fetchBundle(_ hash: String) async throws -> Cairn_V1_BundleData {
        try await withCheckedThrowingContinuation { c in
            if ended {
                c.resume(throwing: NodeFailure("lost the coordinator connection while fetching bundle \(hash)", kind: "bundle"))
            } else if bundleWaiters[hash] != nil {
                bundleWaiters[hash]!.append(c)
            } else {
                bundleWaiters[hash] = [c]
                var req = Cairn_V1_BundleRequest()
                req.hash = hash
                outbox.yield(.bundleRequest(req))
            }
        }
    }

    func bundleArrived(_ d: Cairn_V1_BundleData) {
        bundleWaiters.removeValue(forKey: d.hash)?.forEach { $0.resume(returning: d) }
    }

    /// The connection is gone: every bundle fetch waiting on it fails now, and later ones at once.
    func connectionEnded() {
        ended = true
        let waiting = bundleWaiters
        bundleWaiters = [:]
        for (hash, waiters) in waiting {
            for c in waiters { c.resume(throwing: NodeFailure("lost the coordinator connection while fetching bundle \(hash)", kind: "bundle")) }
        }
    }
}

/// A one-shot flag that async code can wait on: waiters are resumed the moment it fires (no
/// polling), and a cancelled wait ends at once with CancellationError.
final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var _fired = false
    private var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    private var nextID: UInt64 = 0

    var fired: Bool { lock.withLock { _fired } }

    func fire() {
        let waiting: [CheckedContinuation<Void, any Error>] = lock.withLock {
            _fired = true
            defer { waiters = [:] }
            return Array(waiters.values)
        }
        for c in waiting { c.resume() }
    }

    /// Returns when the flag is set; throws CancellationError when the task is cancelled.
    func wait() async throws {
        let id = lock.withLock { nextID += 1; return nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let now: Result<Void, any Error>? = lock.withLock {
                    if _fired { return .success(()) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    waiters[id] = c
                    return nil
                }
                if let now { c.resume(with: now) }
            }
        } onCancel: {
            lock.withLock { waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }

    /// Waits for the flag or the timeout, whichever comes first (throws when cancelled).
    func wait(timeout: Double) async throws {
        guard !fired else { return }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.wait() }
            group.addTask { try await Task.sleep(for: .seconds(timeout)) }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}

/// A worker's own counters, exposed on its `--metrics` endpoint.
struct WorkerMetrics: Sendable {
    let started: Counter
    let completed: Counter
    let failed: Counter
    let running: Meter
    let duration: CoreMetrics.Timer

    init(factory: any MetricsFactory) {
        started = Counter(label: "cairn_worker_tasks_started_total", factory: factory)
        completed = Counter(label: "cairn_worker_tasks_completed_total", factory: factory)
        failed = Counter(label: "cairn_worker_tasks_failed_total", factory: factory)
        running = Meter(label: "cairn_worker_tasks_running", factory: factory)
        duration = CoreMetrics.Timer(label: "cairn_worker_task_duration_seconds", factory: factory)
    }
}

extension Worker {
    /// Cost and calls go in their own fields (every coordinator reads them); anything more as JSON.
    static func attach(_ records: TaskRecords, to r: inout Cairn_V1_TaskResult) {
        r.cost = records.cost
        r.apiCalls = UInt32(clamping: records.apiCalls)
        if records.hasDetail { r.recordsJson = Data(records.json().jsonBytes()) }
    }
}

/// A coordinator's `HOST:PORT`.
public struct CoordinatorAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `HOST:PORT`, or nil.
    public init?(parsing text: String) {
        let text = text.trimmingCharacters(in: .whitespaces)
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), port > 0, port < 65536,
              colon > text.startIndex else { return nil }
        self.init(host: String(text[..<colon]), port: port)
    }

    /// A comma-separated list (`--coordinator A:7400,B:7400`), or nil when any part is not `HOST:PORT`.
    public static func list(_ text: String) -> [CoordinatorAddress]? {
        let parts = text.split(separator: ",").map { CoordinatorAddress(parsing: String($0)) }
        guard !parts.isEmpty, !parts.contains(where: { $0 == nil }) else { return nil }
        return parts.compactMap { $0 }
    }

    public var description: String { "\(host):\(port)" }
}

/// Which coordinator a worker served last, and the newest epoch it served (used by one task at a
/// time). With standbys, a coordinator of an older epoch is refused.
final class Following: @unchecked Sendable {
    let checksEpochs: Bool
    var newest: UInt64 = 0
    /// Set when a session gets past its handshake.
    var served: CoordinatorAddress?
    init(checksEpochs: Bool) { self.checksEpochs = checksEpochs }
}

/// A coordinator of an older epoch than one already served: deposed, and not yet aware of it.
struct StaleCoordinator: Error, CustomStringConvertible {
    let description: String
}

/// When the coordinator last answered a heartbeat (set by the session's reader, read by its
/// heartbeat sender).
final class LastHeard: @unchecked Sendable {
    private let lock = NSLock()
    private var at = ContinuousClock.now

    func now() { lock.withLock { at = .now } }

    /// Seconds since the last answer (or the session's start).
    func silence() -> Double {
        let d = lock.withLock { at }.duration(to: .now)
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

/// A standby coordinator answered the Hello, naming the active one when it knows it.
struct StandbyAnswer: Error, CustomStringConvertible {
    let leader: CoordinatorAddress?
    var description: String { "the coordinator stands by; the active one is at \(leader.map { "\($0)" } ?? "?")" }
}
