import CairnCore
import CairnStore
import Foundation
import GRDB
import Logging

/// The authoritative store: one SQLite file in WAL mode, one writer (this object's pool),
/// every batch in one transaction, hot statements cached.
public final class SQLiteStore: CheckpointStore {
    public let path: String
    let pool: DatabasePool
    private let logger: Logger
    /// The one writer: GRDB's synchronous write, called on this actor's own serial queue, so a
    /// transaction costs one hand-off there and back (never a blocked cooperative thread).
    let writer = BlockingWriter()

    /// Opens (creating if needed) and migrates the file. `upTo` stops at an older migration:
    /// tests use it to build a file as an older release wrote it.
    public init(path: String, logger: Logger, upTo migration: String? = nil) throws {
        self.path = path
        self.logger = logger
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.prepareDatabase { db in
            // Small pages: a run's rows are small, and each table and index costs at least a page.
            // Takes effect only when the file is created.
            try db.execute(sql: "PRAGMA page_size = 1024")
            // Pages freed by a cleanup go back to the file system (`PRAGMA incremental_vacuum`),
            // without rewriting the file. Files made before this are converted by their first
            // cleanup (one VACUUM).
            if !db.configuration.readonly { try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL") }
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try Self.checkHeader(path)
        pool = try DatabasePool(path: path, configuration: config)
        let migrator = SQLiteSchema.migrator()
        let before = try pool.read { try migrator.appliedIdentifiers($0) }
        if let migration {
            try migrator.migrate(pool, upTo: migration)
        } else {
            try migrator.migrate(pool)
        }
        let after = try pool.read { try migrator.appliedIdentifiers($0) }
        let applied = after.subtracting(before)
        if !applied.isEmpty && !before.isEmpty {
            logger.notice("upgraded store in place", metadata: ["path": "\(path)", "migrations": "\(applied.sorted())"])
        }
    }

    /// A file that is there must be a whole SQLite database before anything opens it: SQLite
    /// would open a file cut short and fail only when a read reaches the missing pages. The
    /// header names the page size and (when its change counter says it is current) the page count.
    static func checkHeader(_ path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { return }  // created on open
        defer { try? handle.close() }  // read-only: closing cannot lose anything
        let header = [UInt8](try handle.read(upToCount: 100) ?? Data())
        if header.isEmpty { return }  // an empty file: SQLite makes it a database
        let size = try handle.seekToEnd()
        guard header.count == 100, header.prefix(16).elementsEqual(Array("SQLite format 3\u{0}".utf8)) else {
            throw StoreOpenError(path: path, reason: "the file is not a SQLite database (its first bytes are not a SQLite header); move it aside or point --db elsewhere")
        }
        func u32(_ at: Int) -> UInt64 { header[at..<(at + 4)].reduce(0) { $0 << 8 | UInt64($1) } }
        let pageSize = UInt64(header[16]) << 8 | UInt64(header[17])
        let bytesPerPage = pageSize == 1 ? 65_536 : pageSize
        let pages = u32(28)
        guard u32(24) == u32(92), pages > 0, bytesPerPage >= 512 else { return }  // the count is not kept current: SQLite checks
        if pages * bytesPerPage > size {
            throw StoreOpenError(path: path, reason: "the file is truncated: its header says \(pages) pages of \(bytesPerPage) bytes (\(pages * bytesPerPage) bytes), the file has \(size); restore it from a copy, or move it aside")
        }
    }

    /// Migration identifiers applied to the file.
    public func appliedMigrations() throws -> [String] {
        try pool.read { try SQLiteSchema.migrator().appliedIdentifiers($0) }.sorted()
    }

    /// Truncates the WAL: run periodically so it cannot grow without bound under load.
    public func checkpointWAL() async throws {
        try await pool.writeWithoutTransaction { db in
            _ = try db.checkpoint(.truncate)
        }
    }

    public var walSize: Int64 {
        // No WAL file (checkpointed away, or not yet made) is a WAL of 0 bytes: a gauge, not data.
        let attrs = try? FileManager.default.attributesOfItem(atPath: path + "-wal")
        return (attrs?[.size] as? NSNumber)?.int64Value ?? 0
    }

    // MARK: writing

    public func commit(_ batch: StoreBatch) async throws {
        if batch.isEmpty { return }
        let pool = self.pool
        do {
            try await writer.run { try pool.write { db in try Self.write(batch, db) } }
        } catch {
            throw SQLiteFaults.fault(error, path: path)
        }
    }

    static func write(_ b: StoreBatch, _ db: Database) throws {
        if !b.graphs.isEmpty {
            let s = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO graphs (hash, name, version, file_name, source, source_codec, source_sha256, bundle_hash, created_at)
                VALUES (?,?,?,?,?,?,?,?,?)
                """)
            for g in b.graphs {
                let bytes = Array(g.source.utf8)
                let (codec, source) = Packed.pack(bytes)
                try s.execute(arguments: [g.hash, g.name, g.version, g.fileName, source, codec, Data(Hashing.sha256(bytes)), g.bundleHash, g.createdAt])
            }
        }
        if !b.bundles.isEmpty {
            let s = try db.cachedStatement(sql: "INSERT OR IGNORE INTO bundles (hash, size, data) VALUES (?,?,?)")
            for x in b.bundles { try s.execute(arguments: [x.hash, x.data.count, Data(x.data)]) }
        }
        if !b.runs.isEmpty {
            let s = try db.cachedStatement(sql: """
                INSERT INTO runs (run_id, graph_hash, graph_name, graph_version, status, durability, input, output, output_codec, error, interrupt,
                                  cost, api_calls, resume_count, step, checkpoint_id, created_at, updated_at, finished_at,
                                  input_sha256, output_sha256, interrupt_sha256, forked_from, tokens_in, tokens_out)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, output=excluded.output, output_codec=excluded.output_codec, error=excluded.error,
                  interrupt=excluded.interrupt, cost=excluded.cost, api_calls=excluded.api_calls, resume_count=excluded.resume_count,
                  step=excluded.step, checkpoint_id=excluded.checkpoint_id, updated_at=excluded.updated_at, finished_at=excluded.finished_at,
                  graph_hash=excluded.graph_hash, graph_name=excluded.graph_name, graph_version=excluded.graph_version,
                  durability=excluded.durability, input=excluded.input, input_sha256=excluded.input_sha256,
                  output_sha256=excluded.output_sha256, interrupt_sha256=excluded.interrupt_sha256, forked_from=excluded.forked_from,
                  tokens_in=excluded.tokens_in, tokens_out=excluded.tokens_out
                """)
            for r in b.runs {
                let input = r.input.map { $0.jsonBytes() }, output = r.output.map { $0.jsonBytes() }, interrupt = r.interrupt.map { $0.jsonBytes() }
                let packed = output.map { Packed.pack($0) }
                func sha(_ bytes: [UInt8]?) -> Data? { bytes.map { Data(Hashing.sha256($0)) } }
                try s.execute(arguments: [r.runID, r.graphHash, r.graphName, r.graphVersion, r.status.rawValue, r.durability,
                                          input.map { Data($0) }, packed?.data, packed?.codec ?? 0, r.error,
                                          interrupt.map { Data($0) }, r.cost, r.apiCalls, r.resumeCount, r.step,
                                          r.checkpointID, r.createdAt, r.updatedAt, r.finishedAt, sha(input), sha(output), sha(interrupt), r.forkedFrom,
                                          r.tokensIn, r.tokensOut])
            }
        }
        let inline = CheckpointInline.plan(b)
        if !b.checkpoints.isEmpty {
            let s = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO checkpoints (run_id, ns, checkpoint_id, parent_id, step, source, channel_versions, next_tasks, metadata, created_at, inline_id)
                VALUES (?,?,?,?,?,?,?,?,?,?,?)
                """)
            let blob = try db.cachedStatement(sql: "INSERT INTO checkpoint_inline (data) VALUES (?)")
            let orphan = try db.cachedStatement(sql: "DELETE FROM checkpoint_inline WHERE id = ?")
            for (i, c) in b.checkpoints.enumerated() {
                var inlineID: Int64?
                if let content = inline.content[i] {
                    try blob.execute(arguments: [CheckpointInline.encode(content)])
                    inlineID = db.lastInsertedRowID
                }
                try s.execute(arguments: [c.runID, c.namespace, c.checkpointID, c.parentID, c.step, c.source,
                                          Data(StoredRows.storedVersions(c)), Data(CheckpointInline.compactNext(c).jsonBytes()),
                                          Data(c.metadata.jsonBytes()), c.createdAt, inlineID])
                // The checkpoint was already stored (a replayed batch): its first version stands.
                if let inlineID, db.changesCount == 0 { try orphan.execute(arguments: [inlineID]) }
            }
        }
        if !b.channelValues.isEmpty {
            let s = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO channel_values (run_id, ns, channel, version, base_version, codec, sha256, data) VALUES (?,?,?,?,?,?,?,?)
                """)
            for (j, v) in b.channelValues.enumerated() where !inline.inlinedValues.contains(j) {
                let blob = StoredBlob(v.value)
                try s.execute(arguments: [v.runID, v.namespace, v.channel, v.version, v.baseVersion, Int(blob.codec.rawValue), Data(blob.sha256), Data(blob.data)])
            }
        }
        if !b.pendingWrites.isEmpty {
            let s = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO pending_writes (run_id, ns, checkpoint_id, task_id, idx, channel, codec, sha256, data) VALUES (?,?,?,?,?,?,?,?,?)
                """)
            for w in b.pendingWrites {
                let blob = StoredBlob(w.value)
                try s.execute(arguments: [w.runID, w.namespace, w.checkpointID, w.taskID, w.idx, w.channel, Int(blob.codec.rawValue), Data(blob.sha256), Data(blob.data)])
            }
        }
        if !b.prunedWrites.isEmpty {
            let s = try db.cachedStatement(sql: "DELETE FROM pending_writes WHERE run_id = ? AND ns = ? AND checkpoint_id = ?")
            for k in b.prunedWrites { try s.execute(arguments: [k.runID, k.namespace, k.checkpointID]) }
        }
        if !b.taskExecutions.isEmpty { try RecordsSchema.write(b.taskExecutions, db) }
        if !b.workers.isEmpty {
            let s = try db.cachedStatement(sql: """
                INSERT INTO workers (worker_id, name, slots, kinds, address, connected_at, last_seen, disconnected_at, tasks_done)
                VALUES (?,?,?,?,?,?,?,?,?)
                ON CONFLICT(worker_id) DO UPDATE SET last_seen=excluded.last_seen, disconnected_at=excluded.disconnected_at,
                  tasks_done=excluded.tasks_done, slots=excluded.slots
                """)
            for w in b.workers {
                try s.execute(arguments: [w.workerID, w.name, w.slots, w.kinds.joined(separator: ","), w.address, w.connectedAt,
                                          w.lastSeen, w.disconnectedAt, w.tasksDone])
            }
        }
    }

