import CairnCore
import CairnStore
import NIOCore
import PostgresNIO

/// A batch as the statements that write it: one multi-row `INSERT` per table (chunked under
/// PostgreSQL's 65,535 parameters), each parameter cast to its column's type so NULLs type too.
/// Upserts keep the last row per key (PostgreSQL refuses to update one row twice in a statement);
/// insert-or-ignore keeps the first, as `ON CONFLICT DO NOTHING` does row by row.
enum PostgresWrites {
    enum Value {
        case text(String?), int(Int?), double(Double?), bytes([UInt8]?), bool(Bool?)
    }

    struct Table {
        let name: String
        let columns: [(String, String)]  // (name, type)
        /// After `VALUES …`: `ON CONFLICT …`.
        let conflict: String

        func statements(_ rows: [[Value]]) -> [PostgresQuery] {
            guard !rows.isEmpty else { return [] }
            let head = "INSERT INTO \(name) (\(columns.map(\.0).joined(separator: ", "))) VALUES "
            let perStatement = max(1, 30_000 / columns.count)
            var out: [PostgresQuery] = []
            var start = 0
            while start < rows.count {
                let chunk = rows[start..<min(start + perStatement, rows.count)]
                start += chunk.count
                var binds = PostgresBindings(capacity: chunk.count * columns.count)
                var tuples: [String] = []
                tuples.reserveCapacity(chunk.count)
                for row in chunk {
                    var cells: [String] = []
                    for (value, (_, type)) in zip(row, columns) {
                        switch value {
                        case .text(let v): binds.append(v)
                        case .int(let v): binds.append(v)
                        case .double(let v): binds.append(v)
                        case .bytes(let v): binds.append(v.map { ByteBuffer(bytes: $0) })
                        case .bool(let v): binds.append(v)
                        }
                        cells.append("$\(binds.count)::\(type)")
                    }
                    tuples.append("(" + cells.joined(separator: ",") + ")")
                }
                out.append(PostgresQuery(unsafeSQL: head + tuples.joined(separator: ",") + " " + conflict, binds: binds))
            }
            return out
        }
    }

    static func lastPerKey<T, K: Hashable>(_ items: [T], _ key: (T) -> K) -> [T] {
        var index: [K: Int] = [:]
        var out: [T] = []
        for item in items {
            if let i = index[key(item)] { out[i] = item } else { index[key(item)] = out.count; out.append(item) }
        }
        return out
    }

    static let graphs = Table(name: "graphs", columns: [
        ("hash", "text"), ("name", "text"), ("version", "bigint"), ("file_name", "text"), ("source", "bytea"),
        ("source_codec", "smallint"), ("source_sha256", "bytea"), ("bundle_hash", "text"), ("created_at", "double precision"),
    ], conflict: "ON CONFLICT (hash) DO NOTHING")

    static let bundles = Table(name: "bundles", columns: [("hash", "text"), ("size", "bigint"), ("data", "bytea")],
                               conflict: "ON CONFLICT (hash) DO NOTHING")

    static let runColumns: [(String, String)] = [
        ("run_id", "text"), ("graph_hash", "text"), ("graph_name", "text"), ("graph_version", "bigint"), ("status", "text"),
        ("durability", "text"), ("input", "bytea"), ("output", "bytea"), ("output_codec", "smallint"), ("error", "text"),
        ("interrupt", "bytea"), ("cost", "double precision"), ("api_calls", "bigint"), ("resume_count", "bigint"), ("step", "bigint"),
        ("checkpoint_id", "text"), ("created_at", "double precision"), ("updated_at", "double precision"),
        ("finished_at", "double precision"), ("input_sha256", "bytea"), ("output_sha256", "bytea"), ("interrupt_sha256", "bytea"),
        ("forked_from", "text"), ("tokens_in", "bigint"), ("tokens_out", "bigint"),
    ]
    /// A run's upsert leaves `pinned` and `created_at` as they are (`cairn pin` sets the one).
    static let runs = Table(name: "runs", columns: runColumns, conflict: "ON CONFLICT (run_id) DO UPDATE SET "
        + runColumns.map(\.0).filter { $0 != "run_id" && $0 != "created_at" }.map { "\($0) = excluded.\($0)" }.joined(separator: ", "))

