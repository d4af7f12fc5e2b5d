import CairnTestSupport
import Foundation
import Testing

/// The exec protocol (goto, sends, progress, metrics, stderr, timeouts), interrupts, many runs, draining.
@Suite(.serialized) struct ExecAndControlTests {
    static let router = """
        import json, sys
        task = json.load(sys.stdin)
        cfg = task["config"]
        mode = cfg.get("env", {}).get("MODE", "")
        if task["node"] == "plan":
            print(json.dumps({"progress": {"planned": 3}}), flush=True)
            print(json.dumps({"writes": {"log": ["planned"]}, "sends": [{"node": "square", "input": n} for n in (2, 3, 4)],
                              "metrics": {"cost": 0.5, "api_calls": 3}}))
        elif task["node"] == "square":
            print(json.dumps({"writes": {"total": task["input"] ** 2, "log": ["sq%d" % task["input"]]}}))
        elif task["node"] == "decide":
            total = task["state"]["total"]
            print(json.dumps({"writes": {"log": ["decided"]}, "goto": "big" if total > 10 else "small"}))
        elif task["node"] == "crash":
            sys.stderr.write("Traceback: something exploded in the model client\\n")
            sys.exit(3)
        elif task["node"] == "hang":
            import time; time.sleep(30)
        else:
            print(json.dumps({"writes": {"log": [task["node"]]}}))
        """

