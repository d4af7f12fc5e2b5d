import CairnTestSupport
import Foundation
import Testing

/// Operating Cairn: metrics and health endpoints, graceful shutdown, and the deploy files.
@Suite(.serialized) struct OperationsTests {
    func get(_ url: String) async throws -> (status: Int, body: String) {
        let script = """
            import sys, urllib.request, urllib.error
            try:
                r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); print(r.read().decode())
            except urllib.error.HTTPError as e:
                print(e.code); print(e.read().decode())
            """
        let r = try await TestCluster.run("/usr/bin/env", ["python3", "-c", script, url], timeout: 20)
        let lines = r.stdout.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        return (Int(lines.first ?? "") ?? 0, lines.count > 1 ? String(lines[1]) : "")
    }

    @Test func metricsAndHealthAreServed() async throws {
        let redis = try await RedisServer()
        defer { redis.stop() }
        let port = try RedisServer.freePort()
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--redis", redis.url, "--metrics", "127.0.0.1:\(port)"])
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "m", chainGraph(name: "m", nodes: 3, sleep: 1))
        let r = try await cluster.cairn(["submit", graph, "--wait"])
        #expect(r.status == 0)
        var deadline = Date().addingTimeInterval(10)
        var health = try await get("http://127.0.0.1:\(port)/healthz")
        while health.status != 200 && Date() < deadline { try await Task.sleep(nanoseconds: 100_000_000); health = try await get("http://127.0.0.1:\(port)/healthz") }
        #expect(health.status == 200)
        #expect(health.body.contains("\"redis\": \"up\""))
        // `cairn health`, the containers' health check: exit 0 and the answer when healthy.
        let cairn = TestCluster.binDirectory + "/cairn"
        let probe = try await TestCluster.run(cairn, ["health", "http://127.0.0.1:\(port)/healthz"])
        #expect(probe.status == 0 && probe.stdout.contains("\"redis\": \"up\""), "\(probe.stdout) \(probe.stderr)")
        let nothing = try await TestCluster.run(cairn, ["health", "127.0.0.1:\(try RedisServer.freePort())", "--timeout", "1"])
        #expect(nothing.status == 2 && nothing.stderr.contains("nothing answered"), "\(nothing.stderr)")
        let https = try await TestCluster.run(cairn, ["health", "https://127.0.0.1:\(port)/healthz"])
        #expect(https.status != 0 && https.stderr.contains("plain HTTP"), "\(https.stderr)")
        let metrics = try await get("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.status == 200)
        for name in ["cairn_tasks_dispatched_total 3", "cairn_tasks_completed_total 3", "cairn_runs{status=\"completed\"} 1",
                     "cairn_workers_connected 2", "cairn_redis_up 1", "cairn_task_duration_seconds_bucket", "cairn_sqlite_wal_bytes",
                     "cairn_queue_depth 0", "cairn_stale_results_rejected_total", "cairn_hot_tier_flush_lag_seconds"] {
            #expect(metrics.body.contains(name), "missing \(name)")
        }
        redis.kill()
        deadline = Date().addingTimeInterval(10)
        // Redis down is reported once a write notices it.
        _ = try await cluster.cairn(["submit", graph, "--wait"])
        health = try await get("http://127.0.0.1:\(port)/healthz")
        #expect(health.status == 503)
        #expect(health.body.contains("\"redis\": \"down\""))
        let unhealthy = try await TestCluster.run(cairn, ["health", "--quiet", "127.0.0.1:\(port)"])
        #expect(unhealthy.status == 1 && unhealthy.stdout.isEmpty, "\(unhealthy.stdout)")
        #expect(try await get("http://127.0.0.1:\(port)/nope").status == 404)
    }

