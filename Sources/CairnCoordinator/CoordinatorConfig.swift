import CairnCore
import CairnTLS
import CairnProtocol
import CoreMetrics

/// Everything the coordinator's server and scheduler need; its stores come from `StorageConfig`
/// (CairnStack). The executable builds both from flags and environment.
public struct CoordinatorConfig: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 7400
    /// TLS on the port: the coordinator's certificate and key, and with `ca` mutual TLS (nil: plaintext).
    public var tls: TLSFiles?
    /// The tokens peers must present, each with its role (see `Keyring`); nil asks for none.
    public var keyring: Keyring?
    /// Listen on a non-loopback address without a token anyway (`--insecure-no-auth`; see `ProtectedMode`).
    public var insecureNoAuth = false
    public var maxFrameSize: Int = Frame.defaultMaxSize
    /// How often workers are asked to heartbeat, and how long silence means a worker is lost.
    public var heartbeatInterval: Double = 1.0
    public var heartbeatTimeout: Double = 10.0
    /// A task whose workers died this many times fails its run as poisonous.
    public var poisonAfter: Int = 3
    /// Rows queued for the store and not yet durable past which no new work is handed out.
    public var maxQueuedRows: Int = 50_000
    /// A command whose write waits this long while the store refuses writes is answered "accepted,
    /// not yet recorded" (it takes effect once the store heals) instead of leaving its client waiting.
    public var unconfirmedAfter: Double = 3.0
    /// Past a node's timeout, how long the coordinator waits for the worker's own timeout to report.
    public var timeoutGrace: Double = 5.0
    /// How long a new connection may take to say Hello (and a Hello is at most 64 KiB).
    public var handshakeTimeout: Double = 10.0
    /// How long a frame, once its first byte has arrived, may take to arrive whole: a peer that
    /// trickles a large frame is cut off (`ConnectionWatch`).
    public var frameTimeout: Double = 60.0
    /// Append channels store only what a step appended, and a full snapshot once the list has
    /// doubled since the last one (at least `appendSnapshotMinItems` items later): snapshots then
    /// cost at most twice the list, so a step's storage does not grow with the list's length.
    public var appendSnapshotMinItems: Int = 32
    /// The longest chain of deltas a read may walk: past it a snapshot is written anyway.
    public var appendMaxChain: Int = 4_096
    /// How often the SQLite write-ahead log is checkpointed (truncated).
    public var walCheckpointInterval: Double = 30.0
    /// `--retention`: finished runs older than this many seconds are deleted on a schedule
    /// (nil: kept until `cairn cleanup`).
    public var retention: Double?
    /// How often the retention cleanup runs (the first pass runs soon after start).
    public var retentionInterval: Double = 3_600
    /// On shutdown, how long to wait for queued writes to commit (a store refusing writes).
    public var shutdownWriteTimeout: Double = 30.0
    /// The epoch leases and workers see: the lead's epoch when standby coordinators share the
    /// store (PostgreSQL), else the start time in milliseconds.
    public var epoch: UInt64?

    /// Where metrics go (the executable bootstraps Prometheus; the default discards them).
    public var metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance

    public init() {}
}
