import CairnCore
import CairnStore
import Foundation

/// The behaviour every `CheckpointStore` must have, checked the same way for each implementation
/// (SQLite file, in-memory). Each check throws `ConformanceFailure` naming what broke.
public enum StoreConformance {
    public struct ConformanceFailure: Error, CustomStringConvertible {
        public var description: String
    }

    static func expect(_ ok: Bool, _ what: @autoclosure () -> String) throws {
        if !ok { throw ConformanceFailure(description: what()) }
    }

    public static let checks: [(String, @Sendable (any CheckpointStore) async throws -> Void)] = [
        ("runs round-trip and upsert", runsRoundTrip),
        ("checkpoints: latest, by id, newest first", checkpoints),
        ("pending writes are first-write-wins", pendingWritesFirstWins),
        ("append deltas rebuild the full list", deltas),
        ("run filters and counts", filters),
        ("graphs, bundles, executions, workers", misc),
    ]

    /// Runs every check against stores made by `make` (a fresh store per check).
    public static func run(_ make: () async throws -> any CheckpointStore) async throws {
        for (name, check) in checks {
            let store = try await make()
            do { try await check(store) } catch {
                throw ConformanceFailure(description: "\(name): \(error)")
            }
        }
    }

    static func seed(_ store: any CheckpointStore, runID: String = "r1", status: RunStatus = .running, created: Double = 1000) async throws {
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g1", name: "demo", version: 1, fileName: "demo.yaml", source: "name: demo", bundleHash: nil, createdAt: created))
        var r = RunRecord(runID: runID, graphHash: "g1", graphName: "demo", graphVersion: 1, status: status, durability: "sync",
                          input: .object(["x": 1]), createdAt: created)
        r.updatedAt = created
        b.runs.append(r)
        try await store.commit(b)
    }

    @Sendable static func runsRoundTrip(_ store: any CheckpointStore) async throws {
        try await seed(store)
        var r = try await store.run("r1")
        try expect(r?.status == .running && r?.input == .object(["x": 1]), "run read back as written")
        r!.status = .completed
        r!.output = .object(["y": .array([1, 2])])
        r!.cost = 1.5
        var b = StoreBatch(); b.runs.append(r!)
        try await store.commit(b)
        let again = try await store.run("r1")
        try expect(again?.status == .completed && again?.output == .object(["y": .array([1, 2])]) && again?.cost == 1.5, "upsert replaced status and output")
        try expect(try await store.run("nope") == nil, "missing run is nil")
    }

    @Sendable static func checkpoints(_ store: any CheckpointStore) async throws {
        try await seed(store)
        var b = StoreBatch()
        for (i, id) in ["c1", "c2", "c3"].enumerated() {
            b.checkpoints.append(CheckpointRecord(runID: "r1", checkpointID: id, parentID: i == 0 ? nil : "c\(i)", step: i, source: i == 0 ? "input" : "loop",
                                                  channelVersions: ["a": id], nextTasks: .array([.object(["id": "t", "node": "n"])]),
                                                  metadata: .object(["i": .int(Int64(i))]), createdAt: Double(i)))
            b.channelValues.append(ChannelValueRecord(runID: "r1", channel: "a", version: id, baseVersion: nil, value: .int(Int64(i))))
        }
        try await store.commit(b)
        let latest = try await store.checkpoint(runID: "r1", namespace: "", checkpointID: nil)
        try expect(latest?.checkpointID == "c3" && latest?.parentID == "c2", "latest is the highest id with its parent")
        let c1 = try await store.checkpoint(runID: "r1", namespace: "", checkpointID: "c1")
        try expect(c1?.step == 0 && c1?.source == "input" && c1?.metadata == .object(["i": 0]), "by id")
        let list = try await store.checkpoints(runID: "r1", namespace: "", limit: 10)
        try expect(list.map(\.checkpointID) == ["c3", "c2", "c1"], "newest first, got \(list.map(\.checkpointID))")
        let state = try await store.state(at: c1!)
        try expect(state == ["a": .int(0)], "state at a checkpoint reads its versions")
        // A checkpoint written twice keeps the first.
        var dup = StoreBatch()
        dup.checkpoints.append(CheckpointRecord(runID: "r1", checkpointID: "c1", parentID: nil, step: 99, source: "loop", channelVersions: [:],
                                                nextTasks: .array([]), metadata: .object([:]), createdAt: 0))
        try await store.commit(dup)
        try expect(try await store.checkpoint(runID: "r1", namespace: "", checkpointID: "c1")?.step == 0, "checkpoint insert is idempotent")
    }

