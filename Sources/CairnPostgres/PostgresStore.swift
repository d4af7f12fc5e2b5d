import CairnCore
import CairnStore
import Foundation
import Logging
import NIOCore
import PostgresNIO

/// The authoritative store in PostgreSQL, through postgres-nio's pooled client: every batch in
/// one transaction, each table's rows of a batch in one multi-row statement (a round trip per
/// table, not per row), the same records and SHA-256 checks as the SQLite store (`StoredRows`).
public final class PostgresStore: CheckpointStore, @unchecked Sendable {
    public let url: PostgresURL
    let logger: Logger
    let pool: PoolHolder
    /// How long a request waits for a connection (the pool dialing one if need be) before it
    /// fails as a transient fault. A server that is down, restarting or unreachable is reported
    /// within this, rather than after the pool's own backoff of up to a minute, so the
    /// coordinator holds writes and answers at once, as it does on a full disk. Once a request has
    /// its connection it runs to its end: no transaction is abandoned half way.
    public let leaseTimeout: Duration
    /// How long a commit or a read the engine makes may take once it has its connection (a
    /// server killed mid-query can leave one unanswered): then its connection is closed, which
    /// rolls it back, and it fails as a transient fault to be retried. Maintenance and records
    /// queries, which may rightly take long, have none.
    public let workTimeout: Duration
    /// The epoch every write transaction checks, once this coordinator leads (`fence`).
    let fencing = Fencing()
    /// Set once this store has brought the schema up to date: a later `migrate()` has nothing to do.
    private var schemaCurrent = false
    private let schemaLock = NSLock()