    static let checkpoints = Table(name: "checkpoints", columns: [
        ("run_id", "text"), ("ns", "text"), ("checkpoint_id", "text"), ("parent_id", "text"), ("step", "bigint"), ("source", "text"),
        ("channel_versions", "bytea"), ("next_tasks", "bytea"), ("metadata", "bytea"), ("created_at", "double precision"),
    ], conflict: "ON CONFLICT (run_id, ns, checkpoint_id) DO NOTHING")

    static let channelValues = Table(name: "channel_values", columns: [
        ("run_id", "text"), ("ns", "text"), ("channel", "text"), ("version", "text"), ("base_version", "text"),
        ("codec", "smallint"), ("sha256", "bytea"), ("data", "bytea"),
    ], conflict: "ON CONFLICT (run_id, ns, channel, version) DO NOTHING")

    static let pendingWrites = Table(name: "pending_writes", columns: [
        ("run_id", "text"), ("ns", "text"), ("checkpoint_id", "text"), ("task_id", "text"), ("idx", "bigint"), ("channel", "text"),
        ("codec", "smallint"), ("sha256", "bytea"), ("data", "bytea"),
    ], conflict: "ON CONFLICT (run_id, ns, checkpoint_id, task_id, idx) DO NOTHING")

    static let attempts = Table(name: "attempts", columns: [
        ("run_id", "text"), ("step", "bigint"), ("task_id", "text"), ("attempt", "bigint"), ("status", "text"), ("node", "text"),
        ("worker", "text"), ("queued_at", "double precision"), ("started_at", "double precision"), ("finished_at", "double precision"),
        ("duration_ms", "double precision"), ("error", "text"), ("error_kind", "text"), ("cost", "double precision"),
        ("api_calls", "bigint"), ("tokens_in", "bigint"), ("tokens_out", "bigint"), ("metrics", "text"),
    ], conflict: "ON CONFLICT (run_id, step, task_id, attempt, status) DO NOTHING")

    static let apiCalls = Table(name: "api_calls", columns: [
        ("run_id", "text"), ("step", "bigint"), ("task_id", "text"), ("attempt", "bigint"), ("status", "text"), ("idx", "bigint"),
        ("node", "text"), ("provider", "text"), ("model", "text"), ("operation", "text"), ("tokens_in", "bigint"),
        ("tokens_out", "bigint"), ("cost", "double precision"), ("latency_ms", "double precision"), ("call_status", "text"),
        ("at", "double precision"),
    ], conflict: "ON CONFLICT (run_id, step, task_id, attempt, status, idx) DO NOTHING")

    static let assets = Table(name: "assets", columns: [
        ("run_id", "text"), ("step", "bigint"), ("task_id", "text"), ("attempt", "bigint"), ("status", "text"), ("idx", "bigint"),
        ("node", "text"), ("name", "text"), ("kind", "text"), ("uri", "text"), ("bytes", "bigint"), ("sha256", "text"),
        ("meta", "text"), ("created_at", "double precision"),
    ], conflict: "ON CONFLICT (run_id, step, task_id, attempt, status, idx) DO NOTHING")

    static let workerColumns: [(String, String)] = [
        ("worker_id", "text"), ("name", "text"), ("slots", "bigint"), ("kinds", "text"), ("address", "text"),
        ("connected_at", "double precision"), ("last_seen", "double precision"), ("disconnected_at", "double precision"),
        ("tasks_done", "bigint"),
    ]
    static let workers = Table(name: "workers", columns: workerColumns, conflict: """
        ON CONFLICT (worker_id) DO UPDATE SET last_seen = excluded.last_seen, disconnected_at = excluded.disconnected_at,
          tasks_done = excluded.tasks_done, slots = excluded.slots
        """)

    static func sha(_ bytes: [UInt8]?) -> [UInt8]? { bytes.map { Hashing.sha256($0) } }

