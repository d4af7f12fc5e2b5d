import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation

/// A run for the engine to hold, as a command decided it (a submit, a recovery, an edit that
/// goes on): the engine builds its `ActiveRun` and hands it to the scheduler.
struct RunStart: Sendable {
    var record: RunRecord
    var graph: Graph
    var bundleHash: String?
    var checkpoint: CheckpointRecord
    var state: [String: JSONValue]
    var joins: [String: [String]]
    /// The step to begin now; nil: a recovered run (the scheduler plans from its checkpoint) or
    /// a run that waits (paused before its first node).
    var step: (planned: [PlannedTask], done: [String: TaskOutcome])?
    /// Its append channels' chains: none known (the next write of each is a full value), or a fork's.
    var chains = AppendChains()
}

/// What the run commands ask of the engine: claims on run ids, the runs it holds, and runs and
/// rows to take on. Each call is one turn of the engine's loop: what it checks holds until it
/// returns.
extension Engine {
    // MARK: claims

    /// Takes `runID` for a submit or an edit, or throws why not: the coordinator refuses new
    /// work (`doing` names it; nil: not asked), or another request holds the id.
    func claim(_ runID: String, _ kind: RunClaims.Kind, doing what: String?) throws {
        if let what, let why = scheduler.refusal(what) { throw EngineError(.errorUnavailable, why) }
        if let why = claims.claim(runID, kind, active: scheduler.runs[runID] != nil) { throw EngineError(.errorConflict, why) }
    }

    func release(_ runID: String, _ kind: RunClaims.Kind) { claims.release(runID, kind) }

    /// Takes for an edit every id no run held now and no request holds (a cleanup's deletes);
    /// returns those taken.
    func claimFree(_ runIDs: [String]) -> [String] {
        claims.claimFree(runIDs.filter { scheduler.runs[$0] == nil })
    }

    func releaseAll(_ runIDs: [String]) { claims.releaseAll(runIDs) }

    func isClaimed(_ runID: String) -> Bool { claims.isClaimed(runID) }

    /// Runs held right now or being changed: never deleted, exported or overwritten under them.
    var busyRuns: Set<String> { Set(scheduler.runs.keys).union(claims.all) }

    /// Why new work is refused right now (the store refuses writes, the coordinator stops), if it is.
    func refusal(_ what: String) -> String? { scheduler.refusal(what) }

    /// The node kinds the connected workers run besides the built-in ones.
    var customKinds: Set<String> { scheduler.customKinds }

    // MARK: the runs held

    /// A held run's status (nil: not held, so its stored row is what it is).
    func activeStatus(_ runID: String) -> RunStatus? { scheduler.runs[runID]?.record.status }

    /// A held run's summary as clients see it.
    func activeInfo(_ runID: String) -> Cairn_V1_RunInfo? { scheduler.runs[runID].map(runInfo) }

    func activeGraph(_ runID: String) -> Graph? { scheduler.runs[runID]?.graph }

    func runInfo(_ run: ActiveRun) -> Cairn_V1_RunInfo { RunReads.info(run.summary) }

    // MARK: taking runs on

    /// Holds a submitted run once its first rows are durable (the writer retries until they are).
    func submitted(_ start: RunStart, _ batch: StoreBatch, unconfirmed what: String) async throws -> Cairn_V1_RunInfo {
        let run = hold(start)
        try await ask({ .runSubmitted(run, batch, reply: $0) }, unconfirmed: what, runID: start.record.runID)
        return runInfo(run)
    }

    /// Holds an edited run (resumed, rewound, forked) from its new checkpoint once `batch` is durable.
    func continued(_ start: RunStart, _ batch: StoreBatch, unconfirmed what: String) async throws -> Cairn_V1_RunInfo {
        let run = hold(start)
        try await ask({ .runContinued(run, batch, reply: $0) }, unconfirmed: what, runID: start.record.runID)
        return runInfo(run)
    }

    /// Holds a run found unfinished at the start, with the tasks whose writes are stored done.
    func recovered(_ start: RunStart, done: [String: TaskOutcome]) {
        handle(.runRecovered(hold(start), done: done))
    }

    /// Writes rows that start nothing (an edit of a run that does not go on, a run marked failed).
    func record(_ batch: StoreBatch, unconfirmed what: String?, runID: String) async throws {
        if let what { try await ask({ .record(batch, reply: $0) }, unconfirmed: what, runID: runID) } else { try await ask { .record(batch, reply: $0) } }
    }

    /// Cancels a held run that has not finished; nil when no such run is held.
    func cancelActive(_ runID: String) async throws -> Cairn_V1_RunInfo? {
        guard let run = scheduler.runs[runID], !run.record.status.isFinished else { return nil }
        try await ask({ .cancel(runID: runID, reply: $0) }, unconfirmed: "run \(runID) is cancelled", runID: runID)
        return runInfo(run)
    }

    private func hold(_ s: RunStart) -> ActiveRun {
        let run = ActiveRun(record: s.record, graph: s.graph, bundleHash: s.bundleHash, checkpoint: s.checkpoint, state: s.state, joins: s.joins)
        run.chains = s.chains
        if let step = s.step { run.beginStep(planned: step.planned, done: step.done, at: now) }
        return run
    }

    // MARK: the writer

    /// Waits until every write queued so far has committed.
    func writesCommitted() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in writer.whenIdle { c.resume() } }
    }

    /// Commits a batch durably through the one writer, after everything queued before it.
    func commitDurably(_ batch: StoreBatch) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            writer.enqueue(batch, durability: .sync) { c.resume(with: $0) }
        }
    }
}
