import CairnCore
import CairnStore
import Foundation
import GRDB

extension SQLiteStore: MaintainedStore {
    public func verify(runIDs: [String]?) async throws -> VerifyReport {
        // One read transaction: a consistent snapshot while the coordinator keeps writing.
        try await pool.read { db in
            var v = SQLiteVerifier(db: db)
            try v.run(runIDs)
            return v.report
        }
    }

    public func exportRun(_ runID: String) async throws -> StoreBatch? {
        try await pool.read { db in try SQLiteExport.batch(runID, db) }
    }

    public func setPinned(_ runID: String, _ pinned: Bool) async throws -> Bool {
        let pool = self.pool
        do {
            return try await writer.run {
                try pool.write { db in
                    try db.execute(sql: "UPDATE runs SET pinned = ? WHERE run_id = ?", arguments: [pinned, runID])
                    return db.changesCount > 0
                }
            }
        } catch { throw SQLiteFaults.fault(error, path: path) }
    }

    public func deleteRuns(_ runIDs: [String]) async throws -> DeletionReport {
        let pool = self.pool
        let path = self.path
        @Sendable func fileBytes() throws -> Int64 {
            guard let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber else {
                throw StoreFault(.transient, "cannot read the size of \(path)")
            }
            return size.int64Value
        }
        do {
            var report = DeletionReport()
            // A few runs per transaction: each run goes whole or not at all (a kill -9 between
            // transactions leaves whole runs), and the writer is never held long.
            var i = 0
            while i < runIDs.count {
                let chunk = Array(runIDs[i..<min(i + 20, runIDs.count)])
                i += chunk.count
                let part = try await writer.run { try pool.write { db in try SQLiteDeletion.delete(chunk, db) } }
                report.runs += part.runs; report.checkpoints += part.checkpoints; report.values += part.values
                report.attempts += part.attempts; report.graphs += part.graphs; report.bundles += part.bundles
            }
            // Give the freed pages back: incremental vacuum moves them to the end and truncates
            // (a file made before auto-vacuum was on is converted once, by a VACUUM), then the
            // log is checkpointed so the file itself shrinks.
            // Measured between two log checkpoints: the file as the deletes left it (their freed
            // pages still in it), then as the vacuum left it.
            let before = try await writer.run {
                try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
                return try fileBytes()
            }
            try await writer.run {
                try pool.writeWithoutTransaction { db in
                    if try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") != 2 {
                        try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
                        try db.execute(sql: "VACUUM")
                    } else {
                        try db.execute(sql: "PRAGMA incremental_vacuum")
                    }
                    _ = try db.checkpoint(.truncate)
                }
            }
            report.bytesFreed = max(0, before - (try fileBytes()))
            return report
        } catch { throw SQLiteFaults.fault(error, path: path) }
    }

}

/// Deleting runs with everything they own, and the graphs and bundles only they used.
enum SQLiteDeletion {
    static let ownedTables = ["channel_values", "pending_writes", "attempts", "api_calls", "assets"]

    static func delete(_ runIDs: [String], _ db: Database) throws -> DeletionReport {
        var report = DeletionReport()
        var graphs = Set<String>()
        for id in runIDs {
            guard let graph = try String.fetchOne(db, sql: "SELECT graph_hash FROM runs WHERE run_id = ?", arguments: [id]) else { continue }
            graphs.insert(graph)
            try db.execute(sql: """
                DELETE FROM checkpoint_inline WHERE id IN (SELECT inline_id FROM checkpoints WHERE run_id = ? AND inline_id IS NOT NULL)
                """, arguments: [id])
            try db.execute(sql: "DELETE FROM checkpoints WHERE run_id = ?", arguments: [id])
            report.checkpoints += db.changesCount
            for table in ownedTables {
                try db.execute(sql: "DELETE FROM \(table) WHERE run_id = ?", arguments: [id])
                if table == "channel_values" { report.values += db.changesCount }
                if table == "attempts" { report.attempts += db.changesCount }
            }
            try db.execute(sql: "DELETE FROM runs WHERE run_id = ?", arguments: [id])
            report.runs.append(id)
        }
        for hash in graphs.sorted() {
            guard try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM runs WHERE graph_hash = ?)", arguments: [hash]) == false else { continue }
            let bundle = try String.fetchOne(db, sql: "SELECT bundle_hash FROM graphs WHERE hash = ?", arguments: [hash])
            try db.execute(sql: "DELETE FROM graphs WHERE hash = ?", arguments: [hash])
            report.graphs += db.changesCount
            if let bundle {
                try db.execute(sql: "DELETE FROM bundles WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM graphs WHERE bundle_hash = ?)",
                               arguments: [bundle, bundle])
                report.bundles += db.changesCount
            }
        }
        return report
    }
}

