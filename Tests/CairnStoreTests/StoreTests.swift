import CairnCore
import CairnStore
import CairnTestSupport
import Foundation
import GRDB
import Logging
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
            var b = StoreBatch()
            b.graphs.append(GraphRecord(hash: "g", name: "n", version: 1, fileName: "f", source: "s", bundleHash: nil, createdAt: 1))
            b.runs.append(RunRecord(runID: "kept", graphHash: "g", graphName: "n", graphVersion: 1, status: .completed,
                                    durability: "sync", input: nil, createdAt: 1))
            try await old.commit(b)
        }
        let upgraded = try SQLiteStore(path: path, logger: Logger(label: "test"))
        #expect(try upgraded.appliedMigrations() == ["v1-core", "v2-executions-workers"])
        #expect(try await upgraded.run("kept")?.status == .completed)
        var b = StoreBatch()
        b.taskExecutions.append(TaskExecutionRecord(runID: "kept", taskID: "t", node: "n", step: 1, attempt: 1, worker: "w",
                                                    status: "completed", startedAt: 1, finishedAt: 2, error: nil, cost: 0, apiCalls: 0))
        try await upgraded.commit(b)
        #expect(try await upgraded.taskExecutions(runID: "kept").count == 1)
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

    @Test func groupCommitSharesTransactions() async throws {
        let store = try SQLiteStore(path: Self.tempPath(), logger: Logger(label: "test"))
        let writer = StoreWriter(store: store, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<200 {
                group.addTask {
                    var b = StoreBatch()
                    b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c", taskID: "t\(i)", idx: 0, channel: "x", value: .int(Int64(i))))
                    try await writer.write(b)
                }
            }
            try await group.waitForAll()
        }
        #expect(try await store.pendingWrites(runID: "r", namespace: "", checkpointID: "c").count == 200)
        let tx = await writer.transactions
        #expect(tx < 200)
        #expect(await writer.rowsWritten == 200)
    }
}