    @Sendable static func pendingWritesFirstWins(_ store: any CheckpointStore) async throws {
        try await seed(store)
        var b = StoreBatch()
        b.pendingWrites.append(PendingWriteRecord(runID: "r1", checkpointID: "c1", taskID: "t1", idx: 0, channel: "a", value: "first"))
        b.pendingWrites.append(PendingWriteRecord(runID: "r1", checkpointID: "c1", taskID: "t1", idx: -1, channel: "__result__", value: .object(["node": "n"])))
        try await store.commit(b)
        var again = StoreBatch()
        again.pendingWrites.append(PendingWriteRecord(runID: "r1", checkpointID: "c1", taskID: "t1", idx: 0, channel: "a", value: "second"))
        again.pendingWrites.append(PendingWriteRecord(runID: "r1", checkpointID: "c1", taskID: "t2", idx: 0, channel: "a", value: "other task"))
        try await store.commit(again)
        let writes = try await store.pendingWrites(runID: "r1", namespace: "", checkpointID: "c1")
        try expect(writes.count == 3, "three distinct writes, got \(writes.count)")
        try expect(writes.first { $0.taskID == "t1" && $0.idx == 0 }?.value == "first", "a re-run task cannot overwrite the first result")
        try expect(writes.first { $0.idx == -1 }?.value == .object(["node": "n"]), "control records (negative idx) are kept")
        try expect(try await store.pendingWrites(runID: "r1", namespace: "", checkpointID: "other").isEmpty, "writes are per checkpoint")
        var prune = StoreBatch()
        prune.pendingWrites.append(PendingWriteRecord(runID: "r1", checkpointID: "c2", taskID: "t1", idx: 0, channel: "a", value: "next step"))
        prune.prunedWrites.append(CheckpointKey(runID: "r1", checkpointID: "c1"))
        try await store.commit(prune)
        try expect(try await store.pendingWrites(runID: "r1", namespace: "", checkpointID: "c1").isEmpty, "pruned writes are gone")
        try expect(try await store.pendingWrites(runID: "r1", namespace: "", checkpointID: "c2").count == 1, "pruning is per checkpoint")
    }

    @Sendable static func deltas(_ store: any CheckpointStore) async throws {
        try await seed(store)
        var b = StoreBatch()
        let big = String(repeating: "x", count: 4_000)  // compressed blob path
        b.channelValues.append(ChannelValueRecord(runID: "r1", channel: "log", version: "v1", baseVersion: nil, value: .array(["a", .string(big)])))
        b.channelValues.append(ChannelValueRecord(runID: "r1", channel: "log", version: "v2", baseVersion: "v1", value: .array(["b"])))
        b.channelValues.append(ChannelValueRecord(runID: "r1", channel: "log", version: "v3", baseVersion: "v2", value: .array(["c", "d"])))
        try await store.commit(b)
        let v3 = try await store.channelValue(runID: "r1", namespace: "", channel: "log", version: "v3")
        try expect(v3 == .array(["a", .string(big), "b", "c", "d"]), "delta chain rebuilds in order")
        let v1 = try await store.channelValue(runID: "r1", namespace: "", channel: "log", version: "v1")
        try expect(v1 == .array(["a", .string(big)]), "full snapshot reads alone")
        // A fork's delta rests on its parent's value, named RUN/VERSION: the chain crosses into r1.
        var fork = StoreBatch()
        fork.channelValues.append(ChannelValueRecord(runID: "r2", channel: "log", version: "f1", baseVersion: "r1/v3", value: .array(["e"])))
        fork.channelValues.append(ChannelValueRecord(runID: "r2", channel: "log", version: "f2", baseVersion: "f1", value: .array(["f"])))
        try await store.commit(fork)
        let f2 = try await store.channelValue(runID: "r2", namespace: "", channel: "log", version: "f2")
        try expect(f2 == .array(["a", .string(big), "b", "c", "d", "e", "f"]), "a fork's delta chain reaches into its parent")
        let viaRef = try await store.channelValue(runID: "r2", namespace: "", channel: "log", version: "r1/v2")
        try expect(viaRef == .array(["a", .string(big), "b"]), "a parent's version read through the fork")
        do {
            _ = try await store.channelValue(runID: "r1", namespace: "", channel: "log", version: "v9")
            try expect(false, "a missing version must be an error")
        } catch is StoreError {}
    }

