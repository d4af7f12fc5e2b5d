import CairnCore

/// The SQL behind `RecordsQuery`: the queries the README shows, over the views each SQL store
/// defines alike (`attempt_details`, `api_call_details`, `failed_runs`, `waiting_runs`, and the
/// `attempts`, `assets`, `runs` tables). Written once, in SQL both SQLite and PostgreSQL read:
/// `CASE` where SQLite would sum a comparison, `round(double, int)` (PostgreSQL's store defines it).
public enum RecordsSQLText {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// A parameter's value.
    public enum Argument: Sendable, Equatable {
        case text(String), double(Double), int(Int)
    }

    /// The query's SQL, with `:name` parameters, and the value of each parameter it names.
    public static func statement(_ q: RecordsQuery) throws -> (sql: String, arguments: [String: Argument]) {
        var conditions: [String] = []
        var args: [String: Argument] = ["limit": .int(max(1, min(q.limit, 100_000)))]
        func filter(_ sql: String, _ name: String, _ value: Argument?) {
            guard let value else { return }
            conditions.append(sql); args[name] = value
        }
        func whereClause(_ extra: [String] = []) -> String {
            let all = extra + conditions
            return all.isEmpty ? "" : "WHERE " + all.joined(separator: " AND ")
        }
        let sql: String
        switch q.report {
        case .failures:
            filter("finished_at >= :since", "since", q.since.map(Argument.double))
            filter("graph_name = :graph", "graph", q.graph.map(Argument.text))
            sql = """
                SELECT run_id, graph_name AS graph, failing_node AS node, attempts, error_kind, coalesce(error, run_error) AS error, finished_at
                FROM failed_runs \(whereClause()) ORDER BY finished_at DESC LIMIT :limit
                """
        case .durations:
            if q.by == .model {
                filter("at >= :since", "since", q.since.map(Argument.double))
                filter("graph_name = :graph", "graph", q.graph.map(Argument.text))
                sql = percentiles(keys: ["provider", "model"], value: "latency_ms", from: "api_call_details", where: whereClause(), count: "calls")
            } else {
                filter("started_at >= :since", "since", q.since.map(Argument.double))
                filter("graph_name = :graph", "graph", q.graph.map(Argument.text))
                sql = percentiles(keys: keys(q.by), value: "duration_ms", from: "attempt_details",
                                  where: whereClause(["status = 'completed'"]), count: "attempts")
            }
        case .cost:
            if q.by == .model {
                filter("at >= :since", "since", q.since.map(Argument.double))
                filter("graph_name = :graph", "graph", q.graph.map(Argument.text))
                sql = """
                    SELECT provider, model, COUNT(*) AS calls, SUM(CASE WHEN call_status != 'ok' THEN 1 ELSE 0 END) AS failed_calls, SUM(tokens_in) AS tokens_in,
                           SUM(tokens_out) AS tokens_out, round(SUM(cost), 6) AS cost, round(AVG(latency_ms), 3) AS mean_latency_ms
                    FROM api_call_details \(whereClause()) GROUP BY provider, model ORDER BY cost DESC, calls DESC LIMIT :limit
                    """
            } else {
                filter("started_at >= :since", "since", q.since.map(Argument.double))
                filter("graph_name = :graph", "graph", q.graph.map(Argument.text))
                let k = keys(q.by).joined(separator: ", ")
                sql = """
                    SELECT \(k), COUNT(*) AS attempts, round(SUM(cost), 6) AS cost, SUM(api_calls) AS api_calls,
                           SUM(tokens_in) AS tokens_in, SUM(tokens_out) AS tokens_out
                    FROM attempt_details \(whereClause()) GROUP BY \(k) ORDER BY cost DESC, api_calls DESC LIMIT :limit
                    """
            }
        case .assets:
            filter("a.run_id = :run", "run", q.runID.map(Argument.text))
            filter("a.uri = :uri", "uri", q.uri.map(Argument.text))
            filter("a.node = :node", "node", q.node.map(Argument.text))
            filter("a.created_at >= :since", "since", q.since.map(Argument.double))
            filter("r.graph_name = :graph", "graph", q.graph.map(Argument.text))
            sql = """
                SELECT a.run_id, r.graph_name AS graph, a.step, a.node, a.attempt, a.status, a.name, a.kind, a.uri, a.bytes, a.sha256,
                       a.meta, a.created_at
                FROM assets a JOIN runs r ON r.run_id = a.run_id \(whereClause()) ORDER BY a.created_at, a.step, a.idx LIMIT :limit
                """
        case .attempts:
            guard q.runID != nil else { throw Invalid(description: "the attempts report needs a run id") }
            filter("run_id = :run", "run", q.runID.map(Argument.text))
            filter("task_id = :task", "task", q.taskID.map(Argument.text))
            filter("node = :node", "node", q.node.map(Argument.text))
            sql = """
                SELECT step, node, task_id, attempt, status, worker, queued_at, started_at, finished_at, queue_ms, duration_ms,
                       error_kind, error, cost, api_calls, tokens_in, tokens_out, metrics
                FROM attempt_details \(whereClause()) ORDER BY started_at, step, task_id, attempt LIMIT :limit
                """
        case .waiting:
            filter("graph_name = :graph", "graph", q.graph.map(Argument.text))
            filter("waiting_since >= :since", "since", q.since.map(Argument.double))
            sql = """
                SELECT run_id, graph_name AS graph, step, waiting_since, waited_s, resume_count, interrupt
                FROM waiting_runs \(whereClause()) ORDER BY waiting_since LIMIT :limit
                """
        case .workers:
            filter("started_at >= :since", "since", q.since.map(Argument.double))
            filter("run_id IN (SELECT run_id FROM runs WHERE graph_name = :graph)", "graph", q.graph.map(Argument.text))
            // worker_tasks, with the period and graph filters applied before grouping.
            sql = """
                SELECT worker, SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS done, SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
                       SUM(CASE WHEN status = 'lost' THEN 1 ELSE 0 END) AS lost, SUM(CASE WHEN status = 'stale' THEN 1 ELSE 0 END) AS stale, COUNT(*) AS attempts, round(SUM(duration_ms) / 1000.0, 3) AS busy_s,
                       MIN(started_at) AS first_at, MAX(finished_at) AS last_at
                FROM attempts \(whereClause()) GROUP BY worker ORDER BY done DESC, worker LIMIT :limit
                """
        }
        return (sql, args)
    }

