import CairnCore
import CairnStore
import Foundation
import PostgresNIO

extension PostgresStore: MaintainedStore {
    public func setPinned(_ runID: String, _ pinned: Bool) async throws -> Bool {
        try await perform("writing") {
            try await self.transaction { conn in
                let rows = try await conn.query("UPDATE runs SET pinned = \(pinned) WHERE run_id = \(runID) RETURNING run_id", logger: self.logger)
                return try await rows.collect().count > 0
            }
        }
    }

    static let ownedTables = ["checkpoints", "channel_values", "pending_writes", "attempts", "api_calls", "assets"]

    public func deleteRuns(_ runIDs: [String]) async throws -> DeletionReport {
        var report = DeletionReport()
        let before = try await databaseBytes()
        // A few runs per transaction: each run goes whole or not at all.
        var i = 0
        while i < runIDs.count {
            let chunk = Array(runIDs[i..<min(i + 20, runIDs.count)])
            i += chunk.count
            let part = try await perform("deleting runs in") {
                try await self.transaction { conn in
                    var part = DeletionReport()
                    var graphs = Set<String>()
                    for id in chunk {
                        let found = try await conn.query("DELETE FROM runs WHERE run_id = \(id) RETURNING graph_hash", logger: self.logger)
                        guard let row = try await found.collect().first else { continue }
                        graphs.insert(try row.decode(String.self))
                        for table in Self.ownedTables {
                            let n = try await conn.query(PostgresQuery(unsafeSQL: "WITH d AS (DELETE FROM \(table) WHERE run_id = $1 RETURNING 1) SELECT COUNT(*) FROM d",
                                                                       binds: { var b = PostgresBindings(); b.append(id); return b }()),
                                                         logger: self.logger)
                            let count = try await n.collect().first.map { try $0.decode(Int.self) } ?? 0
                            if table == "checkpoints" { part.checkpoints += count }
                            if table == "channel_values" { part.values += count }
                            if table == "attempts" { part.attempts += count }
                        }
                        part.runs.append(id)
                    }
                    for hash in graphs.sorted() {
                        let g = try await conn.query("""
                            DELETE FROM graphs WHERE hash = \(hash) AND NOT EXISTS (SELECT 1 FROM runs WHERE graph_hash = \(hash)) RETURNING bundle_hash
                            """, logger: self.logger).collect()
                        guard let row = g.first else { continue }
                        part.graphs += 1
                        guard let bundle = try row.decode(String?.self) else { continue }
                        let b = try await conn.query("""
                            DELETE FROM bundles WHERE hash = \(bundle) AND NOT EXISTS (SELECT 1 FROM graphs WHERE bundle_hash = \(bundle)) RETURNING 1
                            """, logger: self.logger).collect()
                        part.bundles += b.count
                    }
                    return part
                }
            }
            report.runs += part.runs; report.checkpoints += part.checkpoints; report.values += part.values
            report.attempts += part.attempts; report.graphs += part.graphs; report.bundles += part.bundles
        }
        // PostgreSQL keeps freed pages for reuse; VACUUM gives back only the empty pages at each
        // table's end. What it gave back is what is reported, measured as the database's size.
        try await perform("vacuuming") {
            for table in ["runs", "graphs", "bundles"] + Self.ownedTables {
                try await self.leased { try await $0.query(PostgresQuery(unsafeSQL: "VACUUM \(table)"), logger: self.logger) }
            }
        }
        report.bytesFreed = max(0, before - (try await databaseBytes()))
        return report
    }

    func databaseBytes() async throws -> Int64 {
        let r = try await longRows("SELECT pg_database_size(current_database()) AS n")
        return Int64(try r.first.map { try $0.required($0.int, "n", "pg_database_size") } ?? 0)
    }