    /// Connects lazily (the pool dials on first use); `migrate()` creates or upgrades the schema.
    public init(url: PostgresURL, logger: Logger, maxConnections: Int = 8, leaseTimeout: Duration = .seconds(3),
                workTimeout: Duration = .seconds(5)) {
        self.url = url
        self.logger = logger
        self.leaseTimeout = leaseTimeout
        self.workTimeout = workTimeout
        var config = PostgresClient.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                  database: url.database, tls: url.tls.client)
        config.options.maximumConnections = maxConnections
        config.options.connectTimeout = .seconds(5)
        // A coordinator frozen (SIGSTOP, a debugger, a VM paused) in the middle of a transaction
        // would hold its row locks for as long as its connection lives, among them the leader
        // row's FOR SHARE, which a standby's claim waits on: the server ends such a session.
        config.options.additionalStartupParameters = [("application_name", "cairn-coordinator"),
                                                      ("idle_in_transaction_session_timeout", "3000")]
        let configuration = config
        // The pool logs each failed dial at info (every 100 ms while a server is down); Cairn's
        // own lines say what matters (unreachable, retried, back), so the pool's start at notice.
        var background = logger
        background.logLevel = max(logger.logLevel, .notice)
        let poolLogger = background
        pool = PoolHolder(maxConnections: maxConnections) { PostgresClient(configuration: configuration, backgroundLogger: poolLogger) }
    }

    /// Stops the pool: queries after this fail.
    public func close() {
        pool.close()
    }

    deinit { pool.close() }

    // MARK: schema

    /// Dials one connection of its own, outside the pool, and closes it. The pool retries a
    /// refused login in silence, so a wrong password reads as a server that is unreachable; this
    /// gives the server's own reason (a wrong password, no such database, no pg_hba.conf entry,
    /// TLS required) or the network's (connection refused), in the fault's message.
    public func probe() async throws {
        do {
            var config = PostgresConnection.Configuration(host: url.host, port: url.port, username: url.user, password: url.password,
                                                          database: url.database, tls: try url.tls.connection())
            config.options.connectTimeout = .seconds(max(1, leaseTimeout.components.seconds))
            let conn = try await PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: config,
                                                            id: 0, logger: logger).get()
            try? await conn.close()
        } catch {
            throw PostgresFaults.fault(error, doing: "connecting to \(url)")
        }
    }

    /// Applies the migrations not yet applied, each in its own transaction, under an advisory
    /// lock so two coordinators starting together migrate once. Returns the identifiers applied.
    /// Once this store has migrated whole, again is nothing to do (a standby coordinator migrates
    /// before it claims the lead, and its lifecycle would again when it starts serving).
    @discardableResult
    public func migrate(upTo last: String? = nil) async throws -> [String] {
        if last == nil, schemaLock.withLock({ schemaCurrent }) { return [] }
        try await probe()
        let applied = try await perform("migrating the schema of") {
            try await self.transaction { conn in
                try await conn.query("SELECT pg_advisory_xact_lock(7468235)", logger: self.logger)
                try await conn.query("CREATE TABLE IF NOT EXISTS cairn_migrations (id text PRIMARY KEY, applied_at double precision NOT NULL)",
                                     logger: self.logger)
                var done = Set<String>()
                for try await id in try await conn.query("SELECT id FROM cairn_migrations", logger: self.logger).decode(String.self) { done.insert(id) }
                var applied: [String] = []
                for (id, statements) in PostgresSchema.migrations {
                    if !done.contains(id) {
                        for sql in statements { try await conn.query(PostgresQuery(unsafeSQL: sql), logger: self.logger) }
                        let now = Date().timeIntervalSince1970
                        try await conn.query("INSERT INTO cairn_migrations (id, applied_at) VALUES (\(id), \(now))", logger: self.logger)
                        applied.append(id)
                    }
                    if id == last { break }
                }
                return applied
            }
        }
        if last == nil { schemaLock.withLock { schemaCurrent = true } }
        return applied
    }

    public func appliedMigrations() async throws -> [String] {
        try await perform("reading") {
            try await self.leased { conn in
                var out: [String] = []
                for try await id in try await conn.query("SELECT id FROM cairn_migrations ORDER BY id", logger: self.logger).decode(String.self) {
                    out.append(id)
                }
                return out
            }
        }
    }

    // MARK: errors

    /// Runs `work`, turning PostgreSQL's failures into `StoreFault`s that name the database:
    /// what retrying can heal (a server that is down, restarting, full, or in recovery) is
    /// transient; damage and a schema that is not Cairn's are permanent.
    func perform<T>(_ doing: String, _ work: () async throws -> T) async throws -> T {
        do { return try await work() } catch {
            if PostgresFaults.isUnreachable(error) { pool.replace(logger: logger) }
            throw PostgresFaults.fault(error, doing: "\(doing) \(url)")
        }
    }

    // MARK: writing

    public func commit(_ batch: StoreBatch) async throws {
        if batch.isEmpty { return }
        let statements = PostgresWrites.statements(batch)
        try await perform("writing") {
            try await self.transaction(workTimeout: self.workTimeout) { conn in
                for q in statements { try await conn.query(q, logger: self.logger) }
            }
        }
    }

    // MARK: reading

    /// The rows a query returns, each readable by column name.
    func rows(_ query: PostgresQuery) async throws -> [PostgresStoredRow] {
        try await rows(query, workTimeout: workTimeout)
    }

    /// Rows of a query that may rightly run long (verify, export, cleanup's sizes): no work
    /// timeout once it has its connection.
    func longRows(_ query: PostgresQuery) async throws -> [PostgresStoredRow] {
        try await rows(query, workTimeout: nil)
    }

    private func rows(_ query: PostgresQuery, workTimeout: Duration?) async throws -> [PostgresStoredRow] {
        try await perform("reading") {
            try await self.leased(workTimeout: workTimeout) { conn in
                try await conn.query(query, logger: self.logger).collect().map { PostgresStoredRow($0.makeRandomAccess()) }
            }
        }
    }

    public func run(_ runID: String) async throws -> RunRecord? {
        try await rows("SELECT * FROM runs WHERE run_id = \(runID)").first.map(StoredRows.run)
    }

    public func runs(_ filter: RunFilter) async throws -> [RunListing] {
        var clauses: [String] = []
        var binds = PostgresBindings()
        func bind(_ sql: (String) -> String, _ value: some PostgresDynamicTypeEncodable) {
            binds.append(value)
            clauses.append(sql("$\(binds.count)"))
        }
        if let s = filter.status { bind({ "status = \($0)" }, s.rawValue) }
        if let g = filter.graphName { bind({ "graph_name = \($0)" }, g) }
        if let t = filter.createdAfter { bind({ "created_at >= \($0)" }, t) }
        if let c = filter.after {
            binds.append(c.createdAt)
            let at = "$\(binds.count)"
            binds.append(c.runID)
            clauses.append("(created_at < \(at) OR (created_at = \(at) AND run_id < $\(binds.count)))")
        }
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        let sql = "SELECT * FROM runs \(whereSQL) ORDER BY created_at DESC, run_id DESC LIMIT \(max(1, filter.limit))"
        return try await rows(PostgresQuery(unsafeSQL: sql, binds: binds)).map(StoredRows.listing)
    }

    public func unfinishedRuns() async throws -> [RunListing] {
        try await rows("SELECT * FROM runs WHERE status IN ('queued','running') ORDER BY created_at").map(StoredRows.listing)
    }

    public func runCounts() async throws -> [RunStatus: Int] {
        var out: [RunStatus: Int] = [:]
        for row in try await rows("SELECT status, COUNT(*) AS n FROM runs GROUP BY status") {
            let name = try row.required(row.text, "status", "runs")
            // The CHECK constraint keeps statuses to these; a count under any other name is damage.
            guard let s = RunStatus(rawValue: name) else {
                throw StoredBlob.IntegrityError(context: "runs.status", reason: "run(s) have status '\(name)', which is not a run status")
            }
            out[s] = try row.required(row.int, "n", "runs")
        }
        return out
    }

    public func graph(_ hash: String) async throws -> GraphRecord? {
        try await rows("SELECT * FROM graphs WHERE hash = \(hash)").first.map(StoredRows.graph)
    }

    public func bundle(_ hash: String) async throws -> [UInt8]? {
        guard let r = try await rows("SELECT data FROM bundles WHERE hash = \(hash)").first else { return nil }
        return try StoredRows.bundle(hash, try r.required(r.bytes, "data", "bundle \(hash)"))
    }

    public func checkpoint(runID: String, namespace: String, checkpointID: String?) async throws -> CheckpointRecord? {
        let found: [PostgresStoredRow]
        if let checkpointID {
            found = try await rows("SELECT * FROM checkpoints WHERE run_id = \(runID) AND ns = \(namespace) AND checkpoint_id = \(checkpointID)")
        } else {
            found = try await rows("SELECT * FROM checkpoints WHERE run_id = \(runID) AND ns = \(namespace) ORDER BY checkpoint_id DESC LIMIT 1")
        }
        return try found.first.map { try StoredRows.checkpoint($0) }
    }

    public func checkpoints(runID: String, namespace: String, limit: Int) async throws -> [CheckpointRecord] {
        try await rows("SELECT * FROM checkpoints WHERE run_id = \(runID) AND ns = \(namespace) ORDER BY checkpoint_id DESC LIMIT \(limit)")
            .map { try StoredRows.checkpoint($0) }
    }

    public func channelValue(runID: String, namespace: String, channel: String, version: String) async throws -> JSONValue {
        // The whole chain of deltas in one query, following each row's base (`RUN/VERSION` in a
        // fork's parent, else a version of the row's own run) down to a full snapshot. The
        // version asked for may itself be a parent's (`RUN/VERSION`, a fork's unchanged channel).
        let start = ChannelVersion(version, run: runID)
        let chain = try await rows("""
            WITH RECURSIVE chain AS (
                SELECT run_id, ns, channel, version, base_version, codec, sha256, data, 0 AS depth
                FROM channel_values WHERE run_id = \(start.runID) AND ns = \(namespace) AND channel = \(channel) AND version = \(start.version)
              UNION ALL
                SELECT v.run_id, v.ns, v.channel, v.version, v.base_version, v.codec, v.sha256, v.data, c.depth + 1
                FROM chain c JOIN channel_values v
                  ON v.ns = c.ns AND v.channel = c.channel
                 AND v.run_id = CASE WHEN strpos(c.base_version, '/') > 0 THEN split_part(c.base_version, '/', 1) ELSE c.run_id END
                 AND v.version = CASE WHEN strpos(c.base_version, '/') > 0 THEN split_part(c.base_version, '/', 2) ELSE c.base_version END
                WHERE c.base_version IS NOT NULL AND c.depth < 100000)
            SELECT * FROM chain
            """)
        var byKey: [String: PostgresStoredRow] = [:]
        for r in chain {
            byKey[(try r.required(r.text, "run_id", "channel_values")) + "/" + (try r.required(r.text, "version", "channel_values"))] = r
        }
        return try DeltaChain.rebuild(runID: runID, channel: channel, version: version) { v in
            let ref = ChannelVersion(v, run: runID)
            guard let r = byKey[ref.runID + "/" + ref.version] else { return nil }
            let value = try StoredRows.blob(r).decode(context: "run \(ref.runID) channel '\(channel)' version \(ref.version)")
            // Bases are handed back relative to `runID`, as the chain walks from there.
            let base = try r.text("base_version").map { ChannelVersion($0, run: ref.runID).stored(in: runID) }
            return ChannelValueRecord(runID: runID, namespace: namespace, channel: channel, version: v, baseVersion: base, value: value)
        }
    }

    public func pendingWrites(runID: String, namespace: String, checkpointID: String) async throws -> [PendingWriteRecord] {
        try await rows("""
            SELECT * FROM pending_writes WHERE run_id = \(runID) AND ns = \(namespace) AND checkpoint_id = \(checkpointID) ORDER BY task_id, idx
            """).map { r in
            let task = try r.required(r.text, "task_id", "run \(runID) checkpoint \(checkpointID): a pending write")
            let value = try StoredRows.blob(r).decode(context: "run \(runID) checkpoint \(checkpointID) task \(task) write")
            return PendingWriteRecord(runID: runID, namespace: namespace, checkpointID: checkpointID, taskID: task,
                                      idx: try r.required(r.int, "idx", "pending write"), channel: try r.required(r.text, "channel", "pending write"),
                                      value: value)
        }
    }

    public func taskExecutions(runID: String) async throws -> [TaskExecutionRecord] {
        try await PostgresRecords.attempts(runID: runID, self)
    }

    public func records(_ query: RecordsQuery) async throws -> RecordsTable {
        try await PostgresRecords.table(query, self)
    }

    public func workers() async throws -> [WorkerRecord] {
        try await rows("SELECT * FROM workers ORDER BY connected_at").map { r in
            let w = "a worker"
            return WorkerRecord(workerID: try r.required(r.text, "worker_id", w), name: try r.required(r.text, "name", w),
                                slots: try r.required(r.int, "slots", w),
                                kinds: try r.required(r.text, "kinds", w).split(separator: ",").map(String.init),
                                address: try r.required(r.text, "address", w), connectedAt: try r.required(r.double, "connected_at", w),
                                lastSeen: try r.required(r.double, "last_seen", w), disconnectedAt: try r.double("disconnected_at"),
                                tasksDone: try r.required(r.int, "tasks_done", w))
        }
    }
}

