import CairnCore
import CairnGraph
import CairnStore
import Logging

/// The scheduler's vocabulary: the events it is told, the actions it answers with, what a
/// watcher hears, its counters, and the workers and durable effects it keeps track of.
extension Scheduler {
    struct WorkerInfo: Sendable, Equatable {
        var id: String
        var name: String
        var slots: Int
        var kinds: Set<String>
        var address: String
        /// The worker's state cache budget (0: it keeps nothing; each task gets its state whole).
        var stateCacheBytes: Int = 0
    }

    enum Event {
        case workerJoined(WorkerInfo)
        /// The leases a worker reports running, with any progress since its last heartbeat.
        case heartbeat(workerID: String, tasks: [(lease: String, progress: [UInt8])])
        case result(workerID: String, TaskReport)
        case workerLost(workerID: String, reason: String)
        case workerDraining(workerID: String)
        /// Time passed: silent workers, leases past their deadline, retries due.
        case tick
        case writeCommitted(WriteID)
        /// The writer could not commit (it retries the same batch): hold new work.
        case writeFailed(String, permanent: Bool = false)
        /// The store stopped taking writes for good (a damaged file): this write never commits.
        case writeAbandoned(WriteID)
        /// A new run: its first rows are written, then it starts and `reply` is answered.
        case runSubmitted(ActiveRun, StoreBatch, reply: ReplyID)
        /// A run picked up after a restart, with the tasks of its step already done.
        case runRecovered(ActiveRun, done: [String: TaskOutcome])
        /// A stored run goes on from a new checkpoint (resume, fork, rewind): its rows are
        /// written durably, then it starts (its step already begun) and `reply` is answered.
        case runContinued(ActiveRun, StoreBatch, reply: ReplyID)
        case cancel(runID: String, reply: ReplyID)
        /// Rows of the engine's own (a stored run cancelled, a run that could not be recovered).
        case record(StoreBatch, reply: ReplyID?)
        /// Shutting down: no new work is handed out.
        case stop
    }

    enum Action {
        case dispatch(workerID: String, Assignment)
        case write(WriteID, StoreBatch, Durability)
        case ack(workerID: String, taskID: String, accepted: Bool)
        case notify(RunNote)
        /// The run left memory (finished or paused) after its final note: end its watchers.
        case closed(runID: String)
        /// A run is paused, durably (its record as written): arm its questions' deadlines.
        case paused(RunRecord)
        case reply(ReplyID)
        /// What `reply` waited for will never happen (the store is damaged): answer with this error.
        case replyFailed(ReplyID, String)
        /// Send `.tick` at this time (a retry falls due).
        case wake(at: Double)
        case taskLatency(seconds: Double)
        case log(Logger.Level, String, Logger.Metadata)
    }

    /// What a run's watchers are told.
    struct RunNote {
        var runID: String
        var kind: String
        var node = ""
        var taskID = ""
        var worker = ""
        var message = ""
        var attempt = 0
        var step: Int
        var final = false
        var summary: RunSummary
    }

    struct Counters: Equatable, Sendable {
        var dispatched: UInt64 = 0
        var completed: UInt64 = 0
        var failed: UInt64 = 0
        var retried: UInt64 = 0
        var reassigned: UInt64 = 0
        var poisoned: UInt64 = 0
        var stale: UInt64 = 0
        var leasesFenced: UInt64 = 0
        var leasesExpired: UInt64 = 0
        var checkpoints: UInt64 = 0
        /// Bytes of channel values put in assignments, and those workers already held (not sent).
        var stateBytesSent: UInt64 = 0
        var stateBytesKept: UInt64 = 0
    }

    /// A worker as the scheduler sees it: its slots (the leases it holds are in `leases`).
    final class WorkerState {
        let info: WorkerInfo
        let connectedAt: Double
        var lastHeartbeat: Double
        var tasksDone = 0
        var draining = false
        /// What its state cache holds (nil: it has none).
        var mirror: StateMirror?

        init(_ info: WorkerInfo, now: Double) {
            self.info = info; self.connectedAt = now; self.lastHeartbeat = now
            if info.stateCacheBytes > 0 { mirror = StateMirror(budget: info.stateCacheBytes) }
        }

        func accepts(_ kind: String) -> Bool { info.kinds.contains(kind) || info.kinds.contains("*") }

        /// Its row in the store (`cairn workers` after it has gone, `cairn records`).
        func batch(disconnected: Double?) -> StoreBatch {
            var b = StoreBatch()
            b.workers.append(WorkerRecord(workerID: info.id, name: info.name, slots: info.slots, kinds: info.kinds.sorted(),
                                          address: info.address, connectedAt: connectedAt, lastSeen: lastHeartbeat,
                                          disconnectedAt: disconnected, tasksDone: tasksDone))
            return b
        }
    }

    /// How a lease that is no longer current ended, so a late result can be told why.
    typealias LeaseEnd = LeaseTable.End

    /// What waits for a write to be durable.
    enum AfterCommit {
        case ack(workerID: String, taskID: String)
        case stepRecorded(ActiveRun, record: RunRecord, step: Int, next: [String], status: RunStatus, reason: String?)
        case runEnded(ActiveRun, record: RunRecord, status: RunStatus, error: String?)
        case begin(ActiveRun)
        /// A queued run's first task is with a worker, and its row says running.
        case running(ActiveRun)
        case reply(ReplyID)
    }
}
