import CairnProtocol
import CairnStore
import Foundation
import NIOCore

/// Watchers: the engine hands the scheduler's notes to the one `EventHub` and tells the
/// scheduler which runs are watched (it builds task events only for those).
extension Engine {
    /// Subscribes to a run's events; nil when the run is not active (the caller reports its final state).
    func subscribe(_ runID: String, finalOnly: Bool = false) -> (UUID, AsyncStream<Cairn_V1_RunEvent>)? {
        guard let run = scheduler.runs[runID] else { return nil }
        scheduler.watched.insert(runID)
        return hub.subscribe(runID, finalOnly: finalOnly, snapshot: snapshot(run))
    }

    /// Subscribes to every event of every run from now on (each run's `final` marks that run's
    /// end; the stream goes on). `snapshots` tells where each run stands.
    /// `conflated`: a run's task events and checkpoints held back to the newest per 20 ms (`EventConflation`).
    func subscribeAll(conflated: Bool = false) -> (UUID, AsyncStream<Cairn_V1_RunEvent>) {
        scheduler.watchAll = true
        return hub.subscribeAll(conflated: conflated)
    }

    /// A `snapshot` event for each run the coordinator holds, oldest first.
    func snapshots() -> [Cairn_V1_RunEvent] {
        scheduler.runs.values.sorted(by: { $0.record.createdAt < $1.record.createdAt }).map(snapshot)
    }

    private func snapshot(_ run: ActiveRun) -> Cairn_V1_RunEvent {
        var e = Cairn_V1_RunEvent()
        e.runID = run.record.runID
        e.kind = "snapshot"
        e.step = UInt32(run.checkpoint.step + 1)
        e.run = runInfo(run)
        return e
    }

    func unsubscribeAll(_ id: UUID) {
        hub.unsubscribeAll(id)
        scheduler.watchAll = hub.watchesEveryRun
    }

    func unsubscribe(_ runID: String, _ id: UUID) {
        hub.unsubscribe(runID, id)
        if !hub.watches(runID) { scheduler.watched.remove(runID) }
    }

    /// A note from the scheduler, to its watchers; a window of held-back events closes 20 ms after it opens.
    func publish(_ note: Scheduler.RunNote) {
        if hub.publish(note) {
            loop.scheduleTask(in: .milliseconds(Int64(EventConflation<Scheduler.RunNote>.window * 1000))) {
                self.assumeIsolated { $0.flushHeld() }
            }
        }
        scheduler.watchAll = hub.watchesEveryRun
    }

    func flushHeld() {
        hub.flushHeld()
        scheduler.watchAll = hub.watchesEveryRun
    }

    /// What `cairn stats` and `cairn workers` read of the engine, at one instant.
    func report() -> EngineReport {
        EngineReport(counters: scheduler.counters, queueDepth: scheduler.queueDepth,
                     workers: scheduler.workers.values.map { w in
                         EngineReport.Worker(id: w.info.id, name: w.info.name, slots: w.info.slots,
                                             running: scheduler.leases.count(heldBy: w.info.id), kinds: w.info.kinds.sorted(),
                                             connectedAt: w.connectedAt, lastHeartbeat: w.lastHeartbeat, tasksDone: w.tasksDone,
                                             draining: w.draining, address: w.info.address)
                     },
                     storeBatches: writer.transactions, storeRows: writer.rowsWritten, storeFailure: writer.failure,
                     storeDamaged: writer.stopped != nil, startedAt: startedAt, walBytes: walBytes())
    }
}

/// The engine's counters and workers at one instant, for the doors' stats and worker lists.
struct EngineReport: Sendable {
    struct Worker: Sendable {
        var id, name: String
        var slots, running: Int
        var kinds: [String]
        var connectedAt, lastHeartbeat: Double
        var tasksDone: Int
        var draining: Bool
        var address: String
    }

    var counters: Scheduler.Counters
    var queueDepth: Int
    var workers: [Worker]
    var storeBatches, storeRows: UInt64
    var storeFailure: String?
    var storeDamaged: Bool
    var startedAt: Date
    var walBytes: Int64
}
