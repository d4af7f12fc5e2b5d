import CairnCore
import CairnProtocol
import CairnStore
import CairnTLS
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// The coordinator process: store, scheduler and the TCP server in front of them.
///
/// `start()` opens and migrates the store, recovers unfinished runs, then binds the port (so no
/// peer sees a half-ready coordinator); `run()` serves until `shutdown()`.
public final class Coordinator: Service, Sendable {
    public let config: CoordinatorConfig
    let logger: Logger
    let stores: StoreStack
    let engine: Engine
    /// Submit, time travel, the life of stored data: what the doors call (`ClientDoor`).
    let commands: Commands
    let group: MultiThreadedEventLoopGroup
    let serverBox = ServerBox()

    final class ServerBox: @unchecked Sendable {
        private let lock = NSLock()
        private var _channel: NIOAsyncChannel<FramedChannel.AsyncChannel, Never>?
        var channel: NIOAsyncChannel<FramedChannel.AsyncChannel, Never>? {
            get { lock.withLock { _channel } }
            set { lock.withLock { _channel = newValue } }
        }
    }

    /// A coordinator on `stores` (built from configuration by `CairnStack.makeCoordinator`).
    public init(config: CoordinatorConfig, stores: StoreStack, logger: Logger) {
        self.config = config
        self.logger = logger
        self.stores = stores
        // One event loop serves every connection and is the scheduler's executor: a worker's
        // result is handled on the thread that read it, and assignments are written from there.
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let engine = Engine(store: stores.store, hotTier: stores.hotTier, loop: group.next(), config: config, logger: logger)
        self.engine = engine
        // Queries go through the hot tier when there is one: it flushes first, so they see every step.
        self.commands = Commands(context: CommandContext(engine: engine, store: stores.store, graphs: GraphCache(), config: config,
                                                         hotTier: stores.hotTier, logger: logger))
    }

    /// The bound port (useful with port 0).
    public var port: Int? { serverBox.channel?.channel.localAddress?.port }

