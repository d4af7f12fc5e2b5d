import ArgumentParser
import CairnCore
import CairnOps
import CairnOptions
import CairnTLS
import CairnWorker
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import UnixSignals

public struct WorkerCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cairn-worker",
        abstract: "Runs Cairn node tasks for a coordinator: exec programs and the built-in kinds.",
        discussion: """
            A worker is stateless: it connects, announces its slots, runs what it is given, heartbeats, and returns results. Kill it at any moment and its tasks are handed to another worker. Start as many as you like.

            SIGTERM drains it: no new tasks, running ones finish (up to --drain-grace), then it exits.

            Examples:
              cairn-worker --coordinator 127.0.0.1:7400 --slots 4
              CAIRN_TOKEN=secret cairn-worker --coordinator coordinator:7400 --name gpu-1
            """
    )

    @Option(help: "The coordinator's HOST:PORT; with standby coordinators, all of them, comma-separated (HOST:PORT,HOST:PORT): the worker serves whichever is active and follows a fail-over. CAIRN_COORDINATOR works too.")
    var coordinator: String?

    @Option(help: "How many tasks this worker runs at once.")
    var slots = 4

    @Option(help: "A name shown in `cairn workers` (default: host name and process id).")
    var name: String?

    @OptionGroup var credentials: PeerCredentials

    @Option(name: .customLong("peer-timeout"), help: "Heartbeats unacknowledged this long mean the coordinator is gone (a partition, a host down, no FIN): reconnect, e.g. 10s.")
    var peerTimeout = "10s"

    @Option(name: .customLong("cache-dir"), help: "Where graph bundles are cached (default: ~/.cache/cairn/bundles).")
    var cacheDir: String?

    @Option(name: .customLong("drain-grace"), help: "Seconds a draining worker lets running tasks finish.")
    var drainGrace: Double = 30

    @Option(help: "Serve this worker's /metrics (Prometheus) and /healthz on HOST:PORT, e.g. 0.0.0.0:9401.")
    var metrics: String?

    @Option(name: .customLong("state-cache"), help: ArgumentHelp("Channel values kept between a run's tasks, so that only what changed is sent (64MiB; 0 turns it off). CAIRN_STATE_CACHE works too.", valueName: "SIZE"))
    var stateCache: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error.")
    var logLevel = "info"

    public init() {}

    public mutating func run() async throws {
        Bootstrap.logging(level: logLevel)
        let logger = Logger(label: "cairn.worker")
        var config = WorkerConfig()
        let address = coordinator ?? ProcessInfo.processInfo.environment["CAIRN_COORDINATOR"] ?? "127.0.0.1:7400"
        guard let addresses = CoordinatorAddress.list(address) else {
            throw ValidationError("--coordinator must be HOST:PORT, like 127.0.0.1:7400, or several, comma-separated (standby coordinators)")
        }
        guard slots >= 1 && slots <= 1024 else { throw ValidationError("--slots must be from 1 to 1024") }
        config.host = addresses[0].host
        config.port = addresses[0].port
        config.others = Array(addresses.dropFirst())
        config.slots = slots
        config.name = name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        do { config.token = try credentials.token() } catch { throw ExitCode(Bootstrap.failure("cairn-worker", "\(error)")) }
        if let tls = credentials.tls { config.tls = tls }
        if let cacheDir { config.cacheDirectory = cacheDir }
        config.drainGrace = drainGrace
        guard let pt = Durations.seconds(peerTimeout), pt >= 1 else { throw ValidationError("--peer-timeout looks like 10s (at least 1s)") }
        config.peerTimeout = pt
        if let size = stateCache ?? ProcessInfo.processInfo.environment["CAIRN_STATE_CACHE"] {
            guard let bytes = size == "0" ? 0 : ByteSizes.parse(.string(size)) else {
                throw ValidationError("--state-cache must be a size with a unit, like 64MiB, or 0 to turn the cache off")
            }
            config.stateCacheBytes = bytes
        }
        let registry = PrometheusCollectorRegistry()
        config.metricsFactory = PrometheusMetricsFactory(registry: registry)
        let worker = Worker(config: config, logger: logger)
        var services: [any Service] = [worker]
        if let metrics {
            do {
                services.append(try OpsServer(address: metrics, metrics: { registry.emitToString() },
                                              health: { (true, "{\"status\": \"ok\"}") }, logger: logger))
            } catch {
                throw ExitCode(Bootstrap.failure("cairn-worker", "--metrics: \(error)"))
            }
        }
        // SIGTERM and SIGINT drain: no new tasks, running ones finish, then the worker exits.
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch let e as WorkerFatalError {
            throw ExitCode(Bootstrap.failure("cairn-worker", e.message))
        } catch let e as ServiceGroupError {
            throw ExitCode(Bootstrap.failure("cairn-worker", "\(e)"))
        }
    }
}