    @Test func workersServeTheirOwnCounters() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let port = try RedisServer.freePort()
        cluster.startWorker(name: "counted", extraArgs: ["--metrics", "127.0.0.1:\(port)"])
        try await cluster.waitForWorkers(1)
        let graph = try writeGraph(cluster, "w", chainGraph(name: "w", nodes: 4, sleep: 1))
        _ = try await cluster.cairn(["submit", graph, "--wait"])
        let metrics = try await get("http://127.0.0.1:\(port)/metrics")
        #expect(metrics.body.contains("cairn_worker_tasks_completed_total 4"))
        #expect(metrics.body.contains("cairn_worker_tasks_started_total 4"))
    }

    @Test func sigtermFlushesAndTheFileHoldsEveryStepTaken() async throws {
        let redis = try await RedisServer()
        defer { redis.stop() }
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--redis", redis.url, "--flush-interval", "10s"])
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "long", chainGraph(name: "long", nodes: 30, sleep: 50))
        let runID = try await cluster.submit(graph)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (try await cluster.cairn(["status", runID, "--json"]).object["step"] as? Int ?? 0) < 5 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        kill(cluster.coordinator.processIdentifier, SIGTERM)
        cluster.coordinator.waitUntilExit()
        #expect(cluster.coordinator.terminationStatus == 0)
        #expect(cluster.log("coordinator.log").contains("every queued write is committed"))
        #expect(cluster.log("coordinator.log").contains("every step is in SQLite"))
        let q = try await TestCluster.run("/usr/bin/env", ["sqlite3", cluster.databasePath,
            "SELECT (SELECT step FROM runs WHERE run_id = '\(runID)') || ' ' || (SELECT COUNT(*) FROM checkpoints WHERE run_id = '\(runID)') || ' ' || (SELECT MAX(step) FROM checkpoints WHERE run_id = '\(runID)')"])
        let parts = q.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(parts.count == 3)
        if parts.count == 3 {
            #expect(parts[0] >= 5, "steps taken: \(parts[0])")
            #expect(parts[1] == parts[0] + 1, "one checkpoint per step taken, plus the input")
            #expect(parts[2] == parts[0])
        }
        #expect(try await redis.cli("--scan", "--pattern", "cairn:*:batch:*").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        let wal = (try? FileManager.default.attributesOfItem(atPath: cluster.databasePath + "-wal")[.size] as? Int) ?? 0
        #expect(wal == 0, "the WAL was truncated on the way out")
    }

    /// The image ships one binary: called as cairn-coordinator or cairn-worker (a link), it is that program.
    @Test func theCairnBinaryIsTheCoordinatorAndTheWorkerByName() async throws {
        let dir = NSTemporaryDirectory() + "cairn-links-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["cairn-coordinator", "cairn-worker", "cairn"] {
            try FileManager.default.createSymbolicLink(atPath: dir + "/" + name, withDestinationPath: TestCluster.binDirectory + "/cairn")
        }
        let coordinator = try await TestCluster.run(dir + "/cairn-coordinator", ["--help"])
        #expect(coordinator.status == 0 && coordinator.stdout.contains("USAGE: cairn-coordinator") && coordinator.stdout.contains("--redis"))
        let worker = try await TestCluster.run(dir + "/cairn-worker", ["--help"])
        #expect(worker.status == 0 && worker.stdout.contains("USAGE: cairn-worker") && worker.stdout.contains("--slots"))
        let client = try await TestCluster.run(dir + "/cairn", ["--help"])
        #expect(client.status == 0 && client.stdout.contains("USAGE: cairn <subcommand>") && client.stdout.contains("health"))
        // The linked coordinator really serves: it refuses a bad flag the way the real one does.
        let bad = try await TestCluster.run(dir + "/cairn-coordinator", ["--listen", "nope"])
        #expect(bad.status != 0 && bad.stderr.contains("--listen must be HOST:PORT"), "\(bad.stderr)")
    }

    /// The compose file and Dockerfile pass flags to the binaries; each must be one their --help knows.
    @Test func deployFilesOnlyUseFlagsTheBinariesAccept() async throws {
        let compose = try String(contentsOfFile: repositoryRoot + "/docker/docker-compose.yml", encoding: .utf8)
        let dockerfile = try String(contentsOfFile: repositoryRoot + "/docker/Dockerfile", encoding: .utf8)
        var used: [String: Set<String>] = [:]  // binary → flags
        var current: String?
        for raw in compose.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            for binary in ["cairn-coordinator", "cairn-worker", "cairn"] where line.contains("\"\(binary)\"") || line == "- \(binary)" {
                current = binary
            }
            if line.hasPrefix("command: [") || line.hasPrefix("entrypoint: [") {
                let words = line.components(separatedBy: CharacterSet(charactersIn: "[],\" ")).filter { !$0.isEmpty }
                if let b = words.first(where: { $0.hasPrefix("cairn") }) { current = b }
                for w in words where w.hasPrefix("--") { used[current ?? "?", default: []].insert(w) }
            } else if line.hasPrefix("- --"), let c = current {
                used[c, default: []].insert(String(line.dropFirst(2)))
            } else if !line.hasPrefix("-") {
                if !line.hasPrefix("command:") { current = line.hasPrefix("entrypoint:") ? current : nil }
            }
        }
        for line in dockerfile.split(separator: "\n") where line.hasPrefix("CMD") {
            let words = line.components(separatedBy: CharacterSet(charactersIn: "[],\" ")).filter { !$0.isEmpty }
            if let b = words.first(where: { $0.hasPrefix("cairn") }) {
                for w in words where w.hasPrefix("--") { used[b, default: []].insert(w) }
            }
        }
        #expect(used["cairn-coordinator"]?.contains("--redis") == true, "the parser found the coordinator's flags: \(used)")
        #expect(used["cairn-worker"]?.contains("--coordinator") == true)
        for (binary, flags) in used where binary != "?" {
            let help = try await TestCluster.run(TestCluster.binDirectory + "/" + binary, ["--help"]).stdout
            for flag in flags.sorted() {
                #expect(help.contains(flag), "\(binary) --help does not list \(flag), which docker/ passes to it")
            }
        }
    }
}