    /// Recovers runs and binds the listening socket.
    public func start() async throws {
        switch ProtectedMode.decide(host: config.host, hasToken: config.keyring != nil, insecureNoAuth: config.insecureNoAuth) {
        case .allowed: break
        case .insecure(let warning): logger.warning("\(warning)")
        case .refused(let reason): throw EngineError(.errorUnauthenticated, reason)  // before recovery or the socket
        }
        // TLS files are read before the store is touched: a bad one stops the start in one line.
        var tlsContext: NIOSSLContext?
        if let files = config.tls {
            do { tlsContext = try CairnTLS.serverContext(files) } catch { throw EngineError(.errorInvalidArgument, "\(error)") }
        }
        let tls = tlsContext
        let lifecycle = stores.lifecycle
        await engine.setWALProbe { lifecycle.logBytes() }
        await engine.start()
        let timeTravel = commands.timeTravel
        // Called on the engine's loop, which is time travel's executor too.
        await engine.setPausedHandler { record in timeTravel.assumeIsolated { $0.armDeadline(record) } }
        try await lifecycle.open()
        let recovered = await commands.runs.recover()
        await timeTravel.armDeadlines()
        if recovered > 0 { logger.notice("recovered unfinished runs", metadata: ["count": "\(recovered)"]) }
        let maxFrame = config.maxFrameSize
        let limits = ConnectionWatch.Limits(handshakeTimeout: config.handshakeTimeout, frameTimeout: config.frameTimeout)
        let cutLogger = logger
        let cutCounters = engine.metrics.connectionsCut
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .bind(host: config.host, port: config.port) { (channel: any Channel) -> EventLoopFuture<FramedChannel.AsyncChannel> in
                let peer = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
                // A peer that vanished without a FIN (a presumed-lost worker, a client gone) is let go within about 1.5 minutes.
                do { try DeadPeer.arm(channel, idle: 30, interval: 10, count: 3, timeout: 60) } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                if let tls {
                    do {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                        try channel.pipeline.syncOperations.addHandler(TLSFailureReporter { reason in
                            cutLogger.notice("refused a connection's TLS handshake", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
                        })
                    } catch { return channel.eventLoop.makeFailedFuture(error) }
                }
                return FramedChannel.configure(channel, maxFrameSize: maxFrame, tap: { MessageTap(types: [.taskResult]) }, guarded: limits) { code, reason in
                    // Debug: a thousand strangers must not flood the log. cairn_connections_cut_total counts them.
                    cutLogger.debug("cut a connection off", metadata: ["peer": "\(peer)", "reason": "\(reason)"])
                    cutCounters[code]?.increment()
                }
            }
        serverBox.channel = server
        logger.notice("coordinator listening", metadata: ["address": "\(config.host):\(port ?? config.port)",
                                                          "store": "\(stores.description)", "auth": "\(config.keyring?.summary ?? "none")",
                                                          "tls": "\(config.tls == nil ? "off" : config.tls?.ca == nil ? "on" : "mutual")"])
    }

    /// Serves connections until the listening socket closes or a graceful shutdown is asked for
    /// (SIGTERM under a `ServiceGroup`): then it stops accepting, ends open connections, flushes
    /// the hot tier to SQLite and truncates the WAL, so the file holds every step taken.
    public func run() async throws {
        guard let server = serverBox.channel else { throw EngineError(.errorInternal, "start() first") }
        let handler = ConnectionHandler(door: door, logger: logger)
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { tasks in
                tasks.addTask { await self.housekeeping() }
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        tasks.addTask { await handler.handle(connection) }
                    }
                }
                tasks.cancelAll()
            }
        } onGracefulShutdown: {
            self.logger.notice("shutting down: no new connections")
            server.channel.close(promise: nil)
        }
        await finish()
        try await group.shutdownGracefully()
    }

    /// Makes everything durable in SQLite and closes the store's log: no new work, every queued
    /// write committed, the hot tier flushed, the WAL truncated.
    func finish() async {
        let unwritten = await engine.shutdown(timeout: .seconds(Int64(config.shutdownWriteTimeout)))
        if unwritten > 0 {
            logger.critical("the store did not accept the last writes before shutdown; those steps were never acknowledged and run again at the next start",
                            metadata: ["rows": "\(unwritten)", "waited_s": "\(config.shutdownWriteTimeout)"])
        } else {
            logger.notice("every queued write is committed")
        }
        do {
            try await stores.lifecycle.close()
        } catch {
            logger.error("closing the store failed", metadata: ["error": "\(error)"])
        }
    }

    /// Whether the coordinator can do its work: the store answers, and Redis is up when configured.
    public func health() async -> (healthy: Bool, detail: String) {
        var ok = true
        var parts: [String] = []
        do {
            _ = try await stores.store.runCounts()
            parts.append("\"store\": \"ok\"")
        } catch {
            ok = false
            parts.append("\"store\": \"\(String(describing: error).replacingOccurrences(of: "\"", with: "'"))\"")
        }
        if let failure = await engine.storeWriteFailure {
            ok = false
            parts.append("\"writer\": \"\(failure.replacingOccurrences(of: "\"", with: "'"))\"")
            if await engine.storeDamaged { parts.append("\"store_damaged\": true") }
        }
        if let hot = stores.hotTier {
            let st = await hot.tierReport()
            parts.append("\"redis\": \"\(st.redisUp ? "up" : "down")\"")
            if !st.redisUp { ok = false }
            if let e = st.lastFlushError { ok = false; parts.append("\"flush_error\": \"\(e.replacingOccurrences(of: "\"", with: "'"))\"") }
        }
        parts.append("\"auth\": \"\(config.keyring == nil ? "none" : "token")\"")
        parts.insert("\"status\": \"\(ok ? "ok" : "unhealthy")\"", at: 0)
        return (ok, "{" + parts.joined(separator: ", ") + "}")
    }

    /// Brings gauges (runs by status, queue depth, workers, Redis, WAL) up to date before a scrape.
    public func refreshMetrics() async {
        _ = await door.refreshGauges()
    }

    /// Periodic work: presume silent workers lost, keep the WAL bounded, apply `--retention`.
    func housekeeping() async {
        var lastWAL = Date()
        // The first retention pass runs a few seconds after start; each runs beside the sweeps
        // (a long cleanup must not hold back lease expiry), never two at once.
        var lastRetention = Date().addingTimeInterval(min(5, config.retentionInterval) - config.retentionInterval)
        while !Task.isCancelled {
            // Cancelled at shutdown: the while condition ends the loop.
            try? await Task.sleep(nanoseconds: UInt64(max(0.05, config.heartbeatInterval) * 1e9))
            await engine.sweep()
            if Date().timeIntervalSince(lastWAL) >= config.walCheckpointInterval {
                lastWAL = Date()
                do { try await stores.lifecycle.maintain() } catch {
                    logger.warning("WAL checkpoint failed", metadata: ["error": "\(error)"])
                }
            }
            if let olderThan = config.retention, Date().timeIntervalSince(lastRetention) >= config.retentionInterval {
                lastRetention = Date()
                let dataLife = commands.dataLife
                Task { await dataLife.scheduledCleanup(olderThan: olderThan) }
            }
        }
    }

    /// Stops accepting connections; `run()` returns once open connections end.
    public func shutdown() async {
        // Already closed is the state asked for.
        try? await serverBox.channel?.channel.close()
    }
}