    @Sendable static func filters(_ store: any CheckpointStore) async throws {
        try await seed(store, runID: "a", status: .completed, created: 100)
        try await seed(store, runID: "b", status: .failed, created: 200)
        try await seed(store, runID: "c", status: .running, created: 300)
        let failed = try await store.runs(RunFilter(status: .failed))
        try expect(failed.map(\.runID) == ["b"], "status filter")
        let recent = try await store.runs(RunFilter(createdAfter: 150))
        try expect(recent.map(\.runID) == ["c", "b"], "since filter, newest first: \(recent.map(\.runID))")
        let limited = try await store.runs(RunFilter(limit: 1))
        try expect(limited.map(\.runID) == ["c"], "limit")
        try expect(try await store.runs(RunFilter(graphName: "other")).isEmpty, "graph filter")
        let unfinished = try await store.unfinishedRuns()
        try expect(unfinished.map(\.runID) == ["c"], "unfinished runs")
        let counts = try await store.runCounts()
        try expect(counts[.completed] == 1 && counts[.failed] == 1 && counts[.running] == 1, "counts by status")
    }

    @Sendable static func misc(_ store: any CheckpointStore) async throws {
        try await seed(store)
        var b = StoreBatch()
        let bundleHash = Hashing.sha256Hex([1, 2, 3] as [UInt8])  // bundles are addressed by their SHA-256
        b.bundles.append(BundleRecord(hash: bundleHash, data: [1, 2, 3]))
        b.taskExecutions.append(TaskExecutionRecord(runID: "r1", taskID: "t", node: "n", step: 1, attempt: 1, worker: "w", status: "completed",
                                                    startedAt: 1, finishedAt: 1.25, error: nil, cost: 0.5, apiCalls: 2))
        b.workers.append(WorkerRecord(workerID: "w-1", name: "w", slots: 4, kinds: ["echo", "exec"], address: "127.0.0.1:1",
                                      connectedAt: 1, lastSeen: 2, disconnectedAt: nil, tasksDone: 0))
        try await store.commit(b)
        try expect(try await store.graph("g1")?.source == "name: demo", "graph source kept verbatim")
        try expect(try await store.bundle(bundleHash) == [1, 2, 3], "bundle bytes")
        let ex = try await store.taskExecutions(runID: "r1")
        try expect(ex.count == 1 && ex[0].durationMS == 250 && ex[0].apiCalls == 2, "task execution")
        // A batch replayed (after a crash between a flush and its cleanup) records no attempt twice.
        try await store.commit(b)
        try expect(try await store.taskExecutions(runID: "r1").count == 1, "an attempt's record is written once")
        // What an attempt reported reads back whole: queue wait, error kind, metrics, API calls, assets.
        var rec = TaskRecords()
        rec.cost = 0.75; rec.apiCalls = 2; rec.tokensIn = 120; rec.tokensOut = 30; rec.metrics = ["frames": 24]
        rec.apiCallLog = [TaskRecords.APICall(provider: "openai", model: "gpt-x", operation: "chat", tokensIn: 100, tokensOut: 20,
                                              cost: 0.5, latencyMS: 812.5, status: "ok"),
                          TaskRecords.APICall(provider: "openai", model: "gpt-y", tokensIn: 20, tokensOut: 10, cost: 0.25, status: "429")]
        rec.assets = [TaskRecords.Asset(name: "clip", kind: "video", uri: "s3://b/clip.mp4", bytes: 1234, sha256: String(repeating: "ab", count: 32),
                                        meta: .object(["fps": .int(24)]))]
        var d = StoreBatch()
        d.taskExecutions.append(TaskExecutionRecord(runID: "r1", taskID: "t2", node: "m", step: 2, attempt: 1, worker: "w", status: "failed",
                                                    startedAt: 3, finishedAt: 4, error: "rate limited", cost: 0, apiCalls: 0,
                                                    queuedAt: 2.5, errorKind: "http_429", records: rec))
        try await store.commit(d)
        try await store.commit(d)
        let detailed = try await store.taskExecutions(runID: "r1").filter { $0.taskID == "t2" }
        try expect(detailed.count == 1, "one detailed attempt, not \(detailed.count)")
        try expect(detailed[0].records == rec, "records read back: \(detailed[0].records)")
        try expect(detailed[0].queuedAt == 2.5 && detailed[0].errorKind == "http_429" && detailed[0].queueMS == 500, "queue wait and error kind")
        var w = StoreBatch()
        w.workers.append(WorkerRecord(workerID: "w-1", name: "w", slots: 4, kinds: ["echo", "exec"], address: "127.0.0.1:1",
                                      connectedAt: 1, lastSeen: 5, disconnectedAt: 6, tasksDone: 9))
        try await store.commit(w)
        let workers = try await store.workers()
        try expect(workers.count == 1 && workers[0].tasksDone == 9 && workers[0].disconnectedAt == 6 && workers[0].kinds == ["echo", "exec"], "worker upsert")
    }
}
