import CairnStore

/// Which finished runs a cleanup deletes: a pure decision over the runs' summaries and the
/// clock, tested without a store (`cairn cleanup` and `--retention` both carry it out).
///
/// A run is deleted when it matches the filters (status, graph), finished at least `olderThan`
/// seconds ago, and none of these keeps it:
/// - it is not finished (queued, running, paused), or the coordinator is working on it;
/// - it is pinned (`cairn pin`);
/// - it is among the `keepLatest` newest matching runs of its graph;
/// - a run that is not deleted was forked from it (a fork reads its parent's values in place).
public struct RetentionPolicy: Sendable, Equatable {
    public var olderThan: Double
    public var statuses: Set<RunStatus>
    public var graph: String?
    public var keepLatest: Int

    public static let finished: Set<RunStatus> = [.completed, .failed, .cancelled]

    public init(olderThan: Double, statuses: Set<RunStatus> = Self.finished, graph: String? = nil, keepLatest: Int = 0) {
        self.olderThan = olderThan; self.statuses = statuses; self.graph = graph; self.keepLatest = keepLatest
    }

    public struct Run: Sendable, Equatable {
        public var runID: String
        public var graph: String
        public var status: RunStatus
        public var createdAt: Double
        /// When it finished (for a run without a finish time, when it last changed).
        public var finishedAt: Double
        public var pinned: Bool
        /// The run it was forked from, whose values it reads.
        public var parent: String?

        public init(runID: String, graph: String, status: RunStatus, createdAt: Double, finishedAt: Double, pinned: Bool, parent: String?) {
            self.runID = runID; self.graph = graph; self.status = status; self.createdAt = createdAt
            self.finishedAt = finishedAt; self.pinned = pinned; self.parent = parent
        }

        public init(_ r: RunRecord) {
            self.init(runID: r.runID, graph: r.graphName, status: r.status, createdAt: r.createdAt, finishedAt: r.finishedAt ?? r.updatedAt,
                      pinned: r.pinned, parent: r.forkOrigin?.runID)
        }
    }

    public struct Decision: Sendable {
        /// Oldest first.
        public var delete: [Run] = []
        /// Runs that matched the filters and are old enough, with why each stays.
        public var kept: [(run: Run, reason: String)] = []
    }

    /// `active`: runs the coordinator holds right now (scheduled, being edited or submitted).
    public func decide(_ runs: [Run], active: Set<String>, now: Double) -> Decision {
        var decision = Decision()
        let matching = runs.filter { statuses.contains($0.status) && $0.status.isFinished && (graph == nil || $0.graph == graph) }
        // The newest `keepLatest` matching runs of each graph stay, whatever their age.
        var latest = Set<String>()
        if keepLatest > 0 {
            for (_, group) in Dictionary(grouping: matching, by: \.graph) {
                let newest = group.sorted { ($0.createdAt, $0.runID) > ($1.createdAt, $1.runID) }.prefix(keepLatest)
                latest.formUnion(newest.map(\.runID))
            }
        }
        var chosen: [Run] = []
        var reasons: [String: String] = [:]
        for run in matching where now - run.finishedAt >= olderThan {
            if active.contains(run.runID) { reasons[run.runID] = "the coordinator is working on it" }
            else if run.pinned { reasons[run.runID] = "pinned" }
            else if latest.contains(run.runID) { reasons[run.runID] = "among the \(keepLatest) newest of graph \(run.graph)" }
            else { chosen.append(run) }
        }
        // A run stays while a run that stays was forked from it; until nothing changes, since
        // keeping a fork keeps its parent, and so on up.
        var deleting = Set(chosen.map(\.runID))
        var changed = true
        while changed {
            changed = false
            for run in runs where !deleting.contains(run.runID) {
                if let parent = run.parent, deleting.remove(parent) != nil {
                    reasons[parent] = "run \(run.runID) was forked from it"
                    changed = true
                }
            }
        }
        decision.delete = chosen.filter { deleting.contains($0.runID) }.sorted { ($0.finishedAt, $0.runID) < ($1.finishedAt, $1.runID) }
        for run in matching {
            if let why = reasons[run.runID] { decision.kept.append((run, why)) }
        }
        return decision
    }
}
