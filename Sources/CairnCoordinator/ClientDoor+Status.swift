import CairnProtocol
import CairnStore
import CoreMetrics
import Foundation

/// `cairn workers` and `cairn stats` (and the gauges /metrics shows): the engine's report at one
/// instant, the store's run counts and the hot tier's state, as the protocol's messages.
extension ClientDoor {
    func workerList() async -> Cairn_V1_WorkerList {
        let report = await engine.report()
        var list = Cairn_V1_WorkerList()
        list.auth = config.keyring == nil ? "none" : "token"
        for w in report.workers.sorted(by: { ($0.name, $0.id) < ($1.name, $1.id) }) {
            var s = Cairn_V1_WorkerStatus()
            s.workerID = w.id
            s.name = w.name
            s.slots = UInt32(w.slots)
            s.running = UInt32(w.running)
            s.kinds = w.kinds
            s.connectedAt = w.connectedAt
            s.lastHeartbeat = w.lastHeartbeat
            s.tasksDone = UInt64(w.tasksDone)
            s.state = w.draining ? "draining" : (s.running == 0 ? "idle" : "busy")
            s.address = w.address
            list.workers.append(s)
        }
        return list
    }

    func stats() async -> Cairn_V1_Stats {
        var s = Cairn_V1_Stats()
        do {
            for (k, v) in try await store.runCounts() { s.runsByStatus[k.rawValue] = UInt64(v) }
        } catch {
            s.storeError = "cannot count runs: \(error)"
        }
        let report = await engine.report()
        let c = report.counters
        s.tasksDispatched = c.dispatched
        s.tasksCompleted = c.completed
        s.tasksFailed = c.failed
        s.tasksRetried = c.retried
        s.queueDepth = UInt64(report.queueDepth)
        s.workers = UInt32(report.workers.count)
        s.staleResults = c.stale
        s.tasksReassigned = c.reassigned
        s.leasesExpired = c.leasesExpired
        s.leasesFenced = c.leasesFenced
        s.tasksPoisoned = c.poisoned
        s.stateBytesSent = c.stateBytesSent
        s.stateBytesKept = c.stateBytesKept
        s.storeBatches = report.storeBatches
        s.storeRows = report.storeRows
        if let failure = report.storeFailure {
            s.storeError = report.storeDamaged
                ? "the store is damaged and takes no more writes (new work is refused; reads of what is intact go on): \(failure)"
                : "writes are failing and retried, new work is held: \(failure)"
        }
        s.uptimeSeconds = Date().timeIntervalSince(report.startedAt)
        s.auth = config.keyring == nil ? "none" : "token"
        // Only the active coordinator of standbys serves stats (a standby answers nothing but where it is).
        if let epoch = config.epoch {
            s.role = "active"
            s.leaderEpoch = epoch
        }
        s.walBytes = UInt64(max(0, report.walBytes))
        if let hot = commands.context.hotTier {
            let st = await hot.tierReport()
            s.redisConfigured = true
            s.redisUp = st.redisUp
            s.redisFailures = st.redisFailures
            s.hotWaitingBatches = UInt32(st.waitingBatches)
            s.hotOldestSeconds = st.oldestAge
            if let e = st.lastFlushError { s.storeError = e }
            s.hotBatches = st.hotBatches
            s.flushes = st.flushes
        }
        return s
    }

    /// Brings the gauges up to date (called when /metrics is scraped) and returns the stats.
    func refreshGauges() async -> Cairn_V1_Stats {
        let s = await stats()
        let metrics = engine.metrics
        for (status, gauge) in metrics.runs { gauge.record(Double(s.runsByStatus[status] ?? 0)) }
        metrics.queueDepth.record(Double(s.queueDepth))
        metrics.workers.record(Double(s.workers))
        metrics.walBytes.record(Double(s.walBytes))
        metrics.redisUp.record(s.redisConfigured ? (s.redisUp ? 1 : 0) : 0)
        metrics.flushLag.record(s.hotOldestSeconds)
        return s
    }
}