    /// Every statement of `b`, in the order foreign keys need (graphs before runs).
    static func statements(_ b: StoreBatch) -> [PostgresQuery] {
        var out: [PostgresQuery] = []
        out += graphs.statements(b.graphs.map { g in
            let bytes = Array(g.source.utf8)
            let (codec, source) = StoredRows.pack(bytes)
            return [.text(g.hash), .text(g.name), .int(g.version), .text(g.fileName), .bytes(source), .int(codec),
                    .bytes(Hashing.sha256(bytes)), .text(g.bundleHash), .double(g.createdAt)]
        })
        out += bundles.statements(b.bundles.map { [.text($0.hash), .int($0.data.count), .bytes($0.data)] })
        out += runs.statements(lastPerKey(b.runs, \.runID).map { r in
            let input = r.input.map { $0.jsonBytes() }, output = r.output.map { $0.jsonBytes() }, interrupt = r.interrupt.map { $0.jsonBytes() }
            let packed = output.map { StoredRows.pack($0) }
            return [.text(r.runID), .text(r.graphHash), .text(r.graphName), .int(r.graphVersion), .text(r.status.rawValue),
                    .text(r.durability), .bytes(input), .bytes(packed?.data), .int(packed?.codec ?? 0), .text(r.error),
                    .bytes(interrupt), .double(r.cost), .int(r.apiCalls), .int(r.resumeCount), .int(r.step),
                    .text(r.checkpointID), .double(r.createdAt), .double(r.updatedAt), .double(r.finishedAt),
                    .bytes(sha(input)), .bytes(sha(output)), .bytes(sha(interrupt)), .text(r.forkedFrom), .int(r.tokensIn), .int(r.tokensOut)]
        })
        out += checkpoints.statements(b.checkpoints.map { c in
            [.text(c.runID), .text(c.namespace), .text(c.checkpointID), .text(c.parentID), .int(c.step), .text(c.source),
             .bytes(StoredRows.storedVersions(c)), .bytes(c.nextTasks.jsonBytes()), .bytes(c.metadata.jsonBytes()), .double(c.createdAt)]
        })
        out += channelValues.statements(b.channelValues.map { v in
            let blob = StoredBlob(v.value)
            return [.text(v.runID), .text(v.namespace), .text(v.channel), .text(v.version), .text(v.baseVersion),
                    .int(Int(blob.codec.rawValue)), .bytes(blob.sha256), .bytes(blob.data)]
        })
        out += pendingWrites.statements(b.pendingWrites.map { w in
            let blob = StoredBlob(w.value)
            return [.text(w.runID), .text(w.namespace), .text(w.checkpointID), .text(w.taskID), .int(w.idx), .text(w.channel),
                    .int(Int(blob.codec.rawValue)), .bytes(blob.sha256), .bytes(blob.data)]
        })
        for k in b.prunedWrites {
            out.append("DELETE FROM pending_writes WHERE run_id = \(k.runID) AND ns = \(k.namespace) AND checkpoint_id = \(k.checkpointID)")
        }
        var calls: [[Value]] = [], assetRows: [[Value]] = []
        out += attempts.statements(b.taskExecutions.map { t in
            let r = t.records
            let metrics = r.metrics.isEmpty ? nil : String(decoding: JSONValue.object(r.metrics.mapValues { .double($0) }).jsonBytes(), as: UTF8.self)
            for (i, x) in r.apiCallLog.enumerated() {
                calls.append([.text(t.runID), .int(t.step), .text(t.taskID), .int(t.attempt), .text(t.status), .int(i), .text(t.node),
                              .text(x.provider), .text(x.model), .text(x.operation), .int(x.tokensIn), .int(x.tokensOut), .double(x.cost),
                              .double(x.latencyMS), .text(x.status), .double(t.startedAt)])
            }
            for (i, x) in r.assets.enumerated() {
                assetRows.append([.text(t.runID), .int(t.step), .text(t.taskID), .int(t.attempt), .text(t.status), .int(i), .text(t.node),
                                  .text(x.name), .text(x.kind), .text(x.uri), .int(x.bytes.map { Int($0) }), .text(x.sha256),
                                  .text(x.meta.map { String(decoding: $0.jsonBytes(), as: UTF8.self) }), .double(t.finishedAt)])
            }
            return [.text(t.runID), .int(t.step), .text(t.taskID), .int(t.attempt), .text(t.status), .text(t.node), .text(t.worker),
                    .double(t.queuedAt), .double(t.startedAt), .double(t.finishedAt), .double(t.durationMilliseconds), .text(t.error),
                    .text(t.errorKind), .double(r.cost), .int(r.apiCalls), .int(r.tokensIn), .int(r.tokensOut), .text(metrics)]
        })
        // A replayed batch: its attempts are stored already, and so (by the same keys) their calls and assets.
        out += apiCalls.statements(calls)
        out += assets.statements(assetRows)
        out += workers.statements(lastPerKey(b.workers, \.workerID).map { w in
            [.text(w.workerID), .text(w.name), .int(w.slots), .text(w.kinds.joined(separator: ",")), .text(w.address),
             .double(w.connectedAt), .double(w.lastSeen), .double(w.disconnectedAt), .int(w.tasksDone)]
        })
        return out
    }
}

