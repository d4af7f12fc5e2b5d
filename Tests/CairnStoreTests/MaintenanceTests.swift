import CairnCore
import CairnSQLite
import CairnStore
import Foundation
import GRDB
import Logging
import Testing

/// The store's side of verify, export, delete and pins, on real SQLite files damaged and read
/// behind its back with plain SQL.
@Suite struct MaintenanceTests {
    let dir = NSTemporaryDirectory() + "cairn-maint-\(UUID().uuidString)"
    var path: String { dir + "/a.db" }

    /// Run "r1" (two steps: an inline value, a row value, a delta, an attempt with an API call and
    /// an asset, a pending write of its unfinished step), run "fork" forked from it at c2 (reading
    /// its values in place), and run "other" of another graph with a bundle.
    func seeded(_ at: String? = nil) async throws -> SQLiteStore {
        let store = try SQLiteStore(path: at ?? path, logger: Logger(label: "test"))
        try await store.commit(Self.seedBatch())
        return store
    }

    /// The batch `seeded` writes, for every backend's tests.
    static func seedBatch() -> StoreBatch {
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g1", name: "demo", version: 1, fileName: "demo.yaml", source: "name: demo", bundleHash: nil, createdAt: 1))
        b.graphs.append(GraphRecord(hash: "g2", name: "other", version: 1, fileName: "o.yaml", source: "name: other", bundleHash: Hashing.sha256Hex([1, 2, 3]), createdAt: 1))
        b.bundles.append(BundleRecord(hash: Hashing.sha256Hex([1, 2, 3]), data: [1, 2, 3]))
        var r1 = RunRecord(runID: "r1", graphHash: "g1", graphName: "demo", graphVersion: 1, status: .failed, durability: "sync", input: .object(["topic": "tides"]), createdAt: 10)
        r1.checkpointID = "c3"; r1.error = "boom"; r1.finishedAt = 20
        var fork = RunRecord(runID: "fork", graphHash: "g1", graphName: "demo", graphVersion: 1, status: .completed, durability: "sync", input: nil, createdAt: 30)
        fork.forkedFrom = "r1@c2"; fork.checkpointID = "f1"; fork.finishedAt = 31
        var other = RunRecord(runID: "other", graphHash: "g2", graphName: "other", graphVersion: 1, status: .completed, durability: "sync", input: nil, createdAt: 40)
        other.checkpointID = "o1"; other.finishedAt = 41
        b.runs = [r1, fork, other]
        func cp(_ run: String, _ id: String, _ parent: String?, _ step: Int, _ versions: [String: String]) -> CheckpointRecord {
            CheckpointRecord(runID: run, checkpointID: id, parentID: parent, step: step, source: parent == nil ? "input" : "loop",
                             channelVersions: versions, nextTasks: .array([]), metadata: .object([:]), createdAt: Double(step))
        }
        b.checkpoints = [cp("r1", "c1", nil, 0, ["log": "c1", "draft": "c1"]), cp("r1", "c2", "c1", 1, ["log": "c2", "draft": "c2"]),
                         cp("r1", "c3", "c2", 2, ["log": "c2", "draft": "c3"]),
                         cp("fork", "f1", "c2", 2, ["log": "r1/c2", "draft": "f1"]), cp("other", "o1", nil, 0, ["x": "o1"])]
        b.channelValues = [
            ChannelValueRecord(runID: "r1", channel: "log", version: "c1", baseVersion: nil, value: .array(["a"])),
            ChannelValueRecord(runID: "r1", channel: "log", version: "c2", baseVersion: "c1", value: .array(["b"])),
            ChannelValueRecord(runID: "r1", channel: "draft", version: "c1", baseVersion: nil, value: .string("MARKER-small")),
            ChannelValueRecord(runID: "r1", channel: "draft", version: "c2", baseVersion: nil, value: .string(String(repeating: "a long draft ", count: 80))),
            ChannelValueRecord(runID: "r1", channel: "draft", version: "c3", baseVersion: nil, value: .string("third")),
            ChannelValueRecord(runID: "fork", channel: "draft", version: "f1", baseVersion: nil, value: .string("forked")),
            ChannelValueRecord(runID: "other", channel: "x", version: "o1", baseVersion: nil, value: .int(1)),
        ]
        b.pendingWrites = [PendingWriteRecord(runID: "r1", checkpointID: "c3", taskID: "t3", idx: 0, channel: "log", value: .array(["c"]))]
        var rec = TaskRecords()
        rec.cost = 0.5; rec.apiCalls = 1
        rec.apiCallLog = [TaskRecords.APICall(provider: "openai", model: "m", cost: 0.5)]
        rec.assets = [TaskRecords.Asset(name: "clip", uri: "file:///clip")]
        b.taskExecutions = [TaskExecutionRecord(runID: "r1", taskID: "t1", node: "n", step: 1, attempt: 1, worker: "w", status: "completed",
                                                startedAt: 1, finishedAt: 1.5, error: nil, cost: 0, apiCalls: 0, queuedAt: 0.9, records: rec),
                            TaskExecutionRecord(runID: "r1", taskID: "t3", node: "n", step: 3, attempt: 1, worker: "w", status: "failed",
                                                startedAt: 3, finishedAt: 3.5, error: "boom", cost: 0, apiCalls: 0, errorKind: "ValueError")]
        b.workers = [WorkerRecord(workerID: "w-1", name: "w", slots: 4, kinds: ["exec", "swift"], address: "127.0.0.1:5000",
                                  connectedAt: 0.5, lastSeen: 3.6, disconnectedAt: nil, tasksDone: 2)]
        return b
    }

