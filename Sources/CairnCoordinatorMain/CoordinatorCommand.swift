import ArgumentParser
import CairnCore
import CairnTLS
import CairnCoordinator
import CairnHTTP
import CairnHotTier
import CairnStack
import CairnStore
import Foundation
import Logging
import NIOSSL
import CairnOps
import Prometheus
import ServiceLifecycle
import UnixSignals

public struct CoordinatorCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cairn-coordinator",
        abstract: "Runs the Cairn coordinator: the checkpoint store, the scheduler and the port workers and clients connect to.",
        discussion: """
            The coordinator owns the store (a SQLite file, or a PostgreSQL database): every step of every run is recorded there as a checkpoint, and unfinished runs continue from their newest checkpoint when the coordinator restarts.

            Examples:
              cairn-coordinator --listen 127.0.0.1:7400 --db ./data/cairn.db
              CAIRN_TOKEN=secret cairn-coordinator --listen 0.0.0.0:7400 --db /var/lib/cairn/cairn.db
              CAIRN_TOKEN=secret PGPASSWORD=… cairn-coordinator --db postgres://cairn@db.internal:5432/cairn
              CAIRN_DB=postgres://cairn@db.internal/cairn PGPASSWORD=… cairn-coordinator --listen 0.0.0.0:7400

            Standby coordinators (PostgreSQL): start more on the same --db, each with its own --advertise HOST:PORT; one leads, the others stand by and take over within seconds when it dies. Give workers and the CLI every address: --coordinator a:7400,b:7400.

            To move a store's runs into another (SQLite into PostgreSQL, or back), see cairn-coordinator move --help.
            """
    )

    @Option(help: "Address to listen on, HOST:PORT. Port 0 picks a free port (printed on start).")
    var listen = "127.0.0.1:7400"

    @Option(help: """
        The store: a SQLite file (created if missing; an older file is upgraded in place), or a PostgreSQL database, \
        postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require] (its schema created or upgraded in place; \
        without a password in the URL, PGPASSWORD's is used, which keeps it out of the process list). \
        Without --db, CAIRN_DB; without either, ./data/cairn.db.
        """)
    var db: String?

    @Option(name: .customLong("token-file"), help: """
        The tokens workers and clients must present, one per line: ROLE TOKEN, where ROLE is worker (register and run tasks), \
        reader (read only), submitter (read, submit, cancel, resume, update, fork) or admin (all that, and cleanup and import); \
        roles joined with commas (worker,submitter TOKEN); a token alone grants everything. Re-read on SIGHUP. \
        CAIRN_TOKEN instead gives one token that grants everything.
        """)
    var tokenFile: String?

    @Option(name: .customLong("tls-cert"), help: "Serve TLS on the port (and on --http) with this certificate (PEM, chain after the leaf). scripts/certs makes a development set.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The private key of --tls-cert (PEM).")
    var tlsKey: String?

    @Option(name: .customLong("tls-client-ca"), help: "Mutual TLS: every worker and client must present a certificate signed by this CA (PEM).")
    var tlsClientCA: String?

    @Option(name: .customLong("heartbeat-interval"), help: "How often workers heartbeat, e.g. 1s.")
    var heartbeatInterval = "1s"

    @Option(name: .customLong("heartbeat-timeout"), help: "Silence after which a worker is presumed lost and its tasks are handed out again.")
    var heartbeatTimeout = "10s"

    @Option(name: .customLong("poison-after"), help: "A task whose workers died this many times fails its run as poisonous.")
    var poisonAfter = 3

    @Option(name: .customLong("max-frame-size"), help: "The largest protocol frame accepted, in bytes.")
    var maxFrameSize = 16 * 1024 * 1024

    @Option(name: .customLong("handshake-timeout"), help: "A new connection that has not sent its Hello (at most 64 KiB) within this is closed, e.g. 10s.")
    var handshakeTimeout = "10s"

    @Option(name: .customLong("frame-timeout"), help: "A frame, once begun, must arrive whole within this, or the connection is closed (a peer that trickles bytes holds nothing), e.g. 60s. The largest frame (--max-frame-size) then needs about 280 KB/s.")
    var frameTimeout = "60s"

    @Option(name: .customLong("wal-checkpoint-interval"), help: "How often SQLite's write-ahead log is checkpointed and truncated, e.g. 30s.")
    var walCheckpointInterval = "30s"

    @Option(help: "Delete finished runs (completed, failed, cancelled) this long after they finish, e.g. 30d; pinned runs stay. Without it runs stay until cairn cleanup.")
    var retention: String?

    @Option(name: .customLong("retention-interval"), help: "How often --retention looks for runs to delete.")
    var retentionInterval = "1h"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    @Option(help: "Redis for the hot tier, redis://[:password@]host:port[/db]. Steps are acknowledged once in Redis and flushed to the --db store (SQLite or PostgreSQL) in batches. Without it every step is committed to the --db store directly.")
    var redis: String?

    @Option(name: .customLong("checkpoint-ttl"), help: "How long hot-tier keys live in Redis, e.g. 1h. Unflushed work never outlives it: writes hold first.")
    var checkpointTTL = "1h"

    @Option(name: .customLong("flush-interval"), help: "How often the hot tier is flushed to SQLite (each flush takes every batch waiting), e.g. 10ms or 1s.")
    var flushInterval = "10ms"

    @Option(name: .customLong("flush-batch"), help: "Flush as soon as this many rows wait in the hot tier.")
    var flushBatch = 5_000

    @Flag(name: .customLong("allow-redis-eviction"), help: "Start even if Redis's maxmemory-policy could evict unflushed checkpoints.")
    var allowRedisEviction = false

    @Option(help: "Serve the HTTP API (JSON, Server-Sent Events, /api/openapi.json) on this HOST:PORT, e.g. 127.0.0.1:7480. It takes the same token as the TCP port.")
    var http: String?

    @Option(help: "Serve /metrics (Prometheus) and /healthz on this HOST:PORT, e.g. 0.0.0.0:9400.")
    var metrics: String?

    @Option(name: .customLong("leader-lease"), help: "With PostgreSQL: several coordinators may share the database, one active and the others standing by. The active one holds the lead this long on the database's clock and renews it every third of it; a standby takes over when it runs out, e.g. 3s.")
    var leaderLease = "3s"

    @Option(help: "With PostgreSQL: the HOST:PORT at which workers and clients reach this coordinator, recorded when it leads so that standbys can name it (and its HTTP API at the same host); CAIRN_ADVERTISE works too (default: the --listen address, with this machine's name for 0.0.0.0).")
    var advertise: String?

    @Option(name: .customLong("advertise-http"), help: "With PostgreSQL and --http: the HOST:PORT at which people reach this coordinator's HTTP API and dashboard, where a standby's redirects send a browser while this one leads; CAIRN_ADVERTISE_HTTP works too (default: the --advertise host with the --http port). Set it when the API is published on another port or name, as behind a container's port mapping.")
    var advertiseHTTP: String?

    @Flag(name: .customLong("insecure-no-auth"), help: "Listen on an address other machines can reach without a token. Without a token the coordinator otherwise listens on loopback only: whoever reaches the port can run commands on every worker.")
    var insecureNoAuth = false

    public init() {}

    public mutating func run() async throws {
        ElectedCoordinator.noteInheritedDescriptors()
        Bootstrap.logging(level: logLevel)
        let logger = Logger(label: "cairn.coordinator")
        var config = CoordinatorConfig()
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw ValidationError("--listen must be HOST:PORT, like 127.0.0.1:7400")
        }
        config.host = String(listen[..<colon]).isEmpty ? "0.0.0.0" : String(listen[..<colon])
        config.port = port
        var storage = StorageConfig()
        // A URL it cannot serve is refused here, in one line, before anything is opened.
        let location: StoreLocation
        let db = self.db ?? ProcessInfo.processInfo.environment["CAIRN_DB"] ?? "./data/cairn.db"
        do { location = try StoreLocation(db) } catch { throw ExitCode(Bootstrap.failure("cairn-coordinator", "\(error)")) }
        storage.databasePath = db
        config.keyring = try readKeyring(tokenFile)
        config.insecureNoAuth = insecureNoAuth
        if tlsCert != nil || tlsKey != nil || tlsClientCA != nil {
            guard tlsCert != nil && tlsKey != nil else { throw ValidationError("TLS needs both --tls-cert and --tls-key") }
            let files = TLSFiles(certificate: tlsCert, key: tlsKey, ca: tlsClientCA)
            // Checked before the store is opened, so a refused start leaves no file behind.
            do { _ = try CairnTLS.serverContext(files) } catch { throw ExitCode(Bootstrap.failure("cairn-coordinator", "\(error)")) }
            config.tls = files
        }
        guard let hbi = Durations.seconds(heartbeatInterval), let hbt = Durations.seconds(heartbeatTimeout) else {
            throw ValidationError("heartbeat durations look like 500ms, 1s, 10s")
        }
        config.heartbeatInterval = hbi
        config.heartbeatTimeout = hbt
        config.maxFrameSize = maxFrameSize
        guard let hs = Durations.seconds(handshakeTimeout), hs > 0, let ft = Durations.seconds(frameTimeout), ft > 0 else {
            throw ValidationError("--handshake-timeout and --frame-timeout look like 500ms, 10s, 1m")
        }
        config.handshakeTimeout = hs
        config.frameTimeout = ft
        Self.raiseOpenFileLimit(logger)
        guard poisonAfter >= 1 else { throw ValidationError("--poison-after must be at least 1") }
        config.poisonAfter = poisonAfter
        storage.redisURL = redis
        guard let ttl = Durations.seconds(checkpointTTL), ttl >= 1 else { throw ValidationError("--checkpoint-ttl looks like 30m or 1h") }
        guard let fi = Durations.seconds(flushInterval), fi > 0 else { throw ValidationError("--flush-interval looks like 10ms or 1s") }
        guard flushBatch >= 1 else { throw ValidationError("--flush-batch must be at least 1") }
        storage.hotTier.ttl = ttl
        storage.hotTier.flushInterval = fi
        storage.hotTier.flushBatchRows = flushBatch
        storage.allowRedisEviction = allowRedisEviction
        guard let wal = Durations.seconds(walCheckpointInterval), wal > 0 else { throw ValidationError("--wal-checkpoint-interval looks like 30s") }
        config.walCheckpointInterval = wal
        if let retention {
            guard let r = Durations.seconds(retention), r > 0 else { throw ValidationError("--retention looks like 30d or 12h") }
            config.retention = r
        }
        guard let ri = Durations.seconds(retentionInterval), ri > 0 else { throw ValidationError("--retention-interval looks like 1h or 10m") }
        config.retentionInterval = ri

        let registry = PrometheusCollectorRegistry()
        config.metricsFactory = PrometheusMetricsFactory(registry: registry)
        // Refused before the store is opened, so a refused start leaves no file behind
        // (Coordinator.start decides the same way, and logs the warning for --insecure-no-auth).
        if case .refused(let reason) = ProtectedMode.decide(host: config.host, hasToken: config.keyring != nil, insecureNoAuth: insecureNoAuth) {
            throw ExitCode(Bootstrap.failure("cairn-coordinator", reason))
        }
        var httpAddress: (host: String, port: Int)?
        if let http {
            guard let colon = http.lastIndex(of: ":"), let port = Int(http[http.index(after: colon)...]) else {
                throw ValidationError("--http must be HOST:PORT, like 127.0.0.1:7480")
            }
            let host = http[..<colon].isEmpty ? "0.0.0.0" : String(http[..<colon])
            // The HTTP port lets in whoever reaches it just as the TCP port does.
            if case .refused(let reason) = ProtectedMode.decide(host: host, hasToken: config.keyring != nil, insecureNoAuth: insecureNoAuth) {
                throw ExitCode(Bootstrap.failure("cairn-coordinator", "--http: " + reason))
            }
            httpAddress = (host, port)
        }
        let stores: StoreStack
        do {
            stores = try CoordinatorStack.stores(storage, logger: logger)
        } catch {
            throw ExitCode(Bootstrap.failure("cairn-coordinator", "cannot open the store (\(location)): \(error)"))
        }
        if let election = stores.election {
            guard let lease = Durations.seconds(leaderLease), lease >= 0.5 else { throw ValidationError("--leader-lease looks like 3s (at least 500ms)") }
            let given = advertise ?? ProcessInfo.processInfo.environment["CAIRN_ADVERTISE"]
            if let g = given, g.split(separator: ":").count < 2 || Int(g.split(separator: ":").last ?? "") == nil {
                throw ValidationError("--advertise (or CAIRN_ADVERTISE) must be HOST:PORT, like coordinator-a:7400")
            }
            let advertised = given ?? ElectedCoordinator.advertise(host: config.host, port: config.port)
            // The HTTP API at the advertised host, on its own port.
            let advertisedHost = given.flatMap { g in g.lastIndex(of: ":").map { String(g[..<$0]) } }
            let givenHTTP = advertiseHTTP ?? ProcessInfo.processInfo.environment["CAIRN_ADVERTISE_HTTP"]
            if let g = givenHTTP {
                guard httpAddress != nil else { throw ValidationError("--advertise-http (or CAIRN_ADVERTISE_HTTP) names where the HTTP API is reached: give --http too") }
                guard g.split(separator: ":").count >= 2, Int(g.split(separator: ":").last ?? "") != nil, !g.contains("/") else {
                    throw ValidationError("--advertise-http (or CAIRN_ADVERTISE_HTTP) must be HOST:PORT, like cairn.example.com:7480")
                }
            }
            let httpAdvertised = givenHTTP ?? httpAddress.map { http in
                advertisedHost.map { "\($0):\(http.port)" } ?? ElectedCoordinator.advertise(host: http.host, port: http.port)
            } ?? ""
            let elector = LeaderElector(election: election, lease: lease, address: advertised, http: httpAdvertised, logger: logger,
                                        metrics: config.metricsFactory)
            let active = ActiveCoordinator()
            var services: [any Service] = [ElectedCoordinator(config: config, stores: stores, elector: elector, active: active,
                                                              httpAddress: httpAddress, httpAdvertised: httpAdvertised,
                                                              advertised: advertised, logger: logger),
                                           TokenReloader(keyring: config.keyring, logger: logger)]
            if let metrics {
                do {
                    services.append(try OpsServer(address: metrics, metrics: {
                        await active.current?.refreshMetrics()
                        return registry.emitToString()
                    }, health: { await active.health(elector) }, logger: logger))
                } catch {
                    throw ExitCode(Bootstrap.failure("cairn-coordinator", "--metrics: \(error)"))
                }
            }
            let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
            try await group.run()
            return
        }
        let coordinator = Coordinator(config: config, stores: stores, logger: logger)
        do {
            try await coordinator.start()
        } catch {
            throw ExitCode(Bootstrap.failure("cairn-coordinator", "\(error)"))
        }
        if let p = coordinator.port {
            // A machine-readable line for scripts that start us on port 0.
            FileHandle.standardOutput.write(Data("cairn-coordinator listening on \(config.host):\(p)\n".utf8))
        }
        var services: [any Service] = [coordinator, TokenReloader(keyring: config.keyring, logger: logger)]
        if let (host, port) = httpAddress {
            let api = HTTPAPI(door: coordinator.door, logger: logger)
            let tls: TLSConfiguration?
            do { tls = try config.tls.map(CairnTLS.serverConfiguration) } catch { throw ExitCode(Bootstrap.failure("cairn-coordinator", "\(error)")) }
            services.append(try api.application(host: host, port: port, tls: tls) { bound in
                logger.notice("HTTP API listening", metadata: ["address": "\(host):\(bound)", "tls": "\(tls == nil ? "off" : "on")"])
            })
        }
        if let metrics {
            do {
                services.append(try OpsServer(address: metrics, metrics: {
                    await coordinator.refreshMetrics()
                    return registry.emitToString()
                }, health: { await coordinator.health() }, logger: logger))
            } catch {
                throw ExitCode(Bootstrap.failure("cairn-coordinator", "--metrics: \(error)"))
            }
        }
        // SIGTERM and SIGINT shut down gracefully: stop accepting, flush, close the store.
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }
}

