import CairnCore
import CairnSQLite
import CairnStore
import Foundation
import GRDB
import Logging
import Testing

/// A real SQLite file, damaged behind the store's back with plain SQL: every read of a damaged
/// row fails with an error naming the row and the column, and nothing reads back as another value.
@Suite struct DamagedDataTests {
    let path = NSTemporaryDirectory() + "cairn-damage-\(UUID().uuidString).db"

    /// Two finished runs with output, input and a step whose channel values are large enough to
    /// get rows of their own and small enough to ride in the checkpoint's inline row.
    func seeded() async throws -> SQLiteStore {
        let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g1", name: "demo", version: 1, fileName: "demo.yaml", source: "name: demo", bundleHash: nil, createdAt: 1))
        for (i, id) in ["r1", "r2"].enumerated() {
            var r = RunRecord(runID: id, graphHash: "g1", graphName: "demo", graphVersion: 1, status: .completed, durability: "sync",
                              input: .object(["topic": "tides"]), createdAt: Double(10 + i))
            r.output = .object(["answer": .int(42)])
            r.interrupt = .object(["reason": "none"])
            b.runs.append(r)
            b.checkpoints.append(CheckpointRecord(runID: id, checkpointID: "c1", parentID: nil, step: 0, source: "input",
                                                  channelVersions: ["big": "c1", "small": "c1"], nextTasks: .array([]),
                                                  metadata: .object([:]), createdAt: 1))
            b.channelValues.append(ChannelValueRecord(runID: id, channel: "big", version: "c1", baseVersion: nil,
                                                      value: .string(String(repeating: "a long draft ", count: 80))))
            b.channelValues.append(ChannelValueRecord(runID: id, channel: "small", version: "c1", baseVersion: nil, value: .int(7)))
        }
        try await store.commit(b)
        return store
    }

    func damage(_ sql: String, _ arguments: StatementArguments = StatementArguments()) throws {
        let db = try DatabaseQueue(path: path)
        try db.write { db in
            try db.execute(sql: "PRAGMA ignore_check_constraints = ON")
            try db.execute(sql: sql, arguments: arguments)
            #expect(db.changesCount == 1, "the damage touched one row")
        }
    }

    func integrityError(_ body: () async throws -> Void) async -> StoredBlob.IntegrityError? {
        do {
            try await body()
            return nil
        } catch let e as StoredBlob.IntegrityError {
            return e
        } catch {
            Issue.record("expected an integrity error, got \(error)")
            return nil
        }
    }

    @Test func outputThatIsNotJSONIsReportedByRunAndColumn() async throws {
        let store = try await seeded()
        try damage("UPDATE runs SET output = CAST('{\"answer\": 4' AS BLOB) WHERE run_id = 'r1'")
        let e = try #require(await integrityError { _ = try await store.run("r1") })
        #expect(e.context == "run r1 (runs.output)")
        #expect(e.description.contains("SHA-256 mismatch"))
        // The other run reads as written; the list names the damaged one instead of failing.
        #expect(try await store.run("r2")?.output == .object(["answer": .int(42)]))
        let listed = try await store.runs(RunFilter())
        #expect(listed.map(\.runID) == ["r2", "r1"])
        #expect(listed[0].record?.output == .object(["answer": .int(42)]))
        guard case .damaged(let id, let why) = listed[1] else { Issue.record("r1 should list as damaged"); return }
        #expect(id == "r1" && why.context == "run r1 (runs.output)")
    }

    @Test func outputReplacedByOtherValidJSONIsNotReadAsThatValue() async throws {
        let store = try await seeded()
        try damage("UPDATE runs SET output = CAST('{\"answer\":43}' AS BLOB) WHERE run_id = 'r1'")
        let e = try #require(await integrityError { _ = try await store.run("r1") })
        #expect(e.context == "run r1 (runs.output)")
        #expect(e.reason.contains("SHA-256 mismatch"))
    }

    @Test func aMissingOutputOrChecksumIsAnErrorNotNil() async throws {
        let store = try await seeded()
        try damage("UPDATE runs SET output = NULL WHERE run_id = 'r1'")
        let e = try #require(await integrityError { _ = try await store.run("r1") })
        #expect(e.context == "run r1 (runs.output)" && e.reason.contains("missing"))
        try damage("UPDATE runs SET input_sha256 = NULL WHERE run_id = 'r2'")
        let f = try #require(await integrityError { _ = try await store.run("r2") })
        #expect(f.context == "run r2 (runs.input)" && f.reason.contains("no SHA-256"))
    }

    @Test func aStatusOutsideTheKnownOnesIsAnError() async throws {
        let store = try await seeded()
        try damage("UPDATE runs SET status = 'finished' WHERE run_id = 'r2'")
        let e = try #require(await integrityError { _ = try await store.run("r2") })
        #expect(e.context == "run r2 (runs.status)")
        #expect(await integrityError { _ = try await store.runCounts() } != nil)
    }

    @Test func aFlippedByteInAChannelValueIsReportedByRunAndChannel() async throws {
        let store = try await seeded()
        let stored: Data? = try await DatabaseQueue(path: path).read { db in
            try Data.fetchOne(db, sql: "SELECT data FROM channel_values WHERE run_id = 'r1' AND channel = 'big'")
        }
        var data = [UInt8](try #require(stored))
        data[data.count / 2] ^= 0x01
        try damage("UPDATE channel_values SET data = ? WHERE run_id = 'r1' AND channel = 'big'", [Data(data)])
        let cp = try #require(try await store.checkpoint(runID: "r1", namespace: "", checkpointID: nil))
        let e = try #require(await integrityError { _ = try await store.state(at: cp) })
        #expect(e.context == "run r1 channel 'big' version c1")
        // The same value of the other run is intact.
        let other = try #require(try await store.checkpoint(runID: "r2", namespace: "", checkpointID: nil))
        #expect(try await store.state(at: other)["small"] == .int(7))
    }

    @Test func aFlippedByteInACheckpointsInlineRowIsReported() async throws {
        let store = try await seeded()
        let db = try DatabaseQueue(path: path)
        let found: Int64? = try await db.read { db in try Int64.fetchOne(db, sql: "SELECT inline_id FROM checkpoints WHERE run_id = 'r1'") }
        let id = try #require(found)
        let stored: Data? = try await db.read { db in try Data.fetchOne(db, sql: "SELECT data FROM checkpoint_inline WHERE id = ?", arguments: [id]) }
        let data = [UInt8](try #require(stored))
        var flipped = data
        flipped[flipped.count - 1] ^= 0x20
        try damage("UPDATE checkpoint_inline SET data = ? WHERE id = ?", [Data(flipped), id])
        let e = try #require(await integrityError {
            _ = try await store.channelValue(runID: "r1", namespace: "", channel: "small", version: "c1")
        })
        #expect(e.context.contains("run r1 checkpoint c1"))
    }

    @Test func aDamagedGraphSourceOrBundleIsReported() async throws {
        let store = try await seeded()
        let packed: [UInt8] = [9, 8, 7]
        var b = StoreBatch()
        b.bundles.append(BundleRecord(hash: Hashing.sha256Hex(packed), data: packed))
        try await store.commit(b)
        try damage("UPDATE graphs SET source = 'name: demo2' WHERE hash = 'g1'")
        let e = try #require(await integrityError { _ = try await store.graph("g1") })
        #expect(e.context == "graph g1 (graphs.source)")
        try damage("UPDATE bundles SET data = X'090807FF'")
        let f = try #require(await integrityError { _ = try await store.bundle(Hashing.sha256Hex(packed)) })
        #expect(f.context.contains("bundles.data"))
    }
}
