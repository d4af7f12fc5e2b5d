import CairnTestSupport
import Foundation
import Testing

/// Processes die mid-run; the run still finishes with the right state and nothing applied twice.
@Suite(.serialized) struct RecoveryTests {
    @Test func aWorkerKilledMidTaskLosesNothing() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        cluster.startWorker(name: "a", slots: 1)
        cluster.startWorker(name: "b", slots: 1)
        try await cluster.waitForWorkers(2)
        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: 8, sleep: 400))
        let runID = try await cluster.submit(graph)
        // Kill whichever worker holds a task, in the middle of it.
        let deadline = Date().addingTimeInterval(20)
        var killed = false
        while Date() < deadline && !killed {
            let workers = (try await cluster.cairn(["workers", "--json"]).json as? [[String: Any]]) ?? []
            if let busy = workers.first(where: { $0["running"] as? Int == 1 })?["name"] as? String,
               let process = cluster.worker(named: busy) {
                kill(process.processIdentifier, SIGKILL)
                killed = true
            } else {
                try await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        #expect(killed)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed")
        #expect((status[path: "output.log"] as? [String]) == (1...8).map { "n\($0)" })
        #expect(status[path: "output.count"] as? Int == 8)
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let tasks = ((history["checkpoints"] as? [[String: Any]]) ?? []).flatMap { ($0["tasks"] as? [[String: Any]]) ?? [] }
        #expect(tasks.filter { $0["status"] as? String == "lost" }.count == 1)
        #expect(tasks.filter { $0["status"] as? String == "completed" }.count == 8)
    }

    /// With no worker connected a run is queued (status, list, stats, the store's row), stays
    /// queued across a coordinator kill, and is running once a worker has its first task.
    @Test func aRunWithNoWorkerIsQueuedAcrossARestartAndRunningOnceAWorkerTakesIt() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: 3, sleep: 1500))
        let runID = try await cluster.submit(graph)
        func status() async throws -> String? { try await cluster.cairn(["status", runID, "--json"]).object["status"] as? String }
        #expect(try await status() == "queued")
        let list = (try await cluster.cairn(["list", "--status", "queued", "--json"]).json as? [[String: Any]]) ?? []
        #expect(list.map { $0["run_id"] as? String } == [runID])
        let stats = try await cluster.cairn(["stats", "--json"]).object
        #expect((stats["runs_by_status"] as? [String: Any])?["queued"] as? Int == 1 && stats["queue_depth"] as? Int == 1, "\(stats)")
        #expect(try await cluster.sql("SELECT status FROM runs WHERE run_id = '\(runID)'") == "queued")

        try await cluster.restartCoordinator(signal: SIGKILL)
        #expect(try await status() == "queued", "a run no worker took is still queued after a restart")

        cluster.startWorker(name: "late", slots: 1)
        try await cluster.waitUntil("the run running", timeout: 20) { try await status() == "running" }
        // The stored row says so too, while the first task runs (before any step is recorded).
        try await cluster.waitUntil("the stored row running", timeout: 5) {
            try await cluster.sql("SELECT status || ' ' || step FROM runs WHERE run_id = '\(runID)'") == "running 0"
        }
        let done = try await cluster.waitForRun(runID)
        #expect(done["status"] as? String == "completed" && (done[path: "output.log"] as? [String]) == ["n1", "n2", "n3"])
    }

    @Test(arguments: TestStore.available)
    func aCoordinatorKilledMidRunResumesFromItsCheckpoints(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 2, store: store)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "long", chainGraph(name: "long", nodes: 12, sleep: 150))
        let runID = try await cluster.submit(graph)
        let before = try await cluster.waitForStep(runID, atLeast: 2)
        let stepBefore = before["step"] as? Int ?? 0
        #expect(stepBefore >= 2 && stepBefore < 12)
        try await cluster.restartCoordinator(signal: SIGKILL)
        try await cluster.waitForWorkers(2, timeout: 30)
        let status = try await cluster.waitForRun(runID, timeout: 60)
        #expect(status["status"] as? String == "completed")
        #expect((status[path: "output.log"] as? [String]) == (1...12).map { "n\($0)" }, "each node's write applied exactly once")
        #expect(status[path: "output.count"] as? Int == 12)
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let steps = ((history["checkpoints"] as? [[String: Any]]) ?? []).compactMap { $0["step"] as? Int }
        #expect(steps == Array((0...12).reversed()), "one checkpoint per step, none repeated")
        #expect(cluster.log("coordinator.log").contains("run recovered"))
    }
    /// The scheduler hands out step N+1 before step N's checkpoint is durable (the writer commits
    /// in order behind it). Killing the coordinator in the middle of that, many times a second,
    /// must still leave every run with each write applied once and one checkpoint per step.
    @Test(arguments: TestStore.available, ["sync", "hot"])
    func aCoordinatorKilledWhilePipelinedChainsRunLosesNothingAndRepeatsNothing(_ store: TestStore, _ durability: String) async throws {
        let redis = durability == "hot" ? try await RedisServer(appendOnly: true) : nil
        defer { redis?.stop() }
        let args = redis.map { ["--redis", $0.url] } ?? []
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: args, store: store)
        defer { cluster.stop() }
        let n = 60
        var text = "name: fast\nstate:\n  log: { reducer: append }\n  count: { reducer: sum }\nnodes:\n"
        for i in 1...n { text += "  n\(i): { run: echo, writes: { log: n\(i), count: 1 } }\n" }
        text += "edges:\n  - { from: START, to: n1 }\n"
        for i in 1..<n { text += "  - { from: n\(i), to: n\(i + 1) }\n" }
        text += "  - { from: n\(n), to: END }\n"
        let graph = try writeGraph(cluster, "fast", text)
        let submitted = try await cluster.cairn(["submit", graph, "--count", "20", "--run-id", "fast", "--durability", durability, "--json"])
        #expect(submitted.status == 0, "\(submitted.stderr)")
        // Kill it mid-flight: as soon as the first run has made progress, most are mid-chain.
        try await cluster.waitForStep("fast-0", atLeast: 1)
        try await cluster.restartCoordinator(signal: SIGKILL, args: args)
        try await cluster.waitForWorkers(2, timeout: 30)
        for i in 0..<20 {
            let runID = "fast-\(i)"
            let status = try await cluster.waitForRun(runID, timeout: 60)
            #expect(status["status"] as? String == "completed", "\(runID): \(status)")
            #expect((status[path: "output.log"] as? [String]) == (1...n).map { "n\($0)" }, "\(runID): each write applied once, in order")
            #expect(status[path: "output.count"] as? Int == n)
            let history = try await cluster.cairn(["history", runID, "--json"]).object
            let steps = ((history["checkpoints"] as? [[String: Any]]) ?? []).compactMap { $0["step"] as? Int }
            #expect(steps == Array((0...n).reversed()), "\(runID): one checkpoint per step, none repeated")
        }
        #expect(cluster.log("coordinator.log").contains("run recovered"), "the kill came while runs were in flight")
    }
}