    func sql(_ query: String, _ arguments: StatementArguments = StatementArguments()) throws {
        let db = try DatabaseQueue(path: path)
        try db.write { db in try db.execute(sql: query, arguments: arguments) }
    }

    func sqlNoTransaction(_ query: String) throws {
        try DatabaseQueue(path: path).writeWithoutTransaction { db in try db.execute(sql: query) }
    }

    func scalar(_ query: String) throws -> Int? {
        try DatabaseQueue(path: path).read { db in try Int.fetchOne(db, sql: query) }
    }

    func count(_ table: String, run: String) throws -> Int {
        try DatabaseQueue(path: path).read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table) WHERE run_id = ?", arguments: [run]) ?? -1 }
    }

    @Test func aWholeStoreVerifiesClean() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        let report = try await store.verify(runIDs: nil)
        #expect(report.ok, "\(report.damage)")
        #expect(report.runs == 3 && report.checkpoints == 5 && report.values == 7 && report.writes == 1 && report.attempts == 2)
    }

    @Test func aFlippedByteInARowValueIsNamedExactlyOnce() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        // draft@c2 (a long value: a row of its own) is named by c2, and read by the fork in place:
        // reported once, where it is stored, not again at each checkpoint that names it.
        try sql("UPDATE channel_values SET codec = 0, data = CAST('\"changed\"' AS BLOB) WHERE run_id = 'r1' AND channel = 'draft' AND version = 'c2'")
        let report = try await store.verify(runIDs: nil)
        #expect(report.damage == [Damage(runID: "r1", checkpointID: "c2", channel: "draft", version: "c2", problem: "SHA-256 mismatch: stored data was altered or corrupted")])
        #expect(try await store.verify(runIDs: ["other"]).ok)
    }

    @Test func aDamagedInlineRowNamesTheValuesItHeld() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        let db = try DatabaseQueue(path: path)
        try await db.write { db in
            let id = try Int64.fetchOne(db, sql: "SELECT inline_id FROM checkpoints WHERE run_id = 'r1' AND checkpoint_id = 'c1'")
            var data = [UInt8](try Data.fetchOne(db, sql: "SELECT data FROM checkpoint_inline WHERE id = ?", arguments: [id]) ?? Data())
            let at = try #require(data.indices.first { data[$0...].starts(with: Array("MARKER".utf8)) })
            data[at] ^= 0x01
            try db.execute(sql: "UPDATE checkpoint_inline SET data = ? WHERE id = ?", arguments: [Data(data), id])
        }
        let report = try await store.verify(runIDs: nil)
        // c1's inline row holds draft@c1 and log@c1; both are named, with where they are stored.
        #expect(Set(report.damage.map { "\($0.channel ?? "")@\($0.version ?? "")" }) == ["draft@c1", "log@c1"], "\(report.damage)")
        #expect(report.damage.allSatisfy { $0.runID == "r1" && $0.checkpointID == "c1" && $0.problem.contains("SHA-256 mismatch") })
    }

    @Test func missingParentsVersionsAndOrphanedRowsAreNamed() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        try sql("DELETE FROM checkpoints WHERE run_id = 'r1' AND checkpoint_id = 'c2'")  // c3's parent; its inline row stays behind
        try sql("INSERT INTO attempts (run_id, step, task_id, attempt, status, node, worker, started_at, finished_at, duration_ms) VALUES ('ghost', 1, 't', 1, 'completed', 'n', 'w', 1, 2, 1000)")
        let report = try await store.verify(runIDs: nil)
        let lines = Set(report.damage.map(\.description))
        #expect(lines.contains("run r1 checkpoint c3: its parent checkpoint c2 is not stored"), "\(lines)")
        #expect(lines.contains("run r1 checkpoint c3 channel 'log' version c2: no value is stored at this version"), "\(lines)")
        #expect(lines.contains("run ghost: 1 row(s) of attempts belong to no stored run"), "\(lines)")
        #expect(lines.contains("1 row(s) of checkpoint_inline belong to no checkpoint"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("run fork checkpoint f1") }, "the fork's checkpoint rests on c2, which is gone: \(lines)")
    }

    @Test func anExportWritesTheSameRunIntoAnotherStore() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        let target = try SQLiteStore(path: dir + "/b.db", logger: Logger(label: "test"))
        for id in ["r1", "fork"] {
            let batch = try #require(try await store.exportRun(id))
            try await target.commit(batch)
            let again = try #require(try await target.exportRun(id))
            #expect(again.json == batch.json, "run \(id) reads back as exported")
        }
        for id in ["r1", "fork"] {
            for c in try await store.checkpoints(runID: id, namespace: "", limit: 100) {
                let there = try #require(try await target.checkpoint(runID: id, namespace: "", checkpointID: c.checkpointID))
                #expect(there == c)
                #expect(try await target.state(at: there) == (try await store.state(at: c)), "\(id)@\(c.checkpointID)")
            }
            #expect(try await target.taskExecutions(runID: id) == (try await store.taskExecutions(runID: id)))
        }
        #expect(try await target.verify(runIDs: nil).ok)
        #expect(try await store.exportRun("nope") == nil)
    }

    @Test func deletingARunTakesEverythingItOwnsAndOnlyThat() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        let report = try await store.deleteRuns(["other"])
        #expect(report.runs == ["other"] && report.checkpoints == 1 && report.graphs == 1 && report.bundles == 1)
        for table in ["runs", "checkpoints", "channel_values", "pending_writes", "attempts", "api_calls", "assets"] {
            #expect(try count(table, run: "other") == 0, "\(table)")
        }
        #expect(try await store.graph("g2") == nil)
        #expect(try await store.bundle(Hashing.sha256Hex([1, 2, 3])) == nil)
        // The fork and its parent share graph g1: deleting one keeps it for the other.
        let fork = try await store.deleteRuns(["fork"])
        #expect(fork.graphs == 0)
        #expect(try await store.graph("g1") != nil)
        #expect(try await store.verify(runIDs: nil).ok)
        let r1 = try await store.deleteRuns(["r1"])
        #expect(r1.checkpoints == 3 && r1.attempts == 2 && r1.graphs == 1)
        for table in ["api_calls", "assets", "pending_writes", "checkpoint_inline", "graphs"] {
            #expect(try scalar("SELECT COUNT(*) FROM \(table)") == 0, "\(table)")
        }
        #expect(try scalar("PRAGMA auto_vacuum") == 2)
    }

    @Test func aFileMadeBeforeAutoVacuumIsConvertedByItsFirstCleanup() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try await seeded()
        try sqlNoTransaction("PRAGMA auto_vacuum = NONE; VACUUM")
        let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
        #expect(try scalar("PRAGMA auto_vacuum") == 0)
        _ = try await store.deleteRuns(["other"])
        #expect(try scalar("PRAGMA auto_vacuum") == 2)
        #expect(try await store.verify(runIDs: nil).ok)
    }

    @Test func aPinSurvivesTheRunsOwnWrites() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await seeded()
        #expect(try await store.setPinned("r1", true))
        #expect(try await store.setPinned("nope", true) == false)
        var r = try #require(try await store.run("r1"))
        #expect(r.pinned)
        r.pinned = false
        r.error = "changed"
        var b = StoreBatch()
        b.runs = [r]
        try await store.commit(b)
        #expect(try await store.run("r1")?.pinned == true)
        #expect(try await store.setPinned("r1", false))
        #expect(try await store.run("r1")?.pinned == false)
    }

    @Test func anExportFileRefusesEveryAlteredByte() throws {
        let parts = [ExportArchive.Part(runID: "r1", graph: "g", status: "completed", bytes: Array(#"{"runs":[]}"#.utf8), sha256: Hashing.sha256Hex(Array(#"{"runs":[]}"#.utf8)))]
        let file = try ExportArchive(createdAt: 5, parts: parts).encode()
        #expect(try ExportArchive.decode(file) == ExportArchive(createdAt: 5, parts: parts))
        for i in stride(from: 0, to: file.count, by: 7) {
            var bad = file
            bad[i] ^= 0x20
            #expect(throws: ExportArchive.Invalid.self) { try ExportArchive.decode(bad) }
        }
        #expect(throws: ExportArchive.Invalid.self) { try ExportArchive.decode(Array(file.prefix(file.count - 1))) }
        #expect(throws: ExportArchive.Invalid.self) { try ExportArchive.decode(Array("hello".utf8)) }
    }
}
