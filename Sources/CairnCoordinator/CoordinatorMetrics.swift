import CairnProtocol
import CoreMetrics

/// The coordinator's metrics, created from the `MetricsFactory` the executable bootstraps
/// (Prometheus in `cairn-coordinator`; a no-op one in tests).
struct CoordinatorMetrics: Sendable {
    let tasksDispatched: Counter
    let tasksCompleted: Counter
    let tasksFailed: Counter
    let tasksRetried: Counter
    let tasksReassigned: Counter
    let staleResults: Counter
    let leasesExpired: Counter
    let checkpointWrites: Counter
    let taskLatency: Timer
    let queueDepth: Gauge
    let watchersDropped: Counter
    let workers: Gauge
    let redisUp: Gauge
    let flushLag: Gauge
    let walBytes: Gauge
    let runs: [String: Gauge]
    /// Connections cut off by `ConnectionWatch`, by why: no Hello in time, a Hello too large, a frame trickled.
    let connectionsCut: [Cairn_V1_ErrorCode: Counter]

    init(factory: any MetricsFactory) {
        tasksDispatched = Counter(label: "cairn_tasks_dispatched_total", factory: factory)
        tasksCompleted = Counter(label: "cairn_tasks_completed_total", factory: factory)
        tasksFailed = Counter(label: "cairn_tasks_failed_total", factory: factory)
        tasksRetried = Counter(label: "cairn_tasks_retried_total", factory: factory)
        tasksReassigned = Counter(label: "cairn_tasks_reassigned_total", factory: factory)
        staleResults = Counter(label: "cairn_stale_results_rejected_total", factory: factory)
        leasesExpired = Counter(label: "cairn_leases_expired_total", factory: factory)
        checkpointWrites = Counter(label: "cairn_checkpoints_written_total", factory: factory)
        taskLatency = Timer(label: "cairn_task_duration_seconds", factory: factory)
        queueDepth = Gauge(label: "cairn_queue_depth", factory: factory)
        watchersDropped = Counter(label: "cairn_watchers_dropped_total", factory: factory)
        workers = Gauge(label: "cairn_workers_connected", factory: factory)
        redisUp = Gauge(label: "cairn_redis_up", factory: factory)
        flushLag = Gauge(label: "cairn_hot_tier_flush_lag_seconds", factory: factory)
        walBytes = Gauge(label: "cairn_sqlite_wal_bytes", factory: factory)
        var runs: [String: Gauge] = [:]
        for status in ["queued", "running", "paused", "completed", "failed", "cancelled"] {
            runs[status] = Gauge(label: "cairn_runs", dimensions: [("status", status)], factory: factory)
        }
        self.runs = runs
        connectionsCut = [
            .errorUnauthenticated: Counter(label: "cairn_connections_cut_total", dimensions: [("why", "no_hello")], factory: factory),
            .errorFrameTooLarge: Counter(label: "cairn_connections_cut_total", dimensions: [("why", "hello_too_large")], factory: factory),
            .errorProtocol: Counter(label: "cairn_connections_cut_total", dimensions: [("why", "frame_too_slow")], factory: factory),
        ]
    }
}
