import CairnCore
import CairnSQLite
import CairnStore
import CairnTestSupport
import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix
import Testing

@Suite struct StoreTests {
    static func tempPath() -> String { NSTemporaryDirectory() + "cairn-store-\(UUID().uuidString).db" }

    @Test func inMemoryStoreConforms() async throws {
        try await StoreConformance.run { InMemoryStore() }
    }

    @Test func sqliteStoreConforms() async throws {
        try await StoreConformance.run { try SQLiteStore(path: Self.tempPath(), logger: Logger(label: "test")) }
    }

    @Test func anOlderFileIsUpgradedInPlace() async throws {
        let path = Self.tempPath()
        do {
            let old = try SQLiteStore(path: path, logger: Logger(label: "test"), upTo: "v1-core")
            #expect(try old.appliedMigrations() == ["v1-core"])
        }
        // Rows as the first release wrote them (its own SQL, not today's writer).
        do {
            let db = try DatabaseQueue(path: path)
            try await db.write { db in
                try db.execute(sql: """
                    INSERT INTO graphs (hash, name, version, file_name, source, bundle_hash, created_at) VALUES ('g', 'n', 1, 'f', 'name: n', NULL, 1);
                    INSERT INTO runs (run_id, graph_hash, graph_name, graph_version, status, durability, output, created_at, updated_at)
                        VALUES ('kept', 'g', 'n', 1, 'completed', 'sync', CAST('{"x":1}' AS BLOB), 1, 2);
                    INSERT INTO checkpoints (run_id, ns, checkpoint_id, parent_id, step, source, channel_versions, next_tasks, metadata, created_at)
                        VALUES ('kept', '', 'c1', NULL, 0, 'input', CAST('{"x":"c1"}' AS BLOB),
                                CAST('[{"id":"t-old","node":"a","trigger":"edge"}]' AS BLOB), CAST('{"updated":["x"]}' AS BLOB), 1);
                    """)
            }
        }
        let upgraded = try SQLiteStore(path: path, logger: Logger(label: "test"))
        #expect(try upgraded.appliedMigrations() == ["v1-core", "v2-executions-workers", "v3-compact", "v4-run-checksums", "v5-time-travel", "v6-records", "v7-retention"])
        let run = try await upgraded.run("kept")
        #expect(run?.status == .completed)
        #expect(run?.output == .object(["x": .int(1)]))
        #expect(try await upgraded.graph("g")?.source == "name: n")
        let cp = try #require(try await upgraded.checkpoint(runID: "kept", namespace: "", checkpointID: nil))
        #expect(cp.channelVersions == ["x": "c1"])
        #expect(cp.nextTasks.arrayValue?.first?["id"]?.stringValue == "t-old")
        #expect(run?.forkedFrom == nil)
        // The rebuilt checkpoints table takes the sources time travel adds.
        var resume = StoreBatch()
        resume.checkpoints.append(CheckpointRecord(runID: "kept", checkpointID: "c2", parentID: "c1", step: 0, source: "resume",
                                                   channelVersions: ["x": "c1"], nextTasks: .array([]), metadata: .object([:]), createdAt: 3))
        try await upgraded.commit(resume)
        #expect(try await upgraded.checkpoint(runID: "kept", namespace: "", checkpointID: nil)?.source == "resume")
        var b = StoreBatch()
        b.taskExecutions.append(TaskExecutionRecord(runID: "kept", taskID: "t", node: "n", step: 1, attempt: 1, worker: "w",
                                                    status: "completed", startedAt: 1, finishedAt: 2, error: nil, cost: 0, apiCalls: 0))
        try await upgraded.commit(b)
        #expect(try await upgraded.taskExecutions(runID: "kept").count == 1)
    }