    public func exportRun(_ runID: String) async throws -> StoreBatch? {
        guard let row = try await longRows("SELECT * FROM runs WHERE run_id = \(runID)").first else { return nil }
        var b = StoreBatch()
        var run = try StoredRows.run(row)
        run.pinned = false  // a pin is this store's retention choice, not part of the run
        b.runs = [run]
        guard let graph = try await graph(run.graphHash) else {
            throw StoredBlob.IntegrityError(context: "run \(runID) (runs.graph_hash)", reason: "names graph \(run.graphHash), which is not stored")
        }
        b.graphs = [graph]
        if let hash = graph.bundleHash {
            guard let data = try await bundle(hash) else {
                throw StoredBlob.IntegrityError(context: "graph \(graph.hash) (graphs.bundle_hash)", reason: "names bundle \(hash), which is not stored")
            }
            b.bundles = [BundleRecord(hash: hash, data: data)]
        }
        b.checkpoints = try await longRows("SELECT * FROM checkpoints WHERE run_id = \(runID) ORDER BY ns, checkpoint_id").map { try StoredRows.checkpoint($0) }
        b.channelValues = try await longRows("SELECT * FROM channel_values WHERE run_id = \(runID) ORDER BY ns, channel, version").map { r in
            let w = "run \(runID): a channel value"
            let channel = try r.required(r.text, "channel", w), version = try r.required(r.text, "version", w)
            let value = try StoredRows.blob(r).decode(context: "run \(runID) channel '\(channel)' version \(version)")
            return ChannelValueRecord(runID: runID, namespace: try r.required(r.text, "ns", w), channel: channel, version: version,
                                      baseVersion: try r.text("base_version"), value: value)
        }
        b.channelValues.sort { ($0.namespace, $0.channel, $0.version) < ($1.namespace, $1.channel, $1.version) }
        b.pendingWrites = try await longRows("SELECT * FROM pending_writes WHERE run_id = \(runID) ORDER BY ns, checkpoint_id, task_id, idx").map { r in
            let w = "run \(runID): a pending write"
            let cp = try r.required(r.text, "checkpoint_id", w), task = try r.required(r.text, "task_id", w)
            let value = try StoredRows.blob(r).decode(context: "run \(runID) checkpoint \(cp) task \(task) write")
            return PendingWriteRecord(runID: runID, namespace: try r.required(r.text, "ns", w), checkpointID: cp, taskID: task,
                                      idx: try r.required(r.int, "idx", w), channel: try r.required(r.text, "channel", w), value: value)
        }
        b.taskExecutions = try await PostgresRecords.attempts(runID: runID, self).sorted {
            ($0.step, $0.taskID, $0.attempt, $0.status) < ($1.step, $1.taskID, $1.attempt, $1.status)
        }
        return b
    }

    public func verify(runIDs: [String]?) async throws -> VerifyReport {
        var v = PostgresVerifier(store: self)
        try await v.run(runIDs)
        return v.report
    }
}

/// `cairn verify` on PostgreSQL: reads every stored byte of the runs it is given, checks each
/// checksum and that every version a checkpoint names rests on stored values down to a full
/// snapshot, and reports each thing wrong once, where it is.
struct PostgresVerifier {
    let store: PostgresStore
    var report = VerifyReport()
    enum Entry { case value(base: String?, isList: Bool), damaged }
    /// Per run: "ns \u{1F} channel \u{1F} version" → entry.
    private var entries: [String: [String: Entry]] = [:]
    private var checkedGraphs = Set<String>()

    init(store: PostgresStore) { self.store = store }

    private mutating func damage(_ run: String?, checkpoint: String? = nil, channel: String? = nil, version: String? = nil, _ problem: String) {
        report.damage.append(Damage(runID: run, checkpointID: checkpoint, channel: channel, version: version, problem: problem))
    }

    private static func reason(_ e: any Error) -> String { (e as? StoredBlob.IntegrityError)?.reason ?? "\(e)" }

    mutating func run(_ runIDs: [String]?) async throws {
        let ids: [String]
        if let runIDs { ids = runIDs } else {
            ids = try await store.longRows("SELECT run_id FROM runs ORDER BY created_at, run_id").map { try $0.required($0.text, "run_id", "runs") }
        }
        for id in ids { try await verifyRun(id) }
        if runIDs == nil { try await orphans() }
    }

    private mutating func verifyRun(_ id: String) async throws {
        guard let row = try await store.longRows("SELECT * FROM runs WHERE run_id = \(id)").first else { damage(id, "no such run is stored"); return }
        report.runs += 1
        var origin: (runID: String, checkpointID: String)?
        do { origin = try StoredRows.run(row).forkOrigin } catch { damage(id, Self.reason(error)) }
        if let hash = try row.text("graph_hash") { try await verifyGraph(hash, run: id) }
        try await loadEntries(id, report: true)
        let rows = try await store.longRows("SELECT * FROM checkpoints WHERE run_id = \(id) ORDER BY ns, checkpoint_id")
        var ids = Set<String>()
        for r in rows { ids.insert((try r.text("ns") ?? "") + "\u{1F}" + (try r.text("checkpoint_id") ?? "")) }
        if let head = try row.text("checkpoint_id"), !ids.contains("\u{1F}" + head) {
            damage(id, checkpoint: head, "the run's newest checkpoint is not stored")
        }
        for r in rows {
            report.checkpoints += 1
            let cpID = try r.text("checkpoint_id") ?? "?", ns = try r.text("ns") ?? ""
            let c: CheckpointRecord
            do { c = try StoredRows.checkpoint(r) } catch { damage(id, checkpoint: cpID, Self.reason(error)); continue }
            if let parent = c.parentID, !ids.contains(ns + "\u{1F}" + parent) {
                var inOrigin = false
                if let origin, origin.checkpointID == parent {
                    inOrigin = try await !store.longRows("SELECT 1 FROM checkpoints WHERE run_id = \(origin.runID) AND ns = \(ns) AND checkpoint_id = \(parent)").isEmpty
                }
                if !inOrigin { damage(id, checkpoint: cpID, "its parent checkpoint \(parent) is not stored") }
            }
            for (channel, stored) in c.channelVersions.sorted(by: { $0.key < $1.key }) {
                let ref = ChannelVersion(stored, run: id)
                if let problem = try await resolve(ref.runID, ns, channel, ref.version, from: id) {
                    damage(id, checkpoint: cpID, channel: channel, version: stored, problem)
                }
            }
        }
        for r in try await store.longRows("SELECT * FROM pending_writes WHERE run_id = \(id) ORDER BY ns, checkpoint_id, task_id, idx") {
            report.writes += 1
            let cp = try r.text("checkpoint_id") ?? "?", task = try r.text("task_id") ?? "?", ns = try r.text("ns") ?? ""
            do { _ = try StoredRows.blob(r).decode(context: "") } catch {
                damage(id, checkpoint: cp, channel: try r.text("channel"), "task \(task)'s pending write \(try r.int("idx") ?? -1): \(Self.reason(error))")
            }
            if !ids.contains(ns + "\u{1F}" + cp) { damage(id, checkpoint: cp, "task \(task)'s pending write belongs to a checkpoint that is not stored") }
        }
        do { report.attempts += try await PostgresRecords.attempts(runID: id, store).count } catch { damage(id, Self.reason(error)) }
    }

