import CairnCore
import CairnStore
import PostgresNIO

/// The operator's records on PostgreSQL: attempts with their calls and assets, and the reports
/// of `RecordsQuery` in the same SQL as SQLite's (`RecordsSQLText`) over the same views.
enum PostgresRecords {
    static func table(_ q: RecordsQuery, _ store: PostgresStore) async throws -> RecordsTable {
        let (named, arguments) = try RecordsSQLText.statement(q)
        let (sql, values) = RecordsSQLText.numbered(named, arguments)
        var binds = PostgresBindings()
        for v in values {
            switch v {
            case .text(let s): binds.append(s)
            case .double(let d): binds.append(d)
            case .int(let i): binds.append(i)
            }
        }
        let query = PostgresQuery(unsafeSQL: sql, binds: binds)
        let (columns, rows) = try await store.perform("reading") {
            try await store.leased { conn in
                let sequence = try await conn.query(query, logger: store.logger)
                return (sequence.columns.map(\.name), try await sequence.collect())
            }
        }
        return RecordsTable(columns: columns, rows: try rows.map { r in
            let row = PostgresStoredRow(r.makeRandomAccess())
            return try (0..<columns.count).map { try row.json($0) }
        })
    }

    /// A run's attempts in the order they ended, with what each reported.
    static func attempts(runID: String, _ store: PostgresStore) async throws -> [TaskExecutionRecord] {
        func key(_ r: PostgresStoredRow) throws -> String {
            "\(try r.int("step") ?? -1)\u{1F}\(try r.text("task_id") ?? "")\u{1F}\(try r.int("attempt") ?? -1)\u{1F}\(try r.text("status") ?? "")"
        }
        func where_(_ r: PostgresStoredRow) throws -> String {
            "run \(runID) step \(try r.int("step") ?? -1) task \(try r.text("task_id") ?? "?") attempt \(try r.int("attempt") ?? -1) (\(try r.text("status") ?? "?"))"
        }
        var calls: [String: [TaskRecords.APICall]] = [:]
        for r in try await store.rows("SELECT * FROM api_calls WHERE run_id = \(runID) ORDER BY step, task_id, attempt, status, idx") {
            let w = try where_(r)
            calls[try key(r), default: []].append(TaskRecords.APICall(
                provider: try r.required(r.text, "provider", w), model: try r.required(r.text, "model", w),
                operation: try r.required(r.text, "operation", w), tokensIn: try r.required(r.int, "tokens_in", w),
                tokensOut: try r.required(r.int, "tokens_out", w), cost: try r.required(r.double, "cost", w),
                latencyMS: try r.required(r.double, "latency_ms", w), status: try r.required(r.text, "call_status", w)))
        }
        var assets: [String: [TaskRecords.Asset]] = [:]
        for r in try await store.rows("SELECT * FROM assets WHERE run_id = \(runID) ORDER BY step, task_id, attempt, status, idx") {
            let w = try where_(r)
            var meta: JSONValue?
            if let text = try r.text("meta") {
                do { meta = try JSONValue.parse(Array(text.utf8)) } catch {
                    throw StoredBlob.IntegrityError(context: "\(w) (assets.meta)", reason: "not valid JSON (\(error))")
                }
            }
            assets[try key(r), default: []].append(TaskRecords.Asset(
                name: try r.required(r.text, "name", w), kind: try r.required(r.text, "kind", w), uri: try r.required(r.text, "uri", w),
                bytes: try r.int("bytes").map { Int64($0) }, sha256: try r.text("sha256"), meta: meta))
        }
        return try await store.rows("SELECT * FROM attempts WHERE run_id = \(runID) ORDER BY finished_at, step").map { r in
            let w = try where_(r)
            var rec = TaskRecords()
            rec.cost = try r.required(r.double, "cost", w); rec.apiCalls = try r.required(r.int, "api_calls", w)
            rec.tokensIn = try r.required(r.int, "tokens_in", w); rec.tokensOut = try r.required(r.int, "tokens_out", w)
            if let text = try r.text("metrics") {
                let parsed: JSONValue
                do { parsed = try JSONValue.parse(Array(text.utf8)) } catch {
                    throw StoredBlob.IntegrityError(context: "\(w) (attempts.metrics)", reason: "not valid JSON (\(error))")
                }
                guard case .object(let o) = parsed else {
                    throw StoredBlob.IntegrityError(context: "\(w) (attempts.metrics)", reason: "not a JSON object of numbers")
                }
                for (name, v) in o {
                    guard let d = v.doubleValue else {
                        throw StoredBlob.IntegrityError(context: "\(w) (attempts.metrics)", reason: "metric '\(name)' is not a number")
                    }
                    rec.metrics[name] = d
                }
            }
            rec.apiCallLog = calls[try key(r)] ?? []
            rec.assets = assets[try key(r)] ?? []
            return TaskExecutionRecord(runID: try r.required(r.text, "run_id", w), taskID: try r.required(r.text, "task_id", w),
                                       node: try r.required(r.text, "node", w), step: try r.required(r.int, "step", w),
                                       attempt: try r.required(r.int, "attempt", w), worker: try r.required(r.text, "worker", w),
                                       status: try r.required(r.text, "status", w), startedAt: try r.required(r.double, "started_at", w),
                                       finishedAt: try r.required(r.double, "finished_at", w), error: try r.text("error"),
                                       cost: 0, apiCalls: 0, queuedAt: try r.double("queued_at"), errorKind: try r.text("error_kind"),
                                       records: rec)
        }
    }
}