    public static func keys(_ by: RecordsQuery.Grouping) -> [String] {
        switch by {
        case .run: return ["run_id", "graph_name"]
        case .node: return ["graph_name", "node"]
        case .graph: return ["graph_name"]
        case .day: return ["day"]
        case .worker: return ["worker"]
        case .model: return ["provider", "model"]
        }
    }

    /// p50/p95 by nearest rank (the smallest value with at least that share of values at or below it).
    public static func percentiles(keys: [String], value: String, from: String, where clause: String, count: String) -> String {
        let k = keys.joined(separator: ", ")
        return """
            WITH d AS (
                SELECT \(k), \(value) AS ms, ROW_NUMBER() OVER (PARTITION BY \(k) ORDER BY \(value)) AS i,
                       COUNT(*) OVER (PARTITION BY \(k)) AS n
                FROM \(from) \(clause))
            SELECT \(k), MAX(n) AS \(count), MIN(CASE WHEN i >= 0.50 * n THEN ms END) AS p50_ms,
                   MIN(CASE WHEN i >= 0.95 * n THEN ms END) AS p95_ms, MAX(ms) AS max_ms, round(AVG(ms), 3) AS mean_ms
            FROM d GROUP BY \(k) ORDER BY p95_ms DESC LIMIT :limit
            """
    }


    /// The SQL with its `:name` parameters numbered `$1`, `$2`… in order of first use, and the
    /// values in that order (for servers without named parameters).
    public static func numbered(_ sql: String, _ arguments: [String: Argument]) -> (sql: String, values: [Argument]) {
        var out = "", values: [Argument] = [], numbers: [String: Int] = [:]
        var chars = Array(sql)[...]
        var inQuote = false
        while let c = chars.first {
            chars = chars.dropFirst()
            if c == "'" { inQuote.toggle() }
            guard c == ":", !inQuote, let next = chars.first, next.isLetter, out.last != ":" else { out.append(c); continue }
            var name = ""
            while let n = chars.first, n.isLetter || n == "_" { name.append(n); chars = chars.dropFirst() }
            guard let value = arguments[name] else { out += ":" + name; continue }
            if numbers[name] == nil { values.append(value); numbers[name] = values.count }
            out += "$\(numbers[name]!)"
        }
        return (out, values)
    }
}