    private mutating func verifyGraph(_ hash: String, run: String) async throws {
        guard checkedGraphs.insert(hash).inserted else { return }
        guard let g = try await store.longRows("SELECT * FROM graphs WHERE hash = \(hash)").first else { damage(run, "its graph \(hash) is not stored"); return }
        let record: GraphRecord
        do { record = try StoredRows.graph(g) } catch { damage(run, "graph \(hash): \(Self.reason(error))"); return }
        guard let bundle = record.bundleHash else { return }
        do {
            if try await store.bundle(bundle) == nil { damage(run, "graph \(hash) names bundle \(bundle), which is not stored") }
        } catch { damage(run, "bundle \(bundle): \(Self.reason(error))") }
    }

    private mutating func loadEntries(_ run: String, report reporting: Bool) async throws {
        if entries[run] != nil && !reporting { return }
        var out: [String: Entry] = [:]
        for r in try await store.longRows("SELECT ns, channel, version, base_version, codec, sha256, data FROM channel_values WHERE run_id = \(run)") {
            let key = (try r.text("ns") ?? "") + "\u{1F}" + (try r.text("channel") ?? "") + "\u{1F}" + (try r.text("version") ?? "")
            if reporting { report.values += 1 }
            do {
                let value = try StoredRows.blob(r).decode(context: "")
                out[key] = .value(base: try r.text("base_version"), isList: value.arrayValue != nil)
            } catch {
                out[key] = .damaged
                // A value's version is the id of the checkpoint that wrote it: that is where it is named.
                let version = try r.text("version")
                if reporting { damage(run, checkpoint: version, channel: try r.text("channel"), version: version, Self.reason(error)) }
            }
        }
        entries[run] = out
    }

    /// Nil when the value and every delta under it are stored and readable, else what is wrong
    /// (a damaged value was reported where it is, and is not reported again).
    private mutating func resolve(_ run: String, _ ns: String, _ channel: String, _ version: String, from: String) async throws -> String? {
        var current = (run: run, version: version)
        var wantList = false
        for depth in 0..<100_000 {
            try await loadEntries(current.run, report: false)
            guard let entry = entries[current.run]?[ns + "\u{1F}" + channel + "\u{1F}" + current.version] else {
                return depth == 0 ? "no value is stored at this version"
                    : "rests on version \(ChannelVersion(current.version, run: current.run).stored(in: from)), which is not stored"
            }
            guard case .value(let base, let isList) = entry else { return nil }
            if wantList && !isList { return "a delta rests on a value that is not a list" }
            guard let base else { return nil }
            if !isList { return "a delta whose items are not a list" }
            wantList = true
            let next = ChannelVersion(base, run: current.run)
            current = (next.runID, next.version)
        }
        return "its delta chain does not end"
    }

    private mutating func orphans() async throws {
        for table in PostgresStore.ownedTables {
            for r in try await store.longRows(PostgresQuery(unsafeSQL: """
                SELECT run_id, COUNT(*) AS n FROM \(table) WHERE run_id NOT IN (SELECT run_id FROM runs) GROUP BY run_id ORDER BY run_id
                """)) {
                damage(try r.text("run_id"), "\(try r.int("n") ?? 0) row(s) of \(table) belong to no stored run")
            }
        }
        let graphs = try await store.longRows("SELECT COUNT(*) AS n FROM graphs WHERE hash NOT IN (SELECT graph_hash FROM runs)").first.map { try $0.int("n") ?? 0 } ?? 0
        if graphs > 0 { damage(nil, "\(graphs) graph(s) are used by no stored run") }
        let bundles = try await store.longRows("""
            SELECT COUNT(*) AS n FROM bundles WHERE hash NOT IN (SELECT bundle_hash FROM graphs WHERE bundle_hash IS NOT NULL)
            """).first.map { try $0.int("n") ?? 0 } ?? 0
        if bundles > 0 { damage(nil, "\(bundles) bundle(s) are used by no stored graph") }
    }
}
