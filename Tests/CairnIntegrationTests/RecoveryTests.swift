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

    @Test func aCoordinatorKilledMidRunResumesFromItsCheckpoints() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "long", chainGraph(name: "long", nodes: 12, sleep: 150))
        let runID = try await cluster.submit(graph)
        try await Task.sleep(nanoseconds: 900_000_000)
        let before = try await cluster.cairn(["status", runID, "--json"]).object
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
}