extension CoordinatorCommand {
    /// Every connection is a file descriptor: the soft limit (often 1024) goes up to the hard one,
    /// as servers that hold many sockets do.
    static func raiseOpenFileLimit(_ logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let before = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("raised the open-file limit", metadata: ["from": "\(before)", "to": "\(limit.rlim_max)"])
        }
    }
}

func readKeyring(_ file: String?) throws -> Keyring? {
    do { return try Keyring.load(file: file) } catch { throw ExitCode(Bootstrap.failure("cairn-coordinator", "\(error)")) }
}



/// Re-reads the token file on SIGHUP, so a token is rotated without a restart; a file that does
/// not parse leaves the tokens as they were, and says why. (SIGHUP is trapped even without a
/// token file, so it never ends the coordinator.)
struct TokenReloader: Service {
    let keyring: Keyring?
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            guard let keyring, let file = keyring.file else {
                logger.notice("SIGHUP: there is no token file to re-read (--token-file)")
                continue
            }
            do {
                let summary = try keyring.reload()
                logger.notice("SIGHUP: re-read the token file", metadata: ["file": "\(file)", "tokens": "\(summary)"])
            } catch {
                logger.error("SIGHUP: the token file was not re-read; the tokens stay as they were", metadata: ["file": "\(file)", "error": "\(error)"])
            }
        }
    }
}