/// A postgres-nio row as the shared mapping reads it. Each column's declared type decides what
/// it can be read as; anything else is an error naming the column.
struct PostgresStoredRow: StoredRow {
    let row: PostgresRandomAccessRow
    init(_ row: PostgresRandomAccessRow) { self.row = row }

    private func cell(_ column: String) -> PostgresCell? {
        guard row.contains(column) else { return nil }
        let c = row[column]
        return c.bytes == nil ? nil : c
    }

    private func decode<T: PostgresDecodable>(_ column: String, _ type: T.Type) throws -> T? {
        guard let c = cell(column) else { return nil }
        do { return try c.decode(T.self) } catch {
            throw StoredBlob.IntegrityError(context: "column \(column)", reason: "holds \(c.dataType) where \(T.self) belongs")
        }
    }

    func text(_ column: String) throws -> String? { try decode(column, String.self) }
    func int(_ column: String) throws -> Int? { try decode(column, Int.self) }
    func double(_ column: String) throws -> Double? {
        guard let c = cell(column) else { return nil }
        switch c.dataType {
        case .int2, .int4, .int8: return try int(column).map(Double.init)
        case .numeric: return try decode(column, Decimal.self).map { NSDecimalNumber(decimal: $0).doubleValue }
        default: return try decode(column, Double.self)
        }
    }
    func bytes(_ column: String) throws -> [UInt8]? {
        guard let c = cell(column) else { return nil }
        guard c.dataType == .bytea else {
            throw StoredBlob.IntegrityError(context: "column \(column)", reason: "holds \(c.dataType) where bytes belong")
        }
        return try decode(column, ByteBuffer.self).map { Array($0.readableBytesView) }
    }
    func bool(_ column: String) throws -> Bool? { try decode(column, Bool.self) }

    /// The cell as a JSON value, for record tables: numbers, text, null.
    func json(_ index: Int) throws -> JSONValue {
        let c = row[index]
        guard c.bytes != nil else { return .null }
        switch c.dataType {
        case .int2, .int4, .int8: return .int(Int64(try c.decode(Int.self)))
        case .float4, .float8: return .double(try c.decode(Double.self))
        case .numeric:
            let d = try c.decode(Decimal.self)
            let n = NSDecimalNumber(decimal: d)
            if d == Decimal(n.int64Value) { return .int(n.int64Value) }
            return .double(n.doubleValue)
        case .bool: return .int(try c.decode(Bool.self) ? 1 : 0)
        case .bytea: return .string(String(decoding: try c.decode(ByteBuffer.self).readableBytesView, as: UTF8.self))
        default: return .string(try c.decode(String.self))
        }
    }
}
