import CairnTestSupport
import Foundation
import Testing

/// The hot tier with real processes: a coordinator with --redis, workers, a real redis-server, in
/// front of SQLite (and of PostgreSQL, where a test takes `TestStore.available`).
@Suite(.serialized) struct HotTierProcessTests {
    @Test(arguments: TestStore.available)
    func hotRunsLandInTheStoreAndSurviveACoordinatorKill9(_ store: TestStore) async throws {
        let redis = try await RedisServer(appendOnly: true)
        defer { redis.stop() }
        let args = ["--redis", redis.url, "--flush-interval", "60s"]  // no periodic flush during the test: batches wait in Redis
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: args, store: store)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "hot", chainGraph(name: "hot", nodes: 12, sleep: 120))
        let runID = try await cluster.submit(graph)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try await cluster.cairn(["status", runID, "--json"]).object["step"] as? Int ?? 0) < 3 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let dirty = Int(try await redis.cli("--scan", "--pattern", "cairn:*:batch:*").split(separator: "\n").count)
        #expect(dirty > 0, "steps are waiting in Redis, not yet in SQLite")
        // Queries see them anyway (they flush first).
        let early = try await cluster.cairn(["history", runID, "--json"]).object
        let seen = ((early["checkpoints"] as? [[String: Any]]) ?? []).count
        #expect(seen >= 4)
        // More steps land in Redis after that flush; the coordinator dies with them unflushed.
        while Date() < deadline, (try await cluster.cairn(["status", runID, "--json"]).object["step"] as? Int ?? 0) < seen + 1 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(!(try await redis.cli("--scan", "--pattern", "cairn:*:batch:*")).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        try await cluster.restartCoordinator(signal: SIGKILL, args: args)
        try await cluster.waitForWorkers(2, timeout: 30)
        let status = try await cluster.waitForRun(runID, timeout: 60)
        #expect(status["status"] as? String == "completed")
        #expect(status["durability"] as? String == "hot")
        #expect((status[path: "output.log"] as? [String]) == (1...12).map { "n\($0)" }, "each node's write applied exactly once")
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let steps = ((history["checkpoints"] as? [[String: Any]]) ?? []).compactMap { $0["step"] as? Int }
        #expect(steps == Array((0...12).reversed()))
        #expect(cluster.log("coordinator.log").contains("replayed unflushed hot-tier batches into \(store == .postgres ? "PostgreSQL" : "SQLite")"))
        // A completed run is in SQLite: nothing of it is left waiting in Redis.
        let left = try await redis.cli("--scan", "--pattern", "cairn:*:batch:*")
        #expect(left.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        #expect(try await cluster.sql("SELECT status FROM runs WHERE run_id = '\(runID)'") == "completed")
        #expect(try await cluster.sql("SELECT count(*) FROM checkpoints WHERE run_id = '\(runID)'") == "13")
    }

    @Test func killingRedisMidRunFallsBackToSQLiteAndReturnsWhenItIsBack() async throws {
        let redis = try await RedisServer()
        defer { redis.stop() }
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--redis", redis.url])
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "steady", chainGraph(name: "steady", nodes: 15, sleep: 100))
        let runID = try await cluster.submit(graph)
        try await cluster.waitForStep(runID, atLeast: 2)
        redis.kill()
        let status = try await cluster.waitForRun(runID, timeout: 60)
        #expect(status["status"] as? String == "completed")
        #expect((status[path: "output.log"] as? [String]) == (1...15).map { "n\($0)" })
        #expect(cluster.log("coordinator.log").contains("Redis unreachable"))
        let down = try await cluster.cairn(["stats", "--json"]).object
        #expect(down["redis_up"] as? Bool == false)
        #expect((down["redis_failures"] as? Int ?? 0) >= 1)
        try await redis.restart()
        let deadline = Date().addingTimeInterval(10)
        var up = false
        while !up && Date() < deadline {
            up = try await cluster.cairn(["stats", "--json"]).object["redis_up"] as? Bool == true
            if !up { try await Task.sleep(nanoseconds: 200_000_000) }
        }
        #expect(up)
        #expect(cluster.log("coordinator.log").contains("Redis is reachable again"))
        let again = try await cluster.submit(try writeGraph(cluster, "after", chainGraph(name: "after", nodes: 3, sleep: 1)))
        #expect(try await cluster.waitForRun(again)["status"] as? String == "completed")
        #expect((try await cluster.cairn(["stats", "--json"]).object["hot_batches"] as? Int ?? 0) > 0)
    }

    @Test func aRedisAtItsMemoryLimitWithNoevictionLeavesRunsToFinishOnSQLite() async throws {
        let redis = try await RedisServer(extraArgs: ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"])
        defer { redis.stop() }
        // No periodic flush: hot steps stay in Redis (until a run ends) and fill it.
        let args = ["--redis", redis.url, "--flush-interval", "60s"]
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: args)
        defer { cluster.stop() }
        // 30 steps, each writing 200 kB of random hex (about 100 kB compressed): 3 MB into a 2 MB Redis.
        var text = "name: fat\nstate:\n  blob: {}\n  count: { reducer: sum }\nnodes:\n"
        for i in 1...30 {
            text += "  n\(i): { run: exec, command: [\"python3\", \"-c\", \"import json, os; print(json.dumps({'writes': {'blob': os.urandom(100000).hex(), 'count': 1}}))\"] }\n"
        }
        text += "edges:\n  - { from: START, to: n1 }\n"
        for i in 1..<30 { text += "  - { from: n\(i), to: n\(i + 1) }\n" }
        text += "  - { from: n30, to: END }\n"
        let graph = try writeGraph(cluster, "fat", text)
        let r = try await cluster.cairn(["submit", graph, "--run-id", "fat", "--wait", "--json"], timeout: 120)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.object[path: "output.count"] as? Int == 30, "every step applied once")
        #expect((r.object[path: "output.blob"] as? String)?.count == 200_000)
        #expect(try await redis.cli("CONFIG", "GET", "maxmemory-policy").contains("noeviction"))
        let stats = try await cluster.cairn(["stats", "--json"]).object
        #expect((stats["redis_failures"] as? Int ?? 0) >= 1, "Redis refused writes (OOM): \(stats)")
        #expect(cluster.log("coordinator.log").contains("OOM"), "the log says why")
        print("Redis at maxmemory: \(stats["redis_failures"] ?? 0) refused writes, \(stats["hot_batches"] ?? 0) batches went to Redis; the run finished on SQLite")
        let history = try await cluster.cairn(["history", "fat", "--json"]).object
        #expect(((history["checkpoints"] as? [[String: Any]]) ?? []).count == 31)
    }

    @Test func aRedisThatCouldEvictCheckpointsIsRefusedAtStart() async throws {
        let redis = try await RedisServer(extraArgs: ["--maxmemory-policy", "volatile-lru"])
        defer { redis.stop() }
        let dir = NSTemporaryDirectory() + "cairn-evict-" + UUID().uuidString.prefix(6)
        let refused = try await TestCluster.run(TestCluster.binDirectory + "/cairn-coordinator",
                                                ["--listen", "127.0.0.1:0", "--db", dir + "/c.db", "--redis", redis.url], timeout: 20)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("volatile-lru"))
        #expect(refused.stderr.contains("noeviction"))
        // A refusal at run time names the program and the cause; the command line was right, so no usage text.
        #expect(refused.stderr.contains("cairn-coordinator: "), "\(refused.stderr)")
        #expect(!refused.stderr.contains("Usage"), "\(refused.stderr)")
        let allowed = try await TestCluster.start(workers: 1, coordinatorArgs: ["--redis", redis.url, "--allow-redis-eviction"])
        defer { allowed.stop() }
        #expect(allowed.log("coordinator.log").contains("eviction policy is unsafe"))
    }

    @Test func theWALStaysBoundedOverThousandsOfSteps() async throws {
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--wal-checkpoint-interval", "1s"])
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "spin", """
            name: spin
            state:
              laps: { reducer: sum }
              trail: { reducer: append }
              status: {}
            nodes:
              lap: { run: echo, writes: { laps: 1, trail: "\(String(repeating: "x", count: 100))" } }
            edges:
              - { from: START, to: lap }
              - from: lap
                route: { on: status, cases: { stop: END }, default: lap }
            limits: { max_steps: 3000 }
            """)
        let runID = try await cluster.submit(graph)
        var maxWAL = 0
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let stats = try await cluster.cairn(["stats", "--json"]).object
            maxWAL = max(maxWAL, stats["wal_bytes"] as? Int ?? 0)
            let s = try await cluster.cairn(["status", runID, "--json"]).object
            if s["status"] as? String != "running" { break }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        let status = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(status["step"] as? Int == 3000)
        #expect((status["error"] as? String ?? "").contains("max_steps = 3000"))
        #expect(maxWAL < 16 * 1024 * 1024, "the -wal file peaked at \(maxWAL) bytes")
        let trail = try await cluster.cairn(["state", runID, "--json"]).object
        #expect((trail[path: "state.trail"] as? [String])?.count == 3000)
    }
}