    @Test func aStepsSmallRowsRideInItsCheckpointRowAndReadBackTheSame() async throws {
        let sqlite = try SQLiteStore(path: Self.tempPath(), logger: Logger(label: "test"))
        let memory = InMemoryStore()
        var b = StoreBatch()
        let parent = "01a0000000000000000000aa"
        let c = "01a0000000000000000000bb"
        let planned = Identifiers.taskID(checkpointID: c, namespace: "", step: 2, node: "next", trigger: "edge")
        let ran = Identifiers.taskID(checkpointID: parent, namespace: "", step: 1, node: "a", trigger: "edge")
        b.checkpoints.append(CheckpointRecord(runID: "r", checkpointID: parent, parentID: nil, step: 0, source: "input",
                                              channelVersions: ["log": parent], nextTasks: .array([]), metadata: .object([:]), createdAt: 10))
        b.channelValues.append(ChannelValueRecord(runID: "r", channel: "log", version: parent, baseVersion: nil, value: .array(["a"])))
        try await sqlite.commit(b)
        try await memory.commit(b)
        b = StoreBatch()
        b.checkpoints.append(CheckpointRecord(runID: "r", checkpointID: c, parentID: parent, step: 1, source: "loop",
                                              channelVersions: ["log": c, "big": c],
                                              nextTasks: .array([.object(["id": .string(planned), "node": "next"]),
                                                                 .object(["id": "custom", "node": "other", "trigger": "send:0"])]),
                                              metadata: .object([:]), createdAt: 12))
        b.channelValues.append(ChannelValueRecord(runID: "r", channel: "log", version: c, baseVersion: parent, value: .array(["b"])))
        b.channelValues.append(ChannelValueRecord(runID: "r", channel: "big", version: c, baseVersion: nil,
                                                  value: .string(String(repeating: "long ", count: 200))))
        b.taskExecutions.append(TaskExecutionRecord(runID: "r", taskID: ran, node: "a", step: 1, attempt: 2, worker: "w1",
                                                    status: "completed", startedAt: 11, finishedAt: 11.5, error: nil, cost: 0.25, apiCalls: 3))
        b.taskExecutions.append(TaskExecutionRecord(runID: "r", taskID: "odd-id", node: "b", step: 1, attempt: 1, worker: "w2",
                                                    status: "completed", startedAt: 11.25, finishedAt: 11.75, error: nil, cost: 0, apiCalls: 0))
        b.taskExecutions.append(TaskExecutionRecord(runID: "r", taskID: "f", node: "a", step: 1, attempt: 1, worker: "w1",
                                                    status: "failed", startedAt: 10.5, finishedAt: 10.75, error: "boom", cost: 0, apiCalls: 0))
        try await sqlite.commit(b)
        try await memory.commit(b)
        // The same records come back as from a store that keeps every row apart.
        for store in [sqlite, memory] as [any CheckpointStore] {
            let cp = try #require(try await store.checkpoint(runID: "r", namespace: "", checkpointID: c))
            #expect(cp.nextTasks == b.checkpoints[0].nextTasks)
            #expect(cp.channelVersions == ["log": c, "big": c])
            let state = try await store.state(at: cp)
            #expect(state["log"] == .array(["a", "b"]))
            #expect(state["big"] == .string(String(repeating: "long ", count: 200)))
        }
        let got = try await sqlite.taskExecutions(runID: "r")
        let want = try await memory.taskExecutions(runID: "r")
        #expect(got.map(\.taskID) == ["f", ran, "odd-id"])
        for (g, w) in zip(got, want.sorted { $0.finishedAt < $1.finishedAt }) {
            #expect(g.taskID == w.taskID && g.node == w.node && g.attempt == w.attempt && g.worker == w.worker && g.status == w.status)
            #expect(abs(g.startedAt - w.startedAt) < 1e-5 && abs(g.finishedAt - w.finishedAt) < 1e-5)
            #expect(g.cost == w.cost && g.apiCalls == w.apiCalls && g.error == w.error)
        }
        // Every attempt is a row a query can read; only the large value kept a row of its own.
        let db = try DatabaseQueue(path: sqlite.path)
        let executionRows = try await db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM attempts") }
        let valueRows = try await db.read { try String.fetchAll($0, sql: "SELECT channel FROM channel_values") }
        #expect(executionRows == 3)
        #expect(valueRows == ["big"])
        // A batch replayed (after a crash before its hot-tier cleanup) leaves no second copy.
        try await sqlite.commit(b)
        let inlineRows = try await db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM checkpoint_inline") }
        #expect(inlineRows == 2)
        #expect(try await sqlite.taskExecutions(runID: "r").count == 3)
        #expect(try await db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM attempts") } == 3)
    }