    // MARK: reading

    public func run(_ runID: String) async throws -> RunRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE run_id = ?", arguments: [runID]).map(RunColumns.record)
        }
    }

    public func runs(_ filter: RunFilter) async throws -> [RunListing] {
        var clauses: [String] = []
        var args: [any DatabaseValueConvertible] = []
        if let s = filter.status { clauses.append("status = ?"); args.append(s.rawValue) }
        if let g = filter.graphName { clauses.append("graph_name = ?"); args.append(g) }
        if let t = filter.createdAfter { clauses.append("created_at >= ?"); args.append(t) }
        if let c = filter.after {
            clauses.append("(created_at < ? OR (created_at = ? AND run_id < ?))")
            args += [c.createdAt, c.createdAt, c.runID]
        }
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let sql = "SELECT * FROM runs \(whereSQL) ORDER BY created_at DESC, run_id DESC LIMIT \(max(1, filter.limit))"
        let arguments = StatementArguments(args) ?? StatementArguments()
        return try await pool.read { db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map(RunColumns.listing)
        }
    }

    public func unfinishedRuns() async throws -> [RunListing] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE status IN ('queued','running') ORDER BY created_at").map(RunColumns.listing)
        }
    }

    public func runCounts() async throws -> [RunStatus: Int] {
        try await pool.read { db in
            var out: [RunStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM runs GROUP BY status") {
                let name: String = row["status"]
                // The CHECK constraint keeps statuses to these; a count under any other name is damage.
                guard let s = RunStatus(rawValue: name) else {
                    throw StoredBlob.IntegrityError(context: "runs.status", reason: "\(row["n"] as Int) run(s) have status '\(name)', which is not a run status")
                }
                out[s] = row["n"]
            }
            return out
        }
    }

    public func graph(_ hash: String) async throws -> GraphRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM graphs WHERE hash = ?", arguments: [hash]).map(Self.graphRecord)
        }
    }

    public func bundle(_ hash: String) async throws -> [UInt8]? {
        try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT data FROM bundles WHERE hash = ?", arguments: [hash]).map { try Self.bundleBytes(hash, $0) }
        }
    }

    public func checkpoint(runID: String, namespace: String, checkpointID: String?) async throws -> CheckpointRecord? {
        try await pool.read { db in
            let row: Row?
            if let checkpointID {
                row = try Row.fetchOne(db, sql: "SELECT * FROM checkpoints WHERE run_id = ? AND ns = ? AND checkpoint_id = ?",
                                       arguments: [runID, namespace, checkpointID])
            } else {
                row = try Row.fetchOne(db, sql: "SELECT * FROM checkpoints WHERE run_id = ? AND ns = ? ORDER BY checkpoint_id DESC LIMIT 1",
                                       arguments: [runID, namespace])
            }
            return try row.map(Self.checkpointRecord)
        }
    }

    public func checkpoints(runID: String, namespace: String, limit: Int) async throws -> [CheckpointRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM checkpoints WHERE run_id = ? AND ns = ? ORDER BY checkpoint_id DESC LIMIT ?",
                             arguments: [runID, namespace, limit]).map(Self.checkpointRecord)
        }
    }

    public func channelValue(runID: String, namespace: String, channel: String, version: String) async throws -> JSONValue {
        try await pool.read { db in
            let stmt = try db.cachedStatement(sql: "SELECT * FROM channel_values WHERE run_id = ? AND ns = ? AND channel = ? AND version = ?")
            let inlineStmt = try db.cachedStatement(sql: """
                SELECT c.parent_id, i.data AS inline FROM checkpoints c JOIN checkpoint_inline i ON i.id = c.inline_id
                WHERE c.run_id = ? AND c.ns = ? AND c.checkpoint_id = ?
                """)
            return try DeltaChain.rebuild(runID: runID, channel: channel, version: version) { v in
                // A fork's delta may rest on its parent's value (`RUN/VERSION`); bases are handed
                // back relative to `runID`.
                let ref = ChannelVersion(v, run: runID)
                func relative(_ base: String?) -> String? { base.map { ChannelVersion($0, run: ref.runID).stored(in: runID) } }
                guard let r = try Row.fetchOne(stmt, arguments: [ref.runID, namespace, channel, ref.version]) else {
                    // Not a row of its own: carried by the checkpoint that introduced it.
                    guard let c = try Row.fetchOne(inlineStmt, arguments: [ref.runID, namespace, ref.version]), let data: Data = c["inline"] else { return nil }
                    let content = try CheckpointInline.decode(data, context: "run \(ref.runID) checkpoint \(ref.version) inline rows")
                    guard let (value, base) = CheckpointInline.value(content.values[channel], parentID: c["parent_id"]) else { return nil }
                    return ChannelValueRecord(runID: runID, namespace: namespace, channel: channel, version: v, baseVersion: relative(base), value: value)
                }
                let blob = try Self.blob(r)
                let value = try blob.decode(context: "run \(ref.runID) channel '\(channel)' version \(ref.version)")
                return ChannelValueRecord(runID: runID, namespace: namespace, channel: channel, version: v,
                                          baseVersion: relative(r["base_version"]), value: value)
            }
        }
    }

    public func pendingWrites(runID: String, namespace: String, checkpointID: String) async throws -> [PendingWriteRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM pending_writes WHERE run_id = ? AND ns = ? AND checkpoint_id = ? ORDER BY task_id, idx
                """, arguments: [runID, namespace, checkpointID]).map { r in
                let task: String = r["task_id"]
                let value = try Self.blob(r).decode(context: "run \(runID) checkpoint \(checkpointID) task \(task) write")
                return PendingWriteRecord(runID: runID, namespace: namespace, checkpointID: checkpointID, taskID: task,
                                          idx: r["idx"], channel: r["channel"], value: value)
            }
        }
    }

    public func taskExecutions(runID: String) async throws -> [TaskExecutionRecord] {
        try await pool.read { db in try RecordsSchema.attempts(runID: runID, db) }
    }

    public func records(_ query: RecordsQuery) async throws -> RecordsTable {
        try await pool.read { db in try RecordsSQL.table(query, db) }
    }

    public func workers() async throws -> [WorkerRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM workers ORDER BY connected_at").map { r in
                let kinds: String = r["kinds"]
                return WorkerRecord(workerID: r["worker_id"], name: r["name"], slots: r["slots"],
                                    kinds: kinds.split(separator: ",").map(String.init), address: r["address"],
                                    connectedAt: r["connected_at"], lastSeen: r["last_seen"], disconnectedAt: r["disconnected_at"],
                                    tasksDone: r["tasks_done"])
            }
        }
    }

    // MARK: row mapping (shared with every SQL store: `StoredRows`)

    static func graphRecord(_ r: Row) throws -> GraphRecord { try StoredRows.graph(r) }
    static func bundleBytes(_ hash: String, _ data: Data) throws -> [UInt8] { try StoredRows.bundle(hash, [UInt8](data)) }
    static func blob(_ r: Row) throws -> StoredBlob { try StoredRows.blob(r) }
    static func checkpointRecord(_ r: Row) throws -> CheckpointRecord {
        try StoredRows.checkpoint(r, expandNext: CheckpointInline.expandNext)
    }
}

/// Text and JSON columns that may be stored zstd-compressed, with a codec column beside them.
enum Packed {
    static func pack(_ bytes: [UInt8]) -> (codec: Int, data: Data) {
        let (codec, data) = StoredRows.pack(bytes)
        return (codec, Data(data))
    }

    static func unpack(_ r: Row, _ column: String, codec: String?, context: @autoclosure () -> String) throws -> [UInt8]? {
        try StoredRows.unpack(r, column, codec: codec, context: context())
    }
}

/// A run's row (`StoredRows.run`).
enum RunColumns {
    static func bytes(_ r: Row, _ column: String, codec: String?, runID: String) throws -> [UInt8]? {
        try StoredRows.runBytes(r, column, codec: codec, runID: runID)
    }
    static func record(_ r: Row) throws -> RunRecord { try StoredRows.run(r) }
    static func listing(_ r: Row) throws -> RunListing { try StoredRows.listing(r) }
}

/// GRDB's row as the shared mapping reads it. SQLite types values per row, not per column:
/// integers read as reals where a real is asked for, text as its bytes.
extension Row: StoredRow {
    private func value(_ column: String) -> DatabaseValue { self[column] }
    private func wrong(_ column: String, _ want: String) -> StoredBlob.IntegrityError {
        StoredBlob.IntegrityError(context: "column \(column)", reason: "holds \(value(column)) where \(want) belongs")
    }

    public func text(_ column: String) throws -> String? {
        switch value(column).storage {
        case .null: return nil
        case .string(let s): return s
        case .blob(let d): return String(decoding: d, as: UTF8.self)
        default: throw wrong(column, "text")
        }
    }

    public func int(_ column: String) throws -> Int? {
        switch value(column).storage {
        case .null: return nil
        case .int64(let i): return Int(i)
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: return Int(d)
        default: throw wrong(column, "an integer")
        }
    }

    public func double(_ column: String) throws -> Double? {
        switch value(column).storage {
        case .null: return nil
        case .double(let d): return d
        case .int64(let i): return Double(i)
        default: throw wrong(column, "a number")
        }
    }

    public func bytes(_ column: String) throws -> [UInt8]? {
        switch value(column).storage {
        case .null: return nil
        case .blob(let d): return [UInt8](d)
        case .string(let s): return Array(s.utf8)
        default: throw wrong(column, "bytes")
        }
    }

    public func bool(_ column: String) throws -> Bool? { try int(column).map { $0 != 0 } }
}

/// An actor on its own serial DispatchQueue, for blocking SQLite writes.
actor BlockingWriter {
    private let executor = DispatchQueueExecutor(label: "cairn.sqlite.writer")
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    func run<T: Sendable>(_ work: @Sendable () throws -> T) throws -> T { try work() }
}

/// The store's file cannot be used as it is; the file is left untouched.
public struct StoreOpenError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    /// Why (the caller names the file: "cannot open the store at PATH: …").
    public var description: String { reason }
}
