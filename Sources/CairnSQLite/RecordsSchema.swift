import CairnCore
import CairnStore
import Foundation
import GRDB

/// The records an operator queries: one row per attempt (`attempts`), the API calls and assets
/// attempts reported (`api_calls`, `assets`), and the views the README documents over them.
/// Written in the same transaction as the step they belong to, by the one writer.
enum RecordsSchema {
    static func create(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE attempts (
                run_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL CHECK (attempt >= 1),
                status TEXT NOT NULL CHECK (status IN ('completed','failed','lost','stale')),
                node TEXT NOT NULL,
                worker TEXT NOT NULL,
                queued_at REAL,
                started_at REAL NOT NULL,
                finished_at REAL NOT NULL,
                duration_ms REAL NOT NULL,
                error TEXT,
                error_kind TEXT,
                cost REAL NOT NULL DEFAULT 0,
                api_calls INTEGER NOT NULL DEFAULT 0,
                tokens_in INTEGER NOT NULL DEFAULT 0,
                tokens_out INTEGER NOT NULL DEFAULT 0,
                metrics TEXT,
                PRIMARY KEY (run_id, step, task_id, attempt, status)
            ) WITHOUT ROWID;
            CREATE TABLE api_calls (
                run_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                idx INTEGER NOT NULL,
                node TEXT NOT NULL,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                operation TEXT NOT NULL,
                tokens_in INTEGER NOT NULL,
                tokens_out INTEGER NOT NULL,
                cost REAL NOT NULL,
                latency_ms REAL NOT NULL,
                call_status TEXT NOT NULL,
                at REAL NOT NULL,
                PRIMARY KEY (run_id, step, task_id, attempt, status, idx)
            ) WITHOUT ROWID;
            CREATE TABLE assets (
                run_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                idx INTEGER NOT NULL,
                node TEXT NOT NULL,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                uri TEXT NOT NULL,
                bytes INTEGER,
                sha256 TEXT,
                meta TEXT,
                created_at REAL NOT NULL,
                PRIMARY KEY (run_id, step, task_id, attempt, status, idx)
            ) WITHOUT ROWID;
            CREATE INDEX assets_by_uri ON assets(uri);
            ALTER TABLE runs ADD COLUMN tokens_in INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE runs ADD COLUMN tokens_out INTEGER NOT NULL DEFAULT 0;

            CREATE VIEW attempt_details AS
            SELECT a.run_id, r.graph_name, r.graph_version, a.step, a.node, a.task_id, a.attempt, a.status, a.worker,
                   a.queued_at, a.started_at, a.finished_at,
                   CASE WHEN a.queued_at IS NULL THEN NULL ELSE round(max(0, a.started_at - a.queued_at) * 1000.0, 3) END AS queue_ms,
                   a.duration_ms, a.error_kind, a.error, a.cost, a.api_calls, a.tokens_in, a.tokens_out, a.metrics,
                   date(a.started_at, 'unixepoch') AS day
            FROM attempts a JOIN runs r ON r.run_id = a.run_id;

            CREATE VIEW api_call_details AS
            SELECT c.run_id, r.graph_name, c.step, c.node, c.task_id, c.attempt, c.status AS attempt_status, c.idx,
                   c.provider, c.model, c.operation, c.tokens_in, c.tokens_out, c.cost, c.latency_ms, c.call_status, c.at,
                   date(c.at, 'unixepoch') AS day
            FROM api_calls c JOIN runs r ON r.run_id = c.run_id;

            CREATE VIEW failed_runs AS
            WITH f AS (
                SELECT a.*, ROW_NUMBER() OVER (PARTITION BY a.run_id ORDER BY a.finished_at DESC) AS latest,
                       COUNT(*) OVER (PARTITION BY a.run_id, a.task_id) AS task_attempts
                FROM attempts a
                WHERE a.status IN ('failed', 'lost') AND a.run_id IN (SELECT run_id FROM runs WHERE status = 'failed'))
            SELECT r.run_id, r.graph_name, r.graph_version, r.created_at, r.finished_at, r.error AS run_error,
                   f.node AS failing_node, f.step, f.task_id, f.task_attempts AS attempts, f.worker, f.error_kind, f.error
            FROM runs r LEFT JOIN f ON f.run_id = r.run_id AND f.latest = 1
            WHERE r.status = 'failed';

            CREATE VIEW waiting_runs AS
            SELECT run_id, graph_name, graph_version, step, updated_at AS waiting_since,
                   round((julianday('now') - 2440587.5) * 86400.0 - updated_at, 1) AS waited_s,
                   resume_count, CAST(interrupt AS TEXT) AS interrupt
            FROM runs WHERE status = 'paused';

            CREATE VIEW worker_tasks AS
            SELECT worker, SUM(status = 'completed') AS done, SUM(status = 'failed') AS failed, SUM(status = 'lost') AS lost,
                   SUM(status = 'stale') AS stale, COUNT(*) AS attempts, round(SUM(duration_ms) / 1000.0, 3) AS busy_s,
                   MIN(started_at) AS first_at, MAX(finished_at) AS last_at
            FROM attempts GROUP BY worker;
            """)
    }

    // MARK: writing

    static func write(_ executions: [TaskExecutionRecord], _ db: Database) throws {
        let s = try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO attempts (run_id, step, task_id, attempt, status, node, worker, queued_at, started_at, finished_at,
                                            duration_ms, error, error_kind, cost, api_calls, tokens_in, tokens_out, metrics)
            VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            """)
        for t in executions {
            let r = t.records
            let metrics = r.metrics.isEmpty ? nil : String(decoding: JSONValue.object(r.metrics.mapValues { .double($0) }).jsonBytes(), as: UTF8.self)
            try s.execute(arguments: [t.runID, t.step, t.taskID, t.attempt, t.status, t.node, t.worker, t.queuedAt, t.startedAt, t.finishedAt,
                                      t.durationMilliseconds, t.error, t.errorKind, r.cost, r.apiCalls, r.tokensIn, r.tokensOut, metrics])
            // A replayed batch: the attempt (and so its calls and assets) is stored already.
            guard db.changesCount > 0, !r.apiCallLog.isEmpty || !r.assets.isEmpty else { continue }
            if !r.apiCallLog.isEmpty {
                let c = try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO api_calls (run_id, step, task_id, attempt, status, idx, node, provider, model, operation,
                                                     tokens_in, tokens_out, cost, latency_ms, call_status, at)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                    """)
                for (i, x) in r.apiCallLog.enumerated() {
                    try c.execute(arguments: [t.runID, t.step, t.taskID, t.attempt, t.status, i, t.node, x.provider, x.model, x.operation,
                                              x.tokensIn, x.tokensOut, x.cost, x.latencyMS, x.status, t.startedAt])
                }
            }
            if !r.assets.isEmpty {
                let a = try db.cachedStatement(sql: """
                    INSERT OR IGNORE INTO assets (run_id, step, task_id, attempt, status, idx, node, name, kind, uri, bytes, sha256, meta, created_at)
                    VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                    """)
                for (i, x) in r.assets.enumerated() {
                    try a.execute(arguments: [t.runID, t.step, t.taskID, t.attempt, t.status, i, t.node, x.name, x.kind, x.uri, x.bytes,
                                              x.sha256, x.meta.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }, t.finishedAt])
                }
            }
        }
    }

    // MARK: reading

    /// A run's attempts in the order they ended, with what each reported.
    static func attempts(runID: String, _ db: Database) throws -> [TaskExecutionRecord] {
        func key(_ r: Row) -> String {
            let step: Int = r["step"], attempt: Int = r["attempt"], task: String = r["task_id"], status: String = r["status"]
            return "\(step)\u{1F}\(task)\u{1F}\(attempt)\u{1F}\(status)"
        }
        func where_(_ r: Row) -> String {
            let step: Int = r["step"], attempt: Int = r["attempt"], task: String = r["task_id"], status: String = r["status"]
            return "run \(runID) step \(step) task \(task) attempt \(attempt) (\(status))"
        }
        var calls: [String: [TaskRecords.APICall]] = [:]
        for r in try Row.fetchAll(db, sql: "SELECT * FROM api_calls WHERE run_id = ? ORDER BY step, task_id, attempt, status, idx", arguments: [runID]) {
            calls[key(r), default: []].append(TaskRecords.APICall(
                provider: r["provider"], model: r["model"], operation: r["operation"], tokensIn: r["tokens_in"], tokensOut: r["tokens_out"],
                cost: r["cost"], latencyMS: r["latency_ms"], status: r["call_status"]))
        }
        var assets: [String: [TaskRecords.Asset]] = [:]
        for r in try Row.fetchAll(db, sql: "SELECT * FROM assets WHERE run_id = ? ORDER BY step, task_id, attempt, status, idx", arguments: [runID]) {
            var meta: JSONValue?
            if let text: String = r["meta"] {
                do { meta = try JSONValue.parse(Array(text.utf8)) } catch {
                    throw StoredBlob.IntegrityError(context: "\(where_(r)) (assets.meta)", reason: "not valid JSON (\(error))")
                }
            }
            assets[key(r), default: []].append(TaskRecords.Asset(name: r["name"], kind: r["kind"], uri: r["uri"], bytes: r["bytes"],
                                                                 sha256: r["sha256"], meta: meta))
        }
        return try Row.fetchAll(db, sql: "SELECT * FROM attempts WHERE run_id = ? ORDER BY finished_at, step", arguments: [runID]).map { r in
            var rec = TaskRecords()
            rec.cost = r["cost"]; rec.apiCalls = r["api_calls"]; rec.tokensIn = r["tokens_in"]; rec.tokensOut = r["tokens_out"]
            if let text: String = r["metrics"] {
                let parsed: JSONValue
                do { parsed = try JSONValue.parse(Array(text.utf8)) } catch {
                    throw StoredBlob.IntegrityError(context: "\(where_(r)) (attempts.metrics)", reason: "not valid JSON (\(error))")
                }
                guard case .object(let o) = parsed else {
                    throw StoredBlob.IntegrityError(context: "\(where_(r)) (attempts.metrics)", reason: "not a JSON object of numbers")
                }
                for (name, v) in o {
                    guard let d = v.doubleValue else {
                        throw StoredBlob.IntegrityError(context: "\(where_(r)) (attempts.metrics)", reason: "metric '\(name)' is not a number")
                    }
                    rec.metrics[name] = d
                }
            }
            rec.apiCallLog = calls[key(r)] ?? []
            rec.assets = assets[key(r)] ?? []
            return TaskExecutionRecord(runID: r["run_id"], taskID: r["task_id"], node: r["node"], step: r["step"], attempt: r["attempt"],
                                       worker: r["worker"], status: r["status"], startedAt: r["started_at"], finishedAt: r["finished_at"],
                                       error: r["error"], cost: 0, apiCalls: 0, queuedAt: r["queued_at"], errorKind: r["error_kind"],
                                       records: rec)
        }
    }
}
