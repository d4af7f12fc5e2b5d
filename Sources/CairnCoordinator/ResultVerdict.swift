import CairnCore
import CairnGraph
import CairnStore

/// What a worker's result under its task's current lease amounts to, as a pure function of the
/// report, the task and its run's graph: done (the outcome to keep, with a question's id fixed),
/// an attempt that failed (its node's retry policy decides what follows), or a state the worker
/// could not build from its cache (the task goes out again whole, unless that has happened as
/// often as a task may lose workers). `ResultVerdictTests`.
enum ResultVerdict {
    case done(TaskOutcome, TaskRecords)
    case failed(message: String, kind: String, nonRetryable: Bool, records: TaskRecords)
    case resendWhole(String)

    init(_ r: TaskReport, task t: TaskState, run: ActiveRun, poisonAfter: Int) {
        if let f = r.failure, f.kind == "state_cache", t.lostWorkers + 1 < poisonAfter {
            self = .resendWhole(f.message)
            return
        }
        let node = t.planned.node
        let records: TaskRecords
        switch r.records {
        case .success(let x): records = x
        case .failure(let error):
            self = .failed(message: "node '\(node)' reported bad records: \(error)", kind: "bad_result", nonRetryable: true, records: r.figures)
            return
        }
        if let f = r.failure {
            self = .failed(message: f.message, kind: f.kind, nonRetryable: f.nonRetryable, records: records)
            return
        }
        var outcome: TaskOutcome
        switch r.produced {
        case .success(let p):
            outcome = TaskOutcome(taskID: t.planned.id, node: node, writes: p.writes, goto: p.goto, sends: p.sends, interrupt: p.interrupt)
        case .failure(let error):
            self = .failed(message: "node '\(node)' returned a bad result: \(error)", kind: "bad_result", nonRetryable: true, records: records)
            return
        }
        if let problem = run.planner.validate(outcome) {
            self = .failed(message: problem.message, kind: "bad_result", nonRetryable: true, records: records)
            return
        }
        if outcome.interrupt != nil {
            // A question for a person: its id is fixed now, from where it was asked. The task's
            // writes are not kept: it runs again, with the answer, when the run is resumed.
            outcome.interruptID = PendingInterrupt.id(checkpointID: run.checkpoint.checkpointID, key: t.planned.id)
            outcome.writes = []
        }
        self = .done(outcome, records)
    }
}