    @Test func attemptsKeptBeforeTheRecordsTablesMoveIntoThem() async throws {
        let path = Self.tempPath()
        _ = try SQLiteStore(path: path, logger: Logger(label: "test"), upTo: "v5-time-travel")
        // As the v5 writer left them: a failed attempt with a row of its own, and a completed
        // attempt folded into its checkpoint's inline row beside a channel value.
        let parent = "01a0000000000000000000aa", c = "01a0000000000000000000bb"
        let ran = Identifiers.taskID(checkpointID: parent, namespace: "", step: 1, node: "a", trigger: "edge")
        let blob = StoredBlob(.object(["v": .object(["x": .array([.array([.int(7)])])]),
                                       "x": .array([.array([.string("a"), .int(2), .string("w1"), .int(500_000), .int(250_000), .double(0.5), .int(3)])])]))
        do {
            let db = try DatabaseQueue(path: path)
            try await db.write { db in
                try db.execute(sql: """
                    INSERT INTO graphs (hash, name, version, file_name, source, source_codec, source_sha256, created_at) VALUES ('g', 'n', 1, 'f', 'name: n', 0, NULL, 1);
                    INSERT INTO runs (run_id, graph_hash, graph_name, graph_version, status, durability, created_at, updated_at)
                        VALUES ('r', 'g', 'n', 1, 'running', 'sync', 1, 2);
                    INSERT INTO checkpoints (run_id, ns, checkpoint_id, parent_id, step, source, channel_versions, next_tasks, metadata, created_at)
                        VALUES ('r', '', '\(parent)', NULL, 0, 'input', CAST('{}' AS BLOB), CAST('[]' AS BLOB), CAST('{}' AS BLOB), 10);
                    INSERT INTO task_executions (run_id, task_id, node, step, attempt, worker, status, started_at, finished_at, duration_ms, error, cost, api_calls)
                        VALUES ('r', '\(ran)', 'a', 1, 1, 'w2', 'failed', 10.25, 10.5, 250, 'boom', 0.125, 1);
                    """)
                try db.execute(sql: "INSERT INTO checkpoint_inline (id, data) VALUES (1, ?)", arguments: [Data([blob.codec.rawValue] + blob.sha256 + blob.data)])
                try db.execute(sql: """
                    INSERT INTO checkpoints (run_id, ns, checkpoint_id, parent_id, step, source, channel_versions, next_tasks, metadata, created_at, inline_id)
                        VALUES ('r', '', '\(c)', '\(parent)', 1, 'loop', CAST('{"x":""}' AS BLOB), CAST('[]' AS BLOB), CAST('{}' AS BLOB), 12, 1)
                    """)
            }
        }
        let upgraded = try SQLiteStore(path: path, logger: Logger(label: "test"))
        let got = try await upgraded.taskExecutions(runID: "r")
        #expect(got.map(\.status) == ["failed", "completed"])
        #expect(got.map(\.worker) == ["w2", "w1"] && got.map(\.taskID) == [ran, ran] && got.map(\.attempt) == [1, 2])
        #expect(abs(got[1].startedAt - 11.5) < 1e-6 && abs(got[1].durationMilliseconds - 250) < 1e-3, "\(got)")
        #expect(got[1].cost == 0.5 && got[1].apiCalls == 3 && got[0].error == "boom" && got[0].cost == 0.125)
        // The value stays inline; the attempt no longer rides there.
        let cp = try #require(try await upgraded.checkpoint(runID: "r", namespace: "", checkpointID: c))
        #expect(try await upgraded.state(at: cp)["x"] == .array([.int(7)]))
        let db = try DatabaseQueue(path: path)
        let tables = try await db.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE name = 'task_executions'") }
        #expect(tables.isEmpty)
        let rows = try await db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM attempt_details WHERE graph_name = 'n'") }
        #expect(rows == 2)
    }

    @Test func theSchemaRefusesAnUnknownStatus() async throws {
        let path = Self.tempPath()
        let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g", name: "n", version: 1, fileName: "f", source: "s", bundleHash: nil, createdAt: 1))
        b.runs.append(RunRecord(runID: "r", graphHash: "g", graphName: "n", graphVersion: 1, status: .running, durability: "sync", input: nil, createdAt: 1))
        try await store.commit(b)
        let db = try DatabaseQueue(path: path)
        #expect(throws: (any Error).self) { try db.write { try $0.execute(sql: "UPDATE runs SET status = 'exploded'") } }
    }

    @Test func aFlippedByteIsReportedWithTheRunAndCheckpoint() async throws {
        let path = Self.tempPath()
        let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
        var b = StoreBatch()
        b.channelValues.append(ChannelValueRecord(runID: "r9", channel: "doc", version: "c5", baseVersion: nil, value: .string(String(repeating: "abc", count: 400))))
        b.channelValues.append(ChannelValueRecord(runID: "r9", channel: "small", version: "c5", baseVersion: nil, value: .object(["k": "value"])))
        try await store.commit(b)
        #expect(try await store.channelValue(runID: "r9", namespace: "", channel: "small", version: "c5") == .object(["k": "value"]))
        try await store.checkpointWAL()
        let db = try DatabaseQueue(path: path)
        for channel in ["doc", "small"] {
            try await db.write { db in
                let data = try Data.fetchOne(db, sql: "SELECT data FROM channel_values WHERE channel = ?", arguments: [channel])!
                var bytes = [UInt8](data)
                bytes[bytes.count / 2] ^= 0x01
                try db.execute(sql: "UPDATE channel_values SET data = ? WHERE channel = ?", arguments: [Data(bytes), channel])
            }
            do {
                _ = try await store.channelValue(runID: "r9", namespace: "", channel: channel, version: "c5")
                Issue.record("a corrupted \(channel) blob was read without error")
            } catch let e as StoredBlob.IntegrityError {
                #expect(e.description.contains("run r9"))
                #expect(e.description.contains("version c5"))
                #expect(e.description.contains("'\(channel)'"))
            }
        }
    }
}