/// Which PostgreSQL failures a retry can heal, by SQLSTATE class: the coordinator's writer
/// holds its batch through these (a server restarting, unreachable, full, read-only in
/// recovery) and stops writing on the rest (damage, a schema that is not Cairn's).
enum PostgresFaults {
    static func kind(sqlState: String) -> StoreFault.Kind {
        switch sqlState {
        case "XX001", "XX002": return .permanent  // data_corrupted, index_corrupted
        default: break
        }
        switch sqlState.prefix(2) {
        case "42": return .permanent  // a table or column that is not there: not Cairn's schema
        default: return .transient   // 08 connection, 53 resources (disk full), 57 shutdown, 40 serialization, 25 read-only…
        }
    }

    /// Whether `error` says the server could not be reached (no answer at all), as opposed to an
    /// answer that refused, or a value that did not read back.
    static func isUnreachable(_ error: any Error) -> Bool {
        var error = error
        if let t = error as? PostgresTransactionError {
            guard let inner = t.beginError ?? t.closureError ?? t.commitError else { return false }
            error = inner
        }
        if let t = error as? LeaseTimeout { return !t.busy }
        if error is WorkTimeout || error is Deposed { return false }
        if error is StoredBlob.IntegrityError || error is StoreError || error is StoreFault || error is CancellationError
            || error is PostgresDecodingError { return false }
        if let e = error as? PSQLError {
            // A login the server refused is an answer, not silence.
            let refused: [PSQLError.Code] = [.authMechanismRequiresPassword, .unsupportedAuthMechanism, .saslError, .sslUnsupported]
            return e.serverInfo?[.sqlState] == nil && !refused.contains(e.code)
        }
        return true
    }

    static func fault(_ error: any Error, doing: String) -> any Error {
        var error = error
        if let t = error as? PostgresTransactionError {
            guard let inner = t.beginError ?? t.closureError ?? t.commitError else { return error }
            error = inner
        }
        if error is StoredBlob.IntegrityError || error is StoreError || error is StoreFault { return error }
        // Held, not failed: the coordinator steps down as soon as it hears (see `Fencing`).
        if let d = error as? Deposed { return StoreFault(.transient, "\(d) \(doing)") }
        if error is CancellationError { return error }
        if let t = error as? LeaseTimeout {
            return StoreFault(.transient, "PostgreSQL \(t.busy ? "busy" : "unreachable") (\(t)) \(doing)")
        }
        if let t = error as? WorkTimeout { return StoreFault(.transient, "PostgreSQL unreachable (\(t)) \(doing)") }
        if error is PostgresDecodingError {
            return StoreFault(.permanent, "a stored value does not decode as Cairn's schema says (\(error)) \(doing)")
        }
        guard let e = error as? PSQLError else {
            // The pool's own failures (no connection could be made: its circuit breaker, a
            // connect timeout) and the network's: a server that is down or unreachable.
            return StoreFault(.transient, "PostgreSQL unreachable (\(error)) \(doing)")
        }
        switch e.code {
        case .authMechanismRequiresPassword:
            return StoreFault(.transient, "the server asks for a password and none was given (put it in the URL or in PGPASSWORD) \(doing)")
        case .unsupportedAuthMechanism, .saslError:
            return StoreFault(.transient, "the server asks for a login Cairn cannot give (\(e.code); md5 and scram-sha-256 are supported) \(doing)")
        case .sslUnsupported:
            return StoreFault(.transient, "the server does not offer TLS and the URL says sslmode=require \(doing)")
        default: break
        }
        if let state = e.serverInfo?[.sqlState] {
            let message = e.serverInfo?[.message] ?? "error"
            return StoreFault(kind(sqlState: state), "\(message) (PostgreSQL SQLSTATE \(state)) \(doing)")
        }
        // No answer from a server: it is down, restarting or unreachable; the pool dials again.
        var why = "\(e.code)"
        if let u = e.underlying { why += ": \(u)" }
        return StoreFault(.transient, "PostgreSQL unreachable (\(why)) \(doing)")
    }
}
