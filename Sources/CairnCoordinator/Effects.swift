import CairnCore
import CairnGraph
import CairnStore
import Logging

/// What the scheduler says and writes while it handles one event, and the facts that go with
/// saying it: the actions out, each write recorded in the `CommitLedger` with what waits on it,
/// notes built only for watched runs, the counters, and the runs that got ready tasks (for the
/// `Dispatcher`). The `Scheduler` and `RunSteps` both write here; neither keeps its own outbox.
struct Effects {
    private(set) var out: [Scheduler.Action] = []
    var ledger: CommitLedger<Scheduler.AfterCommit>
    var counters = Scheduler.Counters()
    /// Runs someone watches: notes are built only for these.
    var watched: Set<String> = []
    /// Someone watches every run: notes are built for all of them.
    var watchAll = false
    /// The time of the event being handled.
    var now: Double = 0
    /// Runs that have ready tasks since the dispatcher last looked, in order.
    var activated: [String] = []

    init(maxQueuedRows: Int) { ledger = CommitLedger(maxQueuedRows: maxQueuedRows) }

    /// Starts on an event that happens at `now`: nothing said yet.
    mutating func begin(at now: Double) {
        self.now = now
        out = []
    }

    mutating func write(_ batch: StoreBatch, _ durability: Durability, then effects: [Scheduler.AfterCommit]) {
        out.append(.write(ledger.record(rowCount: batch.rowCount, then: effects), batch, durability))
    }

    mutating func note(_ run: ActiveRun, kind: String, node: String = "", taskID: String = "", worker: String = "",
                       message: String = "", attempt: Int = 0, step: Int? = nil, final: Bool = false, summary: RunSummary? = nil) {
        guard watchAll || watched.contains(run.record.runID) else { return }
        out.append(.notify(Scheduler.RunNote(runID: run.record.runID, kind: kind, node: node, taskID: taskID, worker: worker, message: message,
                                             attempt: attempt, step: step ?? (run.checkpoint.step + 1), final: final,
                                             summary: summary ?? run.summary)))
    }

    mutating func log(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
        out.append(.log(level, message, metadata))
    }

    mutating func emit(_ action: Scheduler.Action) { out.append(action) }

    mutating func activate(_ runID: String) { activated.append(runID) }

    /// An attempt's row as it ends now.
    func execution(_ run: ActiveRun, _ t: TaskState, worker: String, status: String, error: String?,
                   errorKind: String? = nil, records: TaskRecords = TaskRecords()) -> TaskExecutionRecord {
        TaskExecutionRecord(runID: run.record.runID, taskID: t.planned.id, node: t.planned.node, step: run.checkpoint.step + 1,
                            attempt: t.attempt, worker: worker, status: status, startedAt: t.startedAt, finishedAt: now,
                            error: error, cost: 0, apiCalls: 0, queuedAt: t.queuedAt, errorKind: errorKind, records: records)
    }
}
