import CairnCore
import CairnStore
import Testing

/// The in-memory store keeps a run's life as the durable stores do: verify, export, pin, delete.
@Suite struct InMemoryMaintenanceTests {
    static func seeded(_ store: InMemoryStore, runID: String, graph: String = "g1") async throws {
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: graph, name: "demo", version: 1, fileName: "demo.yaml", source: "name: demo", bundleHash: nil, createdAt: 1))
        b.runs.append(RunRecord(runID: runID, graphHash: graph, graphName: "demo", graphVersion: 1, status: .completed, durability: "sync",
                                input: .object(["x": 1]), createdAt: 1))
        b.checkpoints.append(CheckpointRecord(runID: runID, checkpointID: "c0", parentID: nil, step: 0, source: "input",
                                              channelVersions: ["log": "c0"], nextTasks: .array([]), metadata: .object([:]), createdAt: 1))
        b.channelValues.append(ChannelValueRecord(runID: runID, channel: "log", version: "c0", baseVersion: nil, value: .array(["a"])))
        b.channelValues.append(ChannelValueRecord(runID: runID, channel: "log", version: "c1", baseVersion: "c0", value: .array(["b"])))
        b.pendingWrites.append(PendingWriteRecord(runID: runID, checkpointID: "c0", taskID: "t1", idx: 0, channel: "log", value: "b"))
        try await store.commit(b)
    }

    @Test func aRunIsVerifiedExportedPinnedAndDeletedWhole() async throws {
        let store = InMemoryStore()
        try await Self.seeded(store, runID: "r1")
        try await Self.seeded(store, runID: "r2", graph: "g2")
        let clean = try await store.verify(runIDs: nil)
        #expect(clean.ok && clean.runs == 2 && clean.checkpoints == 2 && clean.values == 4 && clean.writes == 2)

        await store.corruptChannelValue(runID: "r1", channel: "log", version: "c0")
        let damaged = try await store.verify(runIDs: ["r1"])
        #expect(damaged.damage.count == 1 && damaged.damage[0].runID == "r1" && damaged.damage[0].version == "c0", "\(damaged.damage)")

        // r2 whole into another store, and read back the same from there.
        let exported = try #require(try await store.exportRun("r2"))
        #expect(exported.runs.count == 1 && exported.graphs.count == 1 && exported.checkpoints.count == 1 && exported.channelValues.count == 2
                && exported.pendingWrites.count == 1 && exported.channelValues[1].baseVersion == "c0")
        let other = InMemoryStore()
        try await other.commit(exported)
        #expect(try await other.channelValue(runID: "r2", namespace: "", channel: "log", version: "c1") == .array(["a", "b"]))
        #expect(try await store.exportRun("nope") == nil)

        let pinned = try await store.setPinned("r2", true), pinnedNothing = try await store.setPinned("nope", true)
        #expect(pinned && !pinnedNothing)
        #expect(try await store.run("r2")?.pinned == true)

        let deleted = try await store.deleteRuns(["r1", "nope"])
        #expect(deleted.runs == ["r1"] && deleted.checkpoints == 1 && deleted.values == 2 && deleted.graphs == 1)
        let gone = try await store.run("r1"), goneCheckpoints = try await store.checkpoints(runID: "r1", namespace: "", limit: 10)
        #expect(gone == nil && goneCheckpoints.isEmpty)
        #expect(try await store.verify(runIDs: nil).runs == 1, "r2 and its graph stay")
        let kept = try await store.graph("g2"), dropped = try await store.graph("g1")
        #expect(kept != nil && dropped == nil)
    }
}