/// A run read out whole, as the batch that writes it again (`cairn export`).
enum SQLiteExport {
    static func batch(_ runID: String, _ db: Database) throws -> StoreBatch? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE run_id = ?", arguments: [runID]) else { return nil }
        var b = StoreBatch()
        var run = try RunColumns.record(row)
        run.pinned = false  // a pin is this store's retention choice, not part of the run
        b.runs = [run]
        guard let g = try Row.fetchOne(db, sql: "SELECT * FROM graphs WHERE hash = ?", arguments: [run.graphHash]) else {
            throw StoredBlob.IntegrityError(context: "run \(runID) (runs.graph_hash)", reason: "names graph \(run.graphHash), which is not stored")
        }
        let graph = try SQLiteStore.graphRecord(g)
        b.graphs = [graph]
        if let hash = graph.bundleHash {
            guard let data = try Data.fetchOne(db, sql: "SELECT data FROM bundles WHERE hash = ?", arguments: [hash]) else {
                throw StoredBlob.IntegrityError(context: "graph \(graph.hash) (graphs.bundle_hash)", reason: "names bundle \(hash), which is not stored")
            }
            b.bundles = [BundleRecord(hash: hash, data: try SQLiteStore.bundleBytes(hash, data))]
        }
        for r in try Row.fetchAll(db, sql: """
            SELECT c.*, i.data AS inline FROM checkpoints c LEFT JOIN checkpoint_inline i ON i.id = c.inline_id
            WHERE c.run_id = ? ORDER BY c.ns, c.checkpoint_id
            """, arguments: [runID]) {
            let c = try SQLiteStore.checkpointRecord(r)
            b.checkpoints.append(c)
            let inlineID: Int64? = r["inline_id"]
            guard let inlineID else { continue }
            guard let data: Data = r["inline"] else {
                throw StoredBlob.IntegrityError(context: "run \(runID) checkpoint \(c.checkpointID)", reason: "its inline row \(inlineID) is not stored")
            }
            let content = try CheckpointInline.decode(data, context: "run \(runID) checkpoint \(c.checkpointID) inline rows")
            for channel in content.values.keys.sorted() {
                guard let (value, base) = CheckpointInline.value(content.values[channel], parentID: c.parentID) else {
                    throw StoredBlob.IntegrityError(context: "run \(runID) checkpoint \(c.checkpointID) inline rows", reason: "channel '\(channel)' has no value")
                }
                b.channelValues.append(ChannelValueRecord(runID: runID, namespace: c.namespace, channel: channel, version: c.checkpointID,
                                                          baseVersion: base, value: value))
            }
        }
        for r in try Row.fetchAll(db, sql: "SELECT * FROM channel_values WHERE run_id = ? ORDER BY ns, channel, version", arguments: [runID]) {
            let channel: String = r["channel"], version: String = r["version"]
            let value = try SQLiteStore.blob(r).decode(context: "run \(runID) channel '\(channel)' version \(version)")
            b.channelValues.append(ChannelValueRecord(runID: runID, namespace: r["ns"], channel: channel, version: version,
                                                      baseVersion: r["base_version"], value: value))
        }
        b.channelValues.sort { ($0.namespace, $0.channel, $0.version) < ($1.namespace, $1.channel, $1.version) }
        for r in try Row.fetchAll(db, sql: "SELECT * FROM pending_writes WHERE run_id = ? ORDER BY ns, checkpoint_id, task_id, idx", arguments: [runID]) {
            let cp: String = r["checkpoint_id"], task: String = r["task_id"]
            let value = try SQLiteStore.blob(r).decode(context: "run \(runID) checkpoint \(cp) task \(task) write")
            b.pendingWrites.append(PendingWriteRecord(runID: runID, namespace: r["ns"], checkpointID: cp, taskID: task,
                                                      idx: r["idx"], channel: r["channel"], value: value))
        }
        b.taskExecutions = try RecordsSchema.attempts(runID: runID, db).sorted {
            ($0.step, $0.taskID, $0.attempt, $0.status) < ($1.step, $1.taskID, $1.attempt, $1.status)
        }
        return b
    }
}

