import CairnCore
import CairnStore
import Foundation
import GRDB

/// The SQLite schema as a list of versioned migrations. Released migration identifiers are
/// never edited: a change is a new migration, so an older file upgrades in place when opened.
enum SQLiteSchema {
    static func migrator() -> DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-core") { db in
            try db.execute(sql: """
                CREATE TABLE graphs (
                    hash TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    file_name TEXT NOT NULL,
                    source TEXT NOT NULL,
                    bundle_hash TEXT,
                    created_at REAL NOT NULL
                );
                CREATE TABLE bundles (
                    hash TEXT PRIMARY KEY NOT NULL,
                    size INTEGER NOT NULL CHECK (size >= 0),
                    data BLOB NOT NULL
                );
                CREATE TABLE runs (
                    run_id TEXT PRIMARY KEY NOT NULL,
                    graph_hash TEXT NOT NULL REFERENCES graphs(hash),
                    graph_name TEXT NOT NULL,
                    graph_version INTEGER NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('queued','running','paused','completed','failed','cancelled')),
                    durability TEXT NOT NULL CHECK (durability IN ('hot','sync')),
                    input BLOB,
                    output BLOB,
                    error TEXT,
                    interrupt BLOB,
                    cost REAL NOT NULL DEFAULT 0,
                    api_calls INTEGER NOT NULL DEFAULT 0,
                    resume_count INTEGER NOT NULL DEFAULT 0,
                    step INTEGER NOT NULL DEFAULT 0,
                    checkpoint_id TEXT,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    finished_at REAL
                );
                CREATE INDEX runs_by_status ON runs(status, updated_at);
                CREATE INDEX runs_by_graph ON runs(graph_name, created_at);
                CREATE INDEX runs_by_created ON runs(created_at);
                CREATE TABLE checkpoints (
                    run_id TEXT NOT NULL,
                    ns TEXT NOT NULL DEFAULT '',
                    checkpoint_id TEXT NOT NULL,
                    parent_id TEXT,
                    step INTEGER NOT NULL,
                    source TEXT NOT NULL CHECK (source IN ('input','loop','update','fork')),
                    channel_versions BLOB NOT NULL,
                    next_tasks BLOB NOT NULL,
                    metadata BLOB NOT NULL,
                    created_at REAL NOT NULL,
                    PRIMARY KEY (run_id, ns, checkpoint_id)
                ) WITHOUT ROWID;
                CREATE TABLE channel_values (
                    run_id TEXT NOT NULL,
                    ns TEXT NOT NULL DEFAULT '',
                    channel TEXT NOT NULL,
                    version TEXT NOT NULL,
                    base_version TEXT,
                    codec INTEGER NOT NULL,
                    sha256 BLOB NOT NULL,
                    data BLOB NOT NULL,
                    PRIMARY KEY (run_id, ns, channel, version)
                ) WITHOUT ROWID;
                CREATE TABLE pending_writes (
                    run_id TEXT NOT NULL,
                    ns TEXT NOT NULL DEFAULT '',
                    checkpoint_id TEXT NOT NULL,
                    task_id TEXT NOT NULL,
                    idx INTEGER NOT NULL,
                    channel TEXT NOT NULL,
                    codec INTEGER NOT NULL,
                    sha256 BLOB NOT NULL,
                    data BLOB NOT NULL,
                    PRIMARY KEY (run_id, ns, checkpoint_id, task_id, idx)
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v2-executions-workers") { db in
            try db.execute(sql: """
                CREATE TABLE task_executions (
                    id INTEGER PRIMARY KEY,
                    run_id TEXT NOT NULL,
                    task_id TEXT NOT NULL,
                    node TEXT NOT NULL,
                    step INTEGER NOT NULL,
                    attempt INTEGER NOT NULL CHECK (attempt >= 1),
                    worker TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('completed','failed','lost','stale')),
                    started_at REAL NOT NULL,
                    finished_at REAL NOT NULL,
                    duration_ms INTEGER NOT NULL,
                    error TEXT,
                    cost REAL NOT NULL DEFAULT 0,
                    api_calls INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX task_executions_by_run ON task_executions(run_id, step);
                CREATE INDEX task_executions_failed ON task_executions(status, finished_at);
                CREATE TABLE workers (
                    worker_id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    slots INTEGER NOT NULL CHECK (slots >= 1),
                    kinds TEXT NOT NULL,
                    address TEXT NOT NULL,
                    connected_at REAL NOT NULL,
                    last_seen REAL NOT NULL,
                    disconnected_at REAL,
                    tasks_done INTEGER NOT NULL DEFAULT 0
                );
                """)
        }
        m.registerMigration("v3-compact") { db in
            // A step in about two small rows. A checkpoint's row stays narrow (its key, parent,
            // versions, plan) and points at a row of `checkpoint_inline` holding the small channel
            // values it introduces and its step's completed attempts in one SHA-256-checked blob
            // (`CheckpointInline`): narrow rows pack a page, and the blob rows are a rowid table,
            // which keeps up to ~990 bytes in the page where a WITHOUT ROWID row spills past ~230.
            // Large text (a graph's source, a run's output) is stored zstd-compressed when that
            // is smaller (codec 1). The index of failed attempts goes: no query used it, and each
            // index costs a page and a write per row. An attempt's record is unique, so a batch
            // replayed after a crash does not record it twice.
            try db.execute(sql: """
                ALTER TABLE checkpoints ADD COLUMN inline_id INTEGER;
                CREATE TABLE checkpoint_inline (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
                ALTER TABLE graphs ADD COLUMN source_codec INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE runs ADD COLUMN output_codec INTEGER NOT NULL DEFAULT 0;
                DROP INDEX task_executions_failed;
                DELETE FROM task_executions WHERE id NOT IN
                    (SELECT MIN(id) FROM task_executions GROUP BY run_id, step, task_id, attempt, status);
                DROP INDEX task_executions_by_run;
                CREATE UNIQUE INDEX task_executions_by_run ON task_executions(run_id, step, task_id, attempt, status);
                """)
        }
        m.registerMigration("v4-run-checksums") { db in
            // A run's row keeps its input, output and interrupt as JSON blobs, and a graph's row its
            // source; each now has the SHA-256 of its bytes beside it, checked on every read (as
            // channel values and pending writes always were), so a damaged row is reported by
            // name, never read as some other value. Rows written before this get theirs here.
            try db.execute(sql: """
                ALTER TABLE runs ADD COLUMN input_sha256 BLOB;
                ALTER TABLE runs ADD COLUMN output_sha256 BLOB;
                ALTER TABLE runs ADD COLUMN interrupt_sha256 BLOB;
                ALTER TABLE graphs ADD COLUMN source_sha256 BLOB;
                """)
            let graphs = try db.makeStatement(sql: "UPDATE graphs SET source_sha256 = ? WHERE hash = ?")
            for row in try Row.fetchAll(db, sql: "SELECT hash, source, source_codec FROM graphs") {
                let hash: String = row["hash"]
                let source = try Packed.unpack(row, "source", codec: "source_codec", context: "graph \(hash) (graphs.source)")
                try graphs.execute(arguments: [source.map { Data(Hashing.sha256($0)) }, hash])
            }
            let update = try db.makeStatement(sql: "UPDATE runs SET input_sha256 = ?, output_sha256 = ?, interrupt_sha256 = ? WHERE run_id = ?")
            for row in try Row.fetchAll(db, sql: "SELECT run_id, input, output, output_codec, interrupt FROM runs") {
                let runID: String = row["run_id"]
                func sha(_ column: String, codec: String? = nil) throws -> Data? {
                    try RunColumns.bytes(row, column, codec: codec, runID: runID).map { Data(Hashing.sha256($0)) }
                }
                try update.execute(arguments: [try sha("input"), try sha("output", codec: "output_codec"), try sha("interrupt"), runID])
            }
        }
        m.registerMigration("v5-time-travel") { db in
            // Checkpoints recorded by `cairn resume` and `cairn rewind` get their own sources, and
            // a forked run names the checkpoint it started from. SQLite cannot change a CHECK
            // constraint in place, so the checkpoints table is rebuilt (rows copied as they are).
            try db.execute(sql: """
                CREATE TABLE checkpoints_v5 (
                    run_id TEXT NOT NULL,
                    ns TEXT NOT NULL DEFAULT '',
                    checkpoint_id TEXT NOT NULL,
                    parent_id TEXT,
                    step INTEGER NOT NULL,
                    source TEXT NOT NULL CHECK (source IN ('input','loop','resume','update','fork','rewind')),
                    channel_versions BLOB NOT NULL,
                    next_tasks BLOB NOT NULL,
                    metadata BLOB NOT NULL,
                    created_at REAL NOT NULL,
                    inline_id INTEGER,
                    PRIMARY KEY (run_id, ns, checkpoint_id)
                ) WITHOUT ROWID;
                INSERT INTO checkpoints_v5 (run_id, ns, checkpoint_id, parent_id, step, source, channel_versions, next_tasks, metadata, created_at, inline_id)
                    SELECT run_id, ns, checkpoint_id, parent_id, step, source, channel_versions, next_tasks, metadata, created_at, inline_id FROM checkpoints;
                DROP TABLE checkpoints;
                ALTER TABLE checkpoints_v5 RENAME TO checkpoints;
                ALTER TABLE runs ADD COLUMN forked_from TEXT;
                """)
        }
        m.registerMigration("v6-records") { db in
            try RecordsSchema.create(db)
            // Attempts kept until now: rows of `task_executions`, and a step's completed attempts
            // folded into its checkpoint's inline row. Both move to `attempts` (the inline rows keep
            // only their values), so every attempt is one row a query can read.
            try db.execute(sql: """
                INSERT OR IGNORE INTO attempts (run_id, step, task_id, attempt, status, node, worker, started_at, finished_at,
                                                duration_ms, error, cost, api_calls)
                    SELECT run_id, step, task_id, attempt, status, node, worker, started_at, finished_at,
                           (finished_at - started_at) * 1000.0, error, cost, api_calls FROM task_executions;
                DROP TABLE task_executions;
                """)
            let insert = try db.makeStatement(sql: """
                INSERT OR IGNORE INTO attempts (run_id, step, task_id, attempt, status, node, worker, started_at, finished_at,
                                                duration_ms, cost, api_calls) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                """)
            let rewrite = try db.makeStatement(sql: "UPDATE checkpoint_inline SET data = ? WHERE id = ?")
            let rows = try Row.fetchAll(db, sql: """
                SELECT c.run_id, c.checkpoint_id, c.parent_id, c.step, c.created_at, i.id, i.data
                FROM checkpoints c JOIN checkpoint_inline i ON i.id = c.inline_id
                """)
            for r in rows {
                let runID: String = r["run_id"], id: String = r["checkpoint_id"]
                let content = try CheckpointInline.decode(r["data"], context: "run \(runID) checkpoint \(id) inline rows")
                guard !content.executions.isEmpty else { continue }
                for e in content.executions {
                    guard let x = CheckpointInline.execution(e, runID: runID, step: r["step"], parentID: r["parent_id"], createdAt: r["created_at"]) else {
                        throw StoredBlob.IntegrityError(context: "run \(runID) checkpoint \(id) inline rows", reason: "an attempt entry cannot be read")
                    }
                    try insert.execute(arguments: [x.runID, x.step, x.taskID, x.attempt, x.status, x.node, x.worker, x.startedAt, x.finishedAt,
                                                   x.durationMilliseconds, x.cost, x.apiCalls])
                }
                try rewrite.execute(arguments: [CheckpointInline.encode(CheckpointInline.Content(values: content.values)), r["id"] as Int64])
            }
        }
        m.registerMigration("v7-retention") { db in
            // A pinned run is never taken by a cleanup. Set only by `cairn pin` / `unpin`: a run's
            // upsert leaves the column as it is.
            try db.execute(sql: "ALTER TABLE runs ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1))")
        }
        return m
    }
}
