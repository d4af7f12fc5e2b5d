import CairnCore
import CairnHotTier
import CairnRedis
import CairnSQLite
import CairnStore
import CairnTestSupport
import Foundation
import Logging
import Testing

/// The Redis client and the hot tier against a real `redis-server` on a loopback port.
@Suite(.serialized) struct HotTierTests {
    let logger = Logger(label: "test")

    static func sqlite() throws -> SQLiteStore {
        try SQLiteStore(path: NSTemporaryDirectory() + "cairn-hot-\(UUID().uuidString).db", logger: Logger(label: "test"))
    }

    func batch(_ run: String, _ i: Int) -> StoreBatch {
        var b = StoreBatch()
        b.pendingWrites.append(PendingWriteRecord(runID: run, checkpointID: "c\(i)", taskID: "t\(i)", idx: 0, channel: "log", value: .int(Int64(i))))
        b.checkpoints.append(CheckpointRecord(runID: run, checkpointID: String(format: "c%04d", i), parentID: nil, step: i, source: "loop",
                                              channelVersions: [:], nextTasks: .array([]), metadata: .object([:]), createdAt: Double(i)))
        return b
    }

    func config(ttl: Double = 60, flushInterval: Double = 3600) -> HotTierConfig {
        var c = HotTierConfig()
        c.ttl = ttl
        c.flushInterval = flushInterval
        c.keyPrefix = "cairn:test-\(UUID().uuidString.prefix(6))"
        return c
    }

    @Test func clientPipelinesBinarySafelyAndReportsErrors() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(url: try RedisURL(server.url), logger: logger)
        let blob: [UInt8] = [0, 1, 2, 0xFF, 0x0D, 0x0A, 0]
        let replies = try await client.pipeline([
            [Array("SET".utf8), Array("k".utf8), blob],
            [Array("GET".utf8), Array("k".utf8)],
            [Array("INCRBY".utf8), Array("n".utf8), Array("5".utf8)],
            [Array("GET".utf8), Array("missing".utf8)],
            [Array("LPUSH".utf8), Array("k".utf8), Array("x".utf8)],
            [Array("MGET".utf8), Array("k".utf8), Array("missing".utf8)],
        ])
        #expect(replies[0] == .status("OK"))
        #expect(replies[1] == .string(blob))
        #expect(replies[2] == .integer(5))
        #expect(replies[3] == .null)
        if case .error(let e) = replies[4] { #expect(e.contains("WRONGTYPE")) } else { Issue.record("expected an error reply") }
        #expect(replies[5] == .array([.string(blob), .null]))
    }

    @Test func clientLogsInAndReconnectsAfterARestart() async throws {
        let server = try await RedisServer(extraArgs: ["--requirepass", "pw"])
        defer { server.stop() }
        let bad = RedisClient(url: try RedisURL("redis://:wrong@127.0.0.1:\(server.port)"), logger: logger)
        await #expect(throws: RedisError.self) { try await bad.command("PING") }
        let client = RedisClient(url: try RedisURL("redis://:pw@127.0.0.1:\(server.port)/2"), logger: logger)
        #expect(try await client.command("SET", "a", "1") == .status("OK"))
        server.kill()
        await #expect(throws: RedisError.self) { try await client.command("GET", "a") }
        try await server.restart()
        #expect(try await client.command("PING") == .status("PONG"))
    }

    @Test func urlsParse() throws {
        let u = try RedisURL("redis://:secret@cache.internal:6390/3")
        #expect(u.host == "cache.internal" && u.port == 6390 && u.password == "secret" && u.database == 3)
        #expect(u.description == "redis://cache.internal:6390/3")
        #expect(try RedisURL("redis://localhost").port == 6379)
        #expect(throws: RedisError.self) { try RedisURL("http://x") }
    }