/// `cairn verify`: reads every stored byte of the runs it is given and reports each thing wrong
/// once, at its root (a damaged value is named; the checkpoints that name it are not repeated).
struct SQLiteVerifier {
    let db: Database
    var report = VerifyReport()

    /// A stored channel value as the checks need it: its base (a delta) and whether it is a list.
    enum Entry { case value(base: String?, isList: Bool), damaged }
    /// Per run: "ns \u{1F} channel \u{1F} version" → entry.
    private var entries: [String: [String: Entry]] = [:]
    private var resolved: [String: Bool] = [:]
    private var checkedGraphs = Set<String>()
    /// Runs whose values were loaded with their damage reported (a fork's parent is loaded
    /// quietly when only the fork is verified).
    private var reportedRuns = Set<String>()

    init(db: Database) { self.db = db }

    private mutating func damage(_ run: String?, checkpoint: String? = nil, channel: String? = nil, version: String? = nil, _ problem: String) {
        report.damage.append(Damage(runID: run, checkpointID: checkpoint, channel: channel, version: version, problem: problem))
    }

    private static func reason(_ e: any Error) -> String {
        if let i = e as? StoredBlob.IntegrityError { return i.reason }
        return "\(e)"
    }

    mutating func run(_ runIDs: [String]?) throws {
        let ids = try runIDs ?? String.fetchAll(db, sql: "SELECT run_id FROM runs ORDER BY created_at, run_id")
        for id in ids { try verifyRun(id) }
        if runIDs == nil {
            try orphans()
            for line in try String.fetchAll(db, sql: "PRAGMA quick_check(20)") where line != "ok" {
                damage(nil, "SQLite quick_check: \(line)")
            }
        }
    }

    private mutating func verifyRun(_ id: String) throws {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE run_id = ?", arguments: [id]) else {
            damage(id, "no such run is stored"); return
        }
        report.runs += 1
        var origin: (runID: String, checkpointID: String)?
        do { origin = try RunColumns.record(row).forkOrigin } catch { damage(id, Self.reason(error)) }
        let graphHash: String = row["graph_hash"]
        try verifyGraph(graphHash, run: id)

