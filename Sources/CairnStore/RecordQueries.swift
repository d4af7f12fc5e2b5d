import CairnCore

/// One of the operator's questions about stored runs (`cairn failures`, `stats`, `assets`,
/// `tasks`, `waiting`, `workers --history`). Each is answered by the store with the same SQL the
/// README documents over its views, so the command and a `sqlite3` session agree.
public struct RecordsQuery: Sendable, Equatable {
    public enum Report: String, Sendable, CaseIterable {
        /// Runs that failed: the failing node, its error, the attempts of that task.
        case failures
        /// Duration p50/p95/max of completed attempts, grouped by `by`.
        case durations
        /// Cost, API calls and tokens, grouped by `by`.
        case cost
        /// Assets a run produced, or the run and node that produced an asset with `uri`.
        case assets
        /// Every attempt of a run (or of one task), with worker, timings, outcome and error.
        case attempts
        /// Paused runs waiting for an answer: since when, and how often resumed.
        case waiting
        /// Per worker: tasks done, failures, lost and stale attempts.
        case workers
    }

    public enum Grouping: String, Sendable, CaseIterable {
        case run, node, graph, model, day, worker
    }

    public var report: Report
    public var by: Grouping
    /// Only runs created at or after this time (seconds since 1970); nil: all.
    public var since: Double?
    public var graph: String?
    public var runID: String?
    public var taskID: String?
    public var node: String?
    public var uri: String?
    public var limit: Int

    public init(report: Report, by: Grouping = .node, since: Double? = nil, graph: String? = nil, runID: String? = nil,
                taskID: String? = nil, node: String? = nil, uri: String? = nil, limit: Int = 1000) {
        self.report = report; self.by = by; self.since = since; self.graph = graph; self.runID = runID
        self.taskID = taskID; self.node = node; self.uri = uri; self.limit = limit
    }
}

/// A report's answer: named columns and rows of JSON values (numbers, strings, null).
public struct RecordsTable: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[JSONValue]]
    public init(columns: [String], rows: [[JSONValue]]) { self.columns = columns; self.rows = rows }

    /// The rows as objects keyed by column, as `--json` prints them.
    public var objects: [JSONValue] {
        rows.map { row in .object(Dictionary(uniqueKeysWithValues: zip(columns, row))) }
    }
}

public struct RecordsUnsupported: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "this store cannot answer record queries (they are SQL over the SQLite store)" }
}