    @Test func theHotTierPassesTheStoreConformanceSuite() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        try await StoreConformance.run {
            HotTierStore(durable: try Self.sqlite(), redis: RedisClient(url: try RedisURL(server.url), logger: logger), config: config(), logger: logger)
        }
    }

    @Test func everyKeyHasATTLAndAFlushThenFLUSHALLLosesNothing() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let cold = try Self.sqlite()
        let cfg = config(ttl: 120)
        let hot = HotTierStore(durable: cold, redis: RedisClient(url: try RedisURL(server.url), logger: logger), config: cfg, logger: logger)
        _ = try await hot.start()
        for i in 1...20 { try await hot.commit(batch("r1", i), durability: .hot) }
        // Nothing has reached SQLite yet: it is all in Redis, every key with a TTL.
        #expect(try await cold.checkpoints(runID: "r1", namespace: "", limit: 100).isEmpty)
        let keys = try await server.cli("--scan", "--pattern", cfg.keyPrefix + ":*").split(separator: "\n")
        #expect(keys.count == 21)  // 20 batches + the dirty index
        for key in keys {
            let ttl = Int(try await server.cli("PTTL", String(key)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            #expect(ttl > 0 && ttl <= 120_000, "\(key) has PTTL \(ttl)")
        }
        try await hot.flush()
        try await server.cli("FLUSHALL")
        #expect(try await cold.checkpoints(runID: "r1", namespace: "", limit: 100).count == 20)
        #expect(try await cold.pendingWrites(runID: "r1", namespace: "", checkpointID: "c7").first?.value == .int(7))
        await hot.stop()
    }

    @Test func batchesLeftInRedisByACrashedCoordinatorAreReplayed() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let cfg = config()
        let first = HotTierStore(durable: try Self.sqlite(), redis: RedisClient(url: try RedisURL(server.url), logger: logger), config: cfg, logger: logger)
        _ = try await first.start()
        for i in 1...5 { try await first.commit(batch("r2", i), durability: .hot) }
        // The coordinator dies here: `first` never flushes. A new one starts on the same Redis.
        let cold = try Self.sqlite()
        let second = HotTierStore(durable: cold, redis: RedisClient(url: try RedisURL(server.url), logger: logger), config: cfg, logger: logger)
        #expect(try await second.start() == 5)
        #expect(try await cold.checkpoints(runID: "r2", namespace: "", limit: 100).map(\.step) == [5, 4, 3, 2, 1])
        #expect(try await server.cli("ZCARD", cfg.keyPrefix + ":dirty").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        await second.stop()
    }

    @Test func whenRedisDiesWritesGoToSQLiteAndComeBackWhenItReturns() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let cold = try Self.sqlite()
        var cfg = config(flushInterval: 0.05)
        cfg.reconnectInterval = 0.1
        let hot = HotTierStore(durable: cold, redis: RedisClient(url: try RedisURL(server.url), logger: logger), config: cfg, logger: logger)
        _ = try await hot.start()
        try await hot.commit(batch("r3", 1), durability: .hot)
        server.kill()
        try await hot.commit(batch("r3", 2), durability: .hot)  // falls back to SQLite, after flushing batch 1
        #expect(await hot.redisUp == false)
        #expect(try await cold.checkpoints(runID: "r3", namespace: "", limit: 10).count == 2)
        try await server.restart()
        let deadline = Date().addingTimeInterval(5)
        while await hot.redisUp == false && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(await hot.redisUp)
        try await hot.commit(batch("r3", 3), durability: .hot)
        #expect(await hot.hotBatches == 2)
        await hot.stop()
        #expect(try await cold.checkpoints(runID: "r3", namespace: "", limit: 10).count == 3)
    }

    @Test func anEvictionPolicyThatCouldDropCheckpointsIsFlagged() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(url: try RedisURL(server.url), logger: logger)
        #expect(try await HotTierStore.evictionRisk(client) == nil)  // default: noeviction
        try await server.cli("CONFIG", "SET", "maxmemory-policy", "volatile-lru")
        #expect(try await HotTierStore.evictionRisk(client)?.contains("volatile-lru") == true)
        try await server.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        #expect(try await HotTierStore.evictionRisk(client) == nil)  // no memory limit: nothing is evicted
        try await server.cli("CONFIG", "SET", "maxmemory", "100mb")
        #expect(try await HotTierStore.evictionRisk(client)?.contains("allkeys-lru") == true)
    }

    @Test func whileSQLiteCannotBeWrittenNothingIsDroppedAndWritesHoldBeforeTheTTL() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let faulty = FaultyStore(try Self.sqlite())
        var cfg = config(ttl: 2, flushInterval: 0.05)
        cfg.backlogLimitFraction = 0.5
        let hot = HotTierStore(durable: faulty, redis: RedisClient(url: try RedisURL(server.url), logger: logger), config: cfg, logger: logger)
        _ = try await hot.start()
        faulty.failing = true
        let started = Date()
        try await hot.commit(batch("r4", 1), durability: .hot)  // into Redis
        // Keep writing: once the oldest waiting batch is half the TTL old, a write holds.
        let writer = Task {
            for i in 2...6 {
                try await hot.commit(self.batch("r4", i), durability: .hot)
                try await Task.sleep(nanoseconds: 300_000_000)
            }
        }
        try await Task.sleep(nanoseconds: 1_800_000_000)
        let waiting = await hot.tierReport().waitingBatches
        #expect(waiting >= 2 && waiting < 6, "writes held: \(waiting) batches waiting")
        #expect(await hot.tierReport().lastFlushError?.contains("disk is full") == true)
        // The first batch is still in Redis: it cannot have expired.
        let oldest = await hot.tierReport().oldestAge
        #expect(oldest < 2, "the oldest waiting batch (\(oldest)s after \(Date().timeIntervalSince(started))s) is younger than the TTL")
        faulty.failing = false
        try await writer.value
        try await hot.flush()
        #expect(try await faulty.checkpoints(runID: "r4", namespace: "", limit: 100).count == 6)
        #expect(faulty.failedCommits > 0)
        await hot.stop()
    }

    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = Int(text.split(separator: " ")[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test func repliesAreFreedUnderALongRun() async throws {
        let server = try await RedisServer()
        defer { server.stop() }
        let client = RedisClient(url: try RedisURL(server.url), logger: logger)
        let value = [UInt8](repeating: 0x61, count: 4096)
        func round() async throws {
            var cmds: [[[UInt8]]] = []
            for i in 0..<100 { cmds.append([Array("SET".utf8), Array("k\(i)".utf8), value]) }
            for i in 0..<100 { cmds.append([Array("GET".utf8), Array("k\(i)".utf8)]) }
            let replies = try await client.pipeline(cmds)
            #expect(replies.count == 200)
        }
        for _ in 0..<50 { try await round() }  // warm up allocator pools
        let before = Self.residentBytes()
        for _ in 0..<300 { try await round() }  // 60,000 commands, 120 MB of replies copied out
        let grown = Self.residentBytes() - before
        #expect(grown < 16 * 1024 * 1024, "resident memory grew by \(grown) bytes")
    }
}

/// A batch replayed from Redis at start never puts a run row back over a newer one: a write that
/// failed as Redis went away (and went to SQLite) can reach Redis anyway once the network heals.
@Suite struct HotTierReplayTests {
    @Test func aReplayedRunRowOlderThanTheStoredOneIsDropped() async throws {
        let store = InMemoryStore()
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g1", name: "demo", version: 1, fileName: "demo.yaml", source: "name: demo", bundleHash: nil, createdAt: 1))
        var done = RunRecord(runID: "r1", graphHash: "g1", graphName: "demo", graphVersion: 1, status: .completed, durability: "hot",
                             input: .object([:]), createdAt: 1)
        done.updatedAt = 20
        b.runs.append(done)
        try await store.commit(b)
        var stale = done
        stale.status = .running
        stale.updatedAt = 10
        var fresh = done
        fresh.updatedAt = 30
        var other = done
        other.runID = "r2"
        other.updatedAt = 5
        let kept = try await HotTierStore.newerThanStored([stale, fresh, other], in: store)
        #expect(kept.map(\.runID) == ["r1", "r2"] && kept.first?.updatedAt == 30, "\(kept)")
    }
}