    @Test func execNodesRouteWithGotoAndFanOutWithSends() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "router", """
            name: router
            state:
              log: { reducer: append }
              total: { reducer: sum }
            nodes:
              plan: { run: exec, command: ["python3", "node.py"] }
              square: { run: exec, command: ["python3", "node.py"] }
              decide: { run: exec, command: ["python3", "node.py"] }
              big: { run: exec, command: ["python3", "node.py"] }
              small: { run: exec, command: ["python3", "node.py"] }
            edges:
              - { from: START, to: plan }
              - { from: [square], to: decide }
              - { from: big, to: END }
              - { from: small, to: END }
            """)
        try Self.router.write(toFile: (graph as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        let runID = try await cluster.submit(graph)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed", "\(status)")
        #expect(status[path: "output.total"] as? Int == 29)
        #expect(status[path: "output.log"] as? [String] == ["planned", "sq2", "sq3", "sq4", "decided", "big"])
        #expect(abs((status["cost"] as? Double ?? 0) - 0.5) < 1e-9)
        #expect(status["api_calls"] as? Int == 3)
    }

    @Test func execFailuresCarryTheStderrTailAndTimeoutsKillTheProgram() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "broken", """
            name: broken
            state:
              log: { reducer: append }
            nodes:
              crash: { run: exec, command: ["python3", "node.py"] }
            edges:
              - { from: START, to: crash }
              - { from: crash, to: END }
            """)
        try Self.router.write(toFile: (graph as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        let runID = try await cluster.submit(graph)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "failed")
        #expect((status["error"] as? String ?? "").contains("something exploded in the model client"))
        #expect((status["error"] as? String ?? "").contains("exited with status 3"))

        let hang = try writeGraph(cluster, "hang", """
            name: hang
            state:
              log: { reducer: append }
            nodes:
              hang: { run: exec, command: ["python3", "node.py"], timeout: 500ms }
            edges:
              - { from: START, to: hang }
              - { from: hang, to: END }
            """)
        try Self.router.write(toFile: (hang as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        let started = Date()
        let hangID = try await cluster.submit(hang)
        let hung = try await cluster.waitForRun(hangID, timeout: 20)
        #expect(hung["status"] as? String == "failed")
        #expect((hung["error"] as? String ?? "").contains("timed out"))
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func interruptsPauseTheRunAtTheRightStep() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let before = try writeGraph(cluster, "review", """
            name: review
            state:
              log: { reducer: append }
            nodes:
              draft: { run: echo, writes: { log: draft } }
              publish: { run: echo, writes: { log: publish } }
            edges:
              - { from: START, to: draft }
              - { from: draft, to: publish }
              - { from: publish, to: END }
            interrupt_before: [publish]
            """)
        let r = try await cluster.cairn(["submit", before, "--wait"])
        #expect(r.status == 4, "paused runs exit 4: \(r.stdout)")
        let runID = try #require((try await cluster.cairn(["list", "--json"]).json as? [[String: Any]])?.first?["run_id"] as? String)
        let status = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(status["status"] as? String == "paused")
        #expect(status[path: "interrupt.pending.0.reason"] as? String == "interrupt_before")
        #expect(status[path: "interrupt.pending.0.node"] as? String == "publish")
        #expect((status[path: "interrupt.pending.0.id"] as? String ?? "").hasPrefix("i-"))
        #expect(status["next"] as? [String] == ["publish"])
        let state = try await cluster.cairn(["state", runID, "--json"]).object
        #expect(state[path: "state.log"] as? [String] == ["draft"])

        let after = try writeGraph(cluster, "after", try String(contentsOfFile: before, encoding: .utf8)
            .replacingOccurrences(of: "interrupt_before: [publish]", with: "interrupt_after: [draft]")
            .replacingOccurrences(of: "name: review", with: "name: after"))
        let afterID = try await cluster.submit(after)
        let paused = try await cluster.waitForRun(afterID)
        #expect(paused["status"] as? String == "paused")
        #expect(paused[path: "interrupt.pending.0.reason"] as? String == "interrupt_after")
        #expect(paused["step"] as? Int == 1)
        // Resumed, each goes on: the interrupted node runs (before), the next step runs (after).
        for id in [runID, afterID] {
            let resumed = try await cluster.cairn(["resume", id, "--wait", "--json"])
            #expect(resumed.status == 0, "\(resumed.stdout) \(resumed.stderr)")
            #expect(resumed.object[path: "output.log"] as? [String] == ["draft", "publish"])
        }
    }

    /// Python nodes `import cairn` on a worker where nothing is installed: the worker writes its
    /// copy of the node library into its cache and puts it first on the nodes' PYTHONPATH, one-shot
    /// and served alike, keeping a PYTHONPATH the node's own env gives.
    @Test func pythonNodesImportCairnWithNothingInstalled() async throws {
        let cluster = try await TestCluster.start(workers: 1, workerEnvironment: ["PYTHONPATH": ""])
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "lib", """
            name: lib
            state:
              where: { reducer: append }
            nodes:
              once: { run: exec, command: ["python3", "node.py"], env: { PYTHONPATH: /opt/mine } }
              served: { run: exec, command: ["python3", "node.py"], serve: true }
            edges:
              - { from: START, to: once }
              - { from: once, to: served }
              - { from: served, to: END }
            """)
        try """
            import os, sys, cairn

            @cairn.node
            def where(state, input, ctx):
                return {"where": [cairn.__file__ + "|" + os.environ.get("PYTHONPATH", "")]}

            cairn.run()
            """.write(toFile: (graph as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        let status = try await cluster.waitForRun(try await cluster.submit(graph))
        #expect(status["status"] as? String == "completed", "\(status)")
        let seen = status[path: "output.where"] as? [String] ?? []
        #expect(seen.count == 2, "\(status)")
        let cache = cluster.directory + "/bundles-w1/python-"
        for line in seen {
            #expect(line.hasPrefix(cache) && line.contains("/cairn/__init__.py|" + cache), "the worker's copy, first on the path: \(line)")
        }
        #expect(seen.first?.hasSuffix(":/opt/mine") == true, "the node's own PYTHONPATH is kept after it: \(seen)")
    }

    /// `cairn watch --json | jq`: each event reaches the pipe as it happens, not when 4 KiB of
    /// them have piled up or the run ends.
    @Test func watchIntoAPipeDeliversEachEventAsItHappens() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "slow", chainGraph(name: "slow", nodes: 3, sleep: 1_500))
        let runID = try await cluster.submit(graph)
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: TestCluster.binDirectory + "/cairn")
        watch.arguments = ["watch", runID, "--json", "--coordinator", cluster.address]
        let out = Pipe()
        watch.standardOutput = out
        watch.standardError = FileHandle.nullDevice
        try watch.run()
        defer { if watch.isRunning { watch.terminate() } }
        let started = Date()
        let first = try await TestCluster.readLine(out.fileHandleForReading, timeout: 10, what: "the first line of cairn watch --json")
        let waited = Date().timeIntervalSince(started)
        #expect(first.contains("\"kind\"") && first.contains(runID), "a JSON event: \(first)")
        #expect(waited < 3, "the first event arrived \(waited) s after the watch started, while the 4.5 s run went on")
        let status = try await cluster.cairn(["status", runID, "--json"]).object["status"] as? String
        #expect(status == "running", "read while the run was still running: \(status ?? "?")")
    }

    @Test func manyRunsAtOnceAllFinishAndShareTheWorkers() async throws {
        let cluster = try await TestCluster.start(workers: 2, slots: 2)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "small", chainGraph(name: "small", nodes: 3, sleep: 20))
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<20 { group.addTask { try await cluster.submit(graph, runID: "many-\(i)") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(ids.count == 20)
        for id in ids {
            let s = try await cluster.waitForRun(id)
            #expect(s["status"] as? String == "completed")
            #expect(s[path: "output.log"] as? [String] == ["n1", "n2", "n3"])
        }
        let stats = try await cluster.cairn(["stats", "--json"]).object
        #expect(stats[path: "runs_by_status.completed"] as? Int == 20)
        #expect(stats["tasks_completed"] as? Int == 60)
        // Group commit: far fewer transactions than rows written.
        let tx = stats["store_transactions"] as? Int ?? 0, rows = stats["store_rows"] as? Int ?? 0
        #expect(tx < rows)
    }

    @Test func sigtermDrainsAWorkerWhoseRunningTaskStillFinishes() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let worker = cluster.startWorker(name: "drainer", slots: 1)
        try await cluster.waitForWorkers(1)
        let graph = try writeGraph(cluster, "drain", chainGraph(name: "drain", nodes: 2, sleep: 1500))
        let runID = try await cluster.submit(graph)
        try await cluster.waitUntil("the drainer running a task") {
            let workers = try await cluster.cairn(["workers", "--json"]).json as? [[String: Any]] ?? []
            return workers.contains { $0["name"] as? String == "drainer" && ($0["running"] as? Int ?? 0) >= 1 }
        }
        kill(worker.processIdentifier, SIGTERM)
        // The running task finishes on the draining worker; no new task goes to it.
        let deadline = Date().addingTimeInterval(10)
        while worker.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(!worker.isRunning)
        #expect(worker.terminationStatus == 0)
        let mid = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(mid["step"] as? Int == 1, "the task that was running when SIGTERM came was completed")
        cluster.startWorker(name: "fresh", slots: 1)
        let done = try await cluster.waitForRun(runID, timeout: 30)
        #expect(done["status"] as? String == "completed")
        #expect(done[path: "output.log"] as? [String] == ["n1", "n2"])
    }

    @Test func manySubmitsPipelinedOnOneConnectionAreAnsweredByID() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "burst", chainGraph(name: "burst", nodes: 2, sleep: 1))
        let r = try await cluster.cairn(["submit", graph, "--count", "30", "--run-id", "burst", "--wait", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let runs = (r.json as? [[String: Any]]) ?? []
        #expect(runs.count == 30)
        #expect(Set(runs.compactMap { $0["run_id"] as? String }) == Set((0..<30).map { "burst-\($0)" }))
        #expect(runs.allSatisfy { $0["status"] as? String == "completed" })
        // Taken ids are refused one by one, each error matched to its own request.
        let again = try await cluster.cairn(["submit", graph, "--count", "3", "--run-id", "burst"])
        #expect(again.status == 1)
        #expect(again.stderr.components(separatedBy: "already taken").count - 1 == 3)
    }
}