        // Values first (each decoded once), then the checkpoints that name them.
        try loadEntries(id, report: true)
        let rows = try Row.fetchAll(db, sql: "SELECT * FROM checkpoints WHERE run_id = ? ORDER BY ns, checkpoint_id", arguments: [id])
        var ids = Set<String>()
        for r in rows { ids.insert((r["ns"] as String) + "\u{1F}" + (r["checkpoint_id"] as String)) }
        if let head: String = row["checkpoint_id"], !ids.contains("\u{1F}" + head) {
            damage(id, checkpoint: head, "the run's newest checkpoint is not stored")
        }
        for r in rows {
            report.checkpoints += 1
            let cpID: String = r["checkpoint_id"], ns: String = r["ns"]
            let c: CheckpointRecord
            do { c = try SQLiteStore.checkpointRecord(r) } catch { damage(id, checkpoint: cpID, Self.reason(error)); continue }
            if let parent = c.parentID, !ids.contains(ns + "\u{1F}" + parent) {
                // A fork's first checkpoint rests on the checkpoint of the run it forked.
                var inOrigin = false
                if let origin, origin.checkpointID == parent {
                    inOrigin = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE run_id = ? AND ns = ? AND checkpoint_id = ?)",
                                                 arguments: [origin.runID, ns, parent]) == true
                }
                if !inOrigin { damage(id, checkpoint: cpID, "its parent checkpoint \(parent) is not stored") }
            }
            for (channel, stored) in c.channelVersions.sorted(by: { $0.key < $1.key }) {
                let ref = ChannelVersion(stored, run: id)
                if let problem = try resolve(ref.runID, ns, channel, ref.version) {
                    damage(id, checkpoint: cpID, channel: channel, version: stored, problem)
                }
            }
        }
        for r in try Row.fetchAll(db, sql: "SELECT * FROM pending_writes WHERE run_id = ? ORDER BY ns, checkpoint_id, task_id, idx", arguments: [id]) {
            report.writes += 1
            let cp: String = r["checkpoint_id"], task: String = r["task_id"], channel: String = r["channel"], ns: String = r["ns"]
            do { _ = try SQLiteStore.blob(r).decode(context: "") } catch {
                damage(id, checkpoint: cp, channel: channel, "task \(task)'s pending write \(r["idx"] as Int): \(Self.reason(error))")
            }
            if !ids.contains(ns + "\u{1F}" + cp) { damage(id, checkpoint: cp, "task \(task)'s pending write belongs to a checkpoint that is not stored") }
        }
        do { report.attempts += try RecordsSchema.attempts(runID: id, db).count } catch { damage(id, Self.reason(error)) }
    }

    private mutating func verifyGraph(_ hash: String, run: String) throws {
        guard checkedGraphs.insert(hash).inserted else { return }
        guard let g = try Row.fetchOne(db, sql: "SELECT * FROM graphs WHERE hash = ?", arguments: [hash]) else {
            damage(run, "its graph \(hash) is not stored"); return
        }
        let record: GraphRecord
        do { record = try SQLiteStore.graphRecord(g) } catch { damage(run, "graph \(hash): \(Self.reason(error))"); return }
        guard let bundle = record.bundleHash else { return }
        guard let data = try Data.fetchOne(db, sql: "SELECT data FROM bundles WHERE hash = ?", arguments: [bundle]) else {
            damage(run, "graph \(hash) names bundle \(bundle), which is not stored"); return
        }
        do { _ = try SQLiteStore.bundleBytes(bundle, data) } catch { damage(run, "bundle \(bundle): \(Self.reason(error))") }
    }

    /// Reads (and checks) every value a run stores: rows of its own and values inline in its
    /// checkpoints. Damage is reported only for the runs being verified (`report`).
    private mutating func loadEntries(_ run: String, report reporting: Bool) throws {
        if reporting ? reportedRuns.contains(run) : entries[run] != nil { return }
        if reporting { reportedRuns.insert(run) }
        var out: [String: Entry] = [:]
        for r in try Row.fetchAll(db, sql: "SELECT ns, channel, version, base_version, codec, sha256, data FROM channel_values WHERE run_id = ?", arguments: [run]) {
            let ns: String = r["ns"], channel: String = r["channel"], version: String = r["version"]
            if reporting { report.values += 1 }
            do {
                let value = try SQLiteStore.blob(r).decode(context: "")
                out[ns + "\u{1F}" + channel + "\u{1F}" + version] = .value(base: r["base_version"], isList: value.arrayValue != nil)
            } catch {
                out[ns + "\u{1F}" + channel + "\u{1F}" + version] = .damaged
                // A value's version is the id of the checkpoint that wrote it: that is where it is named.
                if reporting { damage(run, checkpoint: version, channel: channel, version: version, Self.reason(error)) }
            }
        }
        for r in try Row.fetchAll(db, sql: """
            SELECT c.ns, c.checkpoint_id, c.parent_id, c.inline_id, i.data FROM checkpoints c LEFT JOIN checkpoint_inline i ON i.id = c.inline_id
            WHERE c.run_id = ? AND c.inline_id IS NOT NULL
            """, arguments: [run]) {
            let ns: String = r["ns"], cp: String = r["checkpoint_id"]
            guard let data: Data = r["data"] else {
                if reporting { damage(run, checkpoint: cp, "its inline row \(r["inline_id"] as Int64) (the values it introduced) is not stored") }
                continue
            }
            do {
                let content = try CheckpointInline.decode(data, context: "")
                for (channel, entry) in content.values {
                    if reporting { report.values += 1 }
                    guard let (value, base) = CheckpointInline.value(entry, parentID: r["parent_id"]) else {
                        out[ns + "\u{1F}" + channel + "\u{1F}" + cp] = .damaged
                        if reporting { damage(run, checkpoint: cp, channel: channel, version: cp, "its inline entry holds no value") }
                        continue
                    }
                    out[ns + "\u{1F}" + channel + "\u{1F}" + cp] = .value(base: base, isList: value.arrayValue != nil)
                }
            } catch {
                // The blob holds every small value this checkpoint introduced: each of them (the
                // channels it names at its own version) is unreadable, and is named.
                var introduced: [String] = []
                if let row = try Row.fetchOne(db, sql: "SELECT channel_versions FROM checkpoints WHERE run_id = ? AND ns = ? AND checkpoint_id = ?",
                                              arguments: [run, ns, cp]),
                   let versions = try? JSONValue.parse([UInt8](row["channel_versions"] as Data)).objectValue {  // unparseable: reported with the checkpoint
                    introduced = versions.filter { $0.value.stringValue == "" || $0.value.stringValue == cp }.map(\.key).sorted()
                }
                for channel in introduced where out[ns + "\u{1F}" + channel + "\u{1F}" + cp] == nil {
                    out[ns + "\u{1F}" + channel + "\u{1F}" + cp] = .damaged
                    if reporting { damage(run, checkpoint: cp, channel: channel, version: cp, "stored inline in its checkpoint: \(Self.reason(error))") }
                }
                if introduced.isEmpty, reporting { damage(run, checkpoint: cp, "the values inline in this checkpoint: \(Self.reason(error))") }
            }
        }
        entries[run] = out
    }

    /// Nil when the value (and every delta under it, down to a full snapshot) is stored and
    /// readable, else what is wrong. Damage already reported at a value is not reported again.
    private mutating func resolve(_ run: String, _ ns: String, _ channel: String, _ version: String) throws -> String? {
        var chain: [String] = []
        var current = (run: run, version: version)
        var problem: String?
        var wantList = false
        while true {
            let key = current.run + "\u{1F}" + ns + "\u{1F}" + channel + "\u{1F}" + current.version
            if let known = resolved[key] { problem = known ? nil : ""; break }
            chain.append(key)
            try loadEntries(current.run, report: false)
            guard let entry = entries[current.run]?[ns + "\u{1F}" + channel + "\u{1F}" + current.version] else {
                problem = current.run == run && current.version == version ? "no value is stored at this version"
                    : "rests on version \(ChannelVersion(current.version, run: current.run).stored(in: run)), which is not stored"
                break
            }
            guard case .value(let base, let isList) = entry else { problem = ""; break }
            if wantList && !isList { problem = "a delta rests on a value that is not a list"; break }
            guard let base else { break }
            if !isList { problem = "a delta whose items are not a list"; break }
            wantList = true
            let next = ChannelVersion(base, run: current.run)
            current = (next.runID, next.version)
            if chain.count > 100_000 { problem = "its delta chain does not end"; break }
        }
        for key in chain { resolved[key] = problem == nil }
        // "": the root cause was reported where it is (a damaged value).
        return problem == "" ? nil : problem
    }

    private mutating func orphans() throws {
        for table in ["checkpoints"] + SQLiteDeletion.ownedTables {
            for r in try Row.fetchAll(db, sql: """
                SELECT run_id, COUNT(*) AS n FROM \(table) WHERE run_id NOT IN (SELECT run_id FROM runs) GROUP BY run_id ORDER BY run_id
                """) {
                damage(r["run_id"], "\(r["n"] as Int) row(s) of \(table) belong to no stored run")
            }
        }
        for (table, what) in [("api_calls", "API call"), ("assets", "asset")] {
            for r in try Row.fetchAll(db, sql: """
                SELECT run_id, COUNT(*) AS n FROM \(table) t WHERE run_id IN (SELECT run_id FROM runs) AND NOT EXISTS
                  (SELECT 1 FROM attempts a WHERE a.run_id = t.run_id AND a.step = t.step AND a.task_id = t.task_id AND a.attempt = t.attempt AND a.status = t.status)
                GROUP BY run_id ORDER BY run_id
                """) {
                damage(r["run_id"], "\(r["n"] as Int) \(what) row(s) belong to an attempt that is not stored")
            }
        }
        let loose = try Int.fetchOne(db, sql: """
            SELECT COUNT(*) FROM checkpoint_inline WHERE id NOT IN (SELECT inline_id FROM checkpoints WHERE inline_id IS NOT NULL)
            """) ?? 0
        if loose > 0 { damage(nil, "\(loose) row(s) of checkpoint_inline belong to no checkpoint") }
        let graphs = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM graphs WHERE hash NOT IN (SELECT graph_hash FROM runs)") ?? 0
        if graphs > 0 { damage(nil, "\(graphs) graph(s) are used by no stored run") }
        let bundles = try Int.fetchOne(db, sql: """
            SELECT COUNT(*) FROM bundles WHERE hash NOT IN (SELECT bundle_hash FROM graphs WHERE bundle_hash IS NOT NULL)
            """) ?? 0
        if bundles > 0 { damage(nil, "\(bundles) bundle(s) are used by no stored graph") }
    }
}
