import CairnTestSupport
import Foundation
import Testing

/// Workers that die, freeze and come back: leases, heartbeats, fencing, poison, progress.
@Suite(.serialized) struct WorkerFailureTests {
    static let fast = ["--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s"]

    func busyWorker(_ cluster: TestCluster, timeout: Double = 20) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let workers = (try await cluster.cairn(["workers", "--json"]).json as? [[String: Any]]) ?? []
            if let name = workers.first(where: { ($0["running"] as? Int ?? 0) > 0 })?["name"] as? String { return name }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw ClusterError("no worker picked up a task")
    }

    @Test func aFrozenWorkersLateResultIsRejectedAndTheTaskFinishesElsewhere() async throws {
        let cluster = try await TestCluster.start(workers: 0, coordinatorArgs: Self.fast)
        defer { cluster.stop() }
        cluster.startWorker(name: "a", slots: 1)
        cluster.startWorker(name: "b", slots: 1)
        try await cluster.waitForWorkers(2)
        let graph = try writeGraph(cluster, "freeze", """
            name: freeze
            state:
              log: { reducer: append }
              count: { reducer: sum }
            nodes:
              slow: { run: sleep, duration: 1500ms, writes: { log: slow, count: 1 } }
              after: { run: echo, writes: { log: after, count: 1 } }
            edges:
              - { from: START, to: slow }
              - { from: slow, to: after }
              - { from: after, to: END }
            """)
        let runID = try await cluster.submit(graph)
        let frozenName = try await busyWorker(cluster)
        let frozen = try #require(cluster.worker(named: frozenName))
        kill(frozen.processIdentifier, SIGSTOP)
        // Past the heartbeat timeout the coordinator fences it and hands the task to the other worker.
        try await cluster.waitForLog("coordinator.log", containing: "no heartbeat for 1s")
        kill(frozen.processIdentifier, SIGCONT)  // its sleep is over: it sends its result at once
        let status = try await cluster.waitForRun(runID, timeout: 30)
        #expect(status["status"] as? String == "completed")
        #expect(status[path: "output.log"] as? [String] == ["slow", "after"], "the frozen worker's write was not applied")
        #expect(status[path: "output.count"] as? Int == 2)
        let deadline = Date().addingTimeInterval(10)
        var stats: [String: Any] = [:]
        while Date() < deadline {
            stats = try await cluster.cairn(["stats", "--json"]).object
            if (stats["stale_results"] as? Int ?? 0) >= 1 { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect((stats["stale_results"] as? Int ?? 0) >= 1, "\(stats)")
        #expect((stats["tasks_reassigned"] as? Int ?? 0) >= 1)
        #expect(cluster.log("coordinator.log").contains("no heartbeat for 1s"))
        // The thawed worker reconnects and is usable again; it was told its result was not taken.
        try await cluster.waitForWorkers(2, timeout: 15)
        #expect(cluster.log("worker-\(frozenName).log").contains("coordinator discarded a late result"))
    }

    @Test func theNextAttemptContinuesFromTheLastProgress() async throws {
        let cluster = try await TestCluster.start(workers: 0, coordinatorArgs: Self.fast)
        defer { cluster.stop() }
        let marker = cluster.directory + "/count.txt"
        let graph = try writeGraph(cluster, "count", """
            name: count
            state:
              started_from: {}
              counted: {}
              attempts: { reducer: append }
            nodes:
              count: { run: exec, command: ["python3", "count.py"], env: { MARKER: "\(marker)" } }
            edges:
              - { from: START, to: count }
              - { from: count, to: END }
            """)
        try """
            import json, os, sys, time
            t = json.load(sys.stdin)
            start = (t.get("progress") or {}).get("done", 0)
            for i in range(start, 10):
                time.sleep(0.25)
                print(json.dumps({"progress": {"done": i + 1}}), flush=True)
                open(os.environ["MARKER"], "w").write(str(i + 1))
            print(json.dumps({"writes": {"started_from": start, "counted": 10, "attempts": t["attempt"]}}))
            """.write(toFile: (graph as NSString).deletingLastPathComponent + "/count.py", atomically: true, encoding: .utf8)
        let first = cluster.startWorker(name: "first", slots: 1)
        try await cluster.waitForWorkers(1)
        let runID = try await cluster.submit(graph)
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, (Int((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "0") ?? 0) < 6 {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        kill(first.processIdentifier, SIGKILL)
        cluster.startWorker(name: "second", slots: 1)
        let status = try await cluster.waitForRun(runID, timeout: 30)
        #expect(status["status"] as? String == "completed")
        let from = status[path: "output.started_from"] as? Int ?? -1
        #expect(from >= 5 && from < 10, "the second attempt started from \(from), not from scratch")
        #expect(status[path: "output.counted"] as? Int == 10)
        #expect(status[path: "output.attempts"] as? [Int] == [2])
    }

    @Test func aTaskThatKillsEveryWorkerItRunsOnIsDeclaredPoisonous() async throws {
        let cluster = try await TestCluster.start(workers: 4, slots: 1, coordinatorArgs: Self.fast + ["--poison-after", "3"])
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "poison", """
            name: poison
            state:
              out: {}
            nodes:
              bad: { run: exec, command: ["python3", "poison.py"], retry: { max_attempts: 10 } }
            edges:
              - { from: START, to: bad }
              - { from: bad, to: END }
            """)
        try """
            import os, signal
            os.kill(os.getppid(), signal.SIGKILL)
            """.write(toFile: (graph as NSString).deletingLastPathComponent + "/poison.py", atomically: true, encoding: .utf8)
        let runID = try await cluster.submit(graph)
        let status = try await cluster.waitForRun(runID, timeout: 30)
        #expect(status["status"] as? String == "failed")
        let error = status["error"] as? String ?? ""
        #expect(error.contains("was running on 3 workers that all died"), "\(error)")
        #expect(error.contains("poisonous"))
        let stats = try await cluster.cairn(["stats", "--json"]).object
        #expect(stats["tasks_poisoned"] as? Int == 1)
        let workers = (try await cluster.cairn(["workers", "--json"]).json as? [Any]) ?? []
        #expect(workers.count == 1, "three workers died, one is left")
    }

    @Test func aWorkerThatJoinsMidRunGetsWorkAtOnce() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "waiting", chainGraph(name: "waiting", nodes: 3, sleep: 1))
        let runID = try await cluster.submit(graph)
        // Accepted, and waiting: with no worker there is nothing that could have run its first step.
        let waiting = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(["queued", "running"].contains(waiting["status"] as? String ?? ""), "\(waiting)")
        #expect(waiting["step"] as? Int == 0)
        cluster.startWorker(name: "late", slots: 2)
        let status = try await cluster.waitForRun(runID, timeout: 20)
        #expect(status["status"] as? String == "completed")
    }

    /// A worker that runs task after task on one connection keeps the same memory: the session
    /// lets go of each task once it has answered (before, its task group kept every finished
    /// child, about 5 KB a task: a week of tasks would have filled the machine).
    @Test func aWorkersMemoryDoesNotGrowWithTheTasksItHasRun() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 8)
        defer { cluster.stop() }
        let g = try writeGraph(cluster, "fan", """
            name: fan
            state:
              items: {}
              out: { reducer: sum }
            nodes:
              spread: { run: map, over: items, to: each }
              each: { run: sleep, duration: 0ms, writes: { out: 1 } }
            edges:
              - { from: START, to: spread }
            """)
        let pid = try #require(cluster.worker(named: "w1")?.processIdentifier)
        // A worker whose size cannot be read fails the test, rather than passing it with 0s.
        func rss() throws -> Int {
            let s = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            let line = try #require(s.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
            return try #require(Int(line.split(separator: " ").dropFirst().first ?? "")) * 1024
        }
        let input = "{\"items\": [\((0..<3000).map(String.init).joined(separator: ","))]}"
        var sizes: [Int] = []
        for _ in 0..<3 {
            let r = try await cluster.waitForRun(try await cluster.submit(g, input: input), timeout: 120)
            #expect(r[path: "output.out"] as? Int == 3000, "\(r)")
            sizes.append(try rss())
        }
        // 6,000 more tasks after the first 3,000: it grew about 30 MB before.
        #expect(sizes[2] - sizes[0] < 8 << 20, "the worker's resident memory went \(sizes.map { $0 >> 20 }) MiB")
    }

    /// A coordinator that takes the connection and closes it before answering is starting,
    /// stopping or changing role (a standby's door closes as it takes the lead). A worker given
    /// that one coordinator keeps asking; it used to stop for good, which a lone coordinator
    /// killed and restarted on PostgreSQL showed now and then in CI.
    @Test func aWorkerKeepsAskingACoordinatorThatClosesBeforeAnswering() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        kill(cluster.coordinator.processIdentifier, SIGKILL)
        cluster.coordinator.waitUntilExit()
        // On the coordinator's port: a listener that reads each Hello and hangs up without a word.
        let closer = Process()
        closer.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        closer.arguments = ["python3", "-c", """
            import socket, time
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", \(cluster.port))); s.listen(16); s.settimeout(0.2)
            end = time.time() + 3
            while time.time() < end:
                try:
                    c, _ = s.accept(); c.settimeout(1); c.recv(4096); c.close()
                except OSError:
                    pass
            """]
        try closer.run()
        defer { if closer.isRunning { closer.terminate() } }
        let worker = cluster.startWorker(name: "patient")
        closer.waitUntilExit()
        #expect(worker.isRunning, "the worker stopped: \(cluster.log("worker-patient.log"))")
        #expect(cluster.log("worker-patient.log").contains("closed the connection before answering"), "\(cluster.log("worker-patient.log"))")
        try await cluster.restartCoordinator()
        try await cluster.waitForWorkers(1, timeout: 30)
    }
}
