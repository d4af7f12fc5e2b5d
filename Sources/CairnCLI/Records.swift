import ArgumentParser
import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// The operator's questions about stored runs. Every command here asks the coordinator one
/// `RecordsRequest`; the coordinator answers it with the SQL the README documents, so what these
/// print is what `sqlite3` on the store prints.
enum RecordsReport {
    static func request(_ report: String, by: String = "", since: String? = nil, graph: String? = nil, run: String? = nil,
                        task: String? = nil, node: String? = nil, uri: String? = nil, limit: Int = 1000) throws -> Cairn_V1_RecordsRequest {
        var r = Cairn_V1_RecordsRequest()
        r.report = report
        r.by = by
        if let since {
            guard let ms = Durations.parseMillis(since), ms > 0 else { throw ValidationError("--since takes a duration like 30m, 24h or 7d") }
            r.sinceMs = UInt64(ms)
        }
        r.graph = graph ?? ""; r.runID = run ?? ""; r.taskID = task ?? ""; r.node = node ?? ""; r.uri = uri ?? ""
        r.limit = UInt32(clamping: max(1, limit))
        return r
    }

    static func objects(_ t: (columns: [String], rows: [[JSONValue]])) -> JSONValue {
        .array(t.rows.map { .object(Dictionary(uniqueKeysWithValues: zip(t.columns, $0))) })
    }

    /// A cell as a person reads it: times as dates, durations with units, long text cut.
    static func cell(_ column: String, _ v: JSONValue) -> String {
        switch v {
        case .null: return "-"
        case .string(let s):
            let one = s.replacingOccurrences(of: "\n", with: " ⏎ ")
            return one.count > 80 ? String(one.prefix(77)) + "…" : one
        case .int(let i):
            if column.hasSuffix("_at") || column == "waiting_since" { return Output.time(Double(i)) }
            return "\(i)"
        case .double(let d):
            if column.hasSuffix("_at") || column == "waiting_since" { return Output.time(d) }
            if column.hasSuffix("_ms") { return d < 1000 ? String(format: "%.2fms", d) : Output.duration(d / 1000) }
            if column.hasSuffix("_s") { return Output.duration(d) }
            if column == "cost" { return String(format: "%.4f", d) }
            return d == d.rounded() && abs(d) < 1e15 ? "\(Int64(d))" : String(format: "%.3f", d)
        default: return String(decoding: v.jsonBytes(), as: UTF8.self)
        }
    }

    /// The table with only these columns (those it has), in this order.
    static func only(_ keep: [String], _ t: (columns: [String], rows: [[JSONValue]])) -> (columns: [String], rows: [[JSONValue]]) {
        let idx = keep.compactMap { t.columns.firstIndex(of: $0) }
        return (idx.map { t.columns[$0] }, t.rows.map { r in idx.map { r[$0] } })
    }

    /// Asks one report and prints it: JSON objects with --json, else a table (of `keep`'s columns
    /// when given) or `empty` when there are no rows.
    static func show(_ req: Cairn_V1_RecordsRequest, _ connection: Connection, keep: [String]? = nil, empty: String) async throws {
        let t = try await connection.with { try await $0.records(req) }
        if connection.json { Output.printJSON(objects(t)); return }
        print(keep.map { only($0, t) } ?? t, empty: empty)
    }

    static func print(_ t: (columns: [String], rows: [[JSONValue]]), empty: String) {
        if t.rows.isEmpty { Swift.print(empty); return }
        Output.table(t.columns.map { $0.uppercased() }, t.rows.map { row in zip(t.columns, row).map { cell($0, $1) } })
    }
}

struct Failures: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs that failed: the failing node, its error, and how many attempts that task had.",
        discussion: "Example: cairn failures --since 24h --graph ingest")

    @OptionGroup var connection: Connection
    @Option(help: "Only runs that failed within this long (30m, 24h, 7d).") var since: String?
    @Option(help: "Only runs of this graph.") var graph: String?
    @Option(help: "At most this many runs.") var limit = 100

    mutating func run() async throws {
        try await RecordsReport.show(try RecordsReport.request("failures", since: since, graph: graph, limit: limit), connection,
                                     empty: "no failed runs" + (since.map { " in the last \($0)" } ?? ""))
    }
}

struct Tasks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A run's timeline: every attempt of every task, where it ran, its queue wait, duration, outcome and error.",
        discussion: "The error of a failed exec attempt ends with the tail of its stderr. Example: cairn tasks RUN --node fetch")

    @OptionGroup var connection: Connection
    @Argument(help: "The run.") var runID: String
    @Option(help: "Only the attempts of this task id.") var task: String?
    @Option(help: "Only the attempts of this node.") var node: String?

    mutating func run() async throws {
        try await RecordsReport.show(try RecordsReport.request("attempts", run: runID, task: task, node: node, limit: 100_000), connection,
                                     keep: ["step", "node", "task_id", "attempt", "status", "worker", "started_at", "queue_ms", "duration_ms", "cost", "error"],
                                     empty: "run \(runID) has no finished attempts yet")
    }
}

struct Assets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Assets nodes reported: those of a run, or which run and node produced a URI.",
        discussion: "Examples: cairn assets RUN · cairn assets --uri s3://bucket/clip.mp4 · cairn assets --since 7d --graph media")

    @OptionGroup var connection: Connection
    @Argument(help: "The run (omit to search every run).") var runID: String?
    @Option(help: "Only the asset with this URI.") var uri: String?
    @Option(help: "Only assets of this node.") var node: String?
    @Option(help: "Only assets made within this long.") var since: String?
    @Option(help: "Only runs of this graph.") var graph: String?
    @Option(help: "At most this many assets.") var limit = 1000

    mutating func run() async throws {
        try await RecordsReport.show(try RecordsReport.request("assets", since: since, graph: graph, run: runID, node: node, uri: uri, limit: limit),
                                     connection, keep: ["run_id", "step", "node", "attempt", "status", "name", "kind", "uri", "bytes", "sha256", "created_at"],
                                     empty: "no assets")
    }
}

struct Waiting: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs paused for a person's answer: since when, how long they have waited, how often resumed.",
        discussion: "Answer one with: cairn resume RUN --value JSON")

    @OptionGroup var connection: Connection
    @Option(help: "Only runs of this graph.") var graph: String?

    mutating func run() async throws {
        try await RecordsReport.show(try RecordsReport.request("waiting", graph: graph), connection, empty: "no run is waiting")
    }
}
