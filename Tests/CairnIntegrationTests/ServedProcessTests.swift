import CairnTestSupport
import Foundation
import Testing

/// Long-lived node programs (`serve:`), with the Python library: one process serves many tasks,
/// crashes and timeouts cost one attempt, recycling, stderr per task, progress and interrupts,
/// no orphans when the worker is killed, pools stopped when it drains.
@Suite(.serialized) struct ServedProcessTests {
    static let fast = ["--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s"]

    /// One program for every node; what it does comes from the node's `with:` parameters.
    static let program = """
        import os, sys, time, cairn

        @cairn.node
        def work(state, input, ctx):
            mode = ctx.params.get("mode", "")
            sys.stderr.write(f"stderr of {ctx.node} attempt {ctx.attempt}\\n")
            sys.stderr.flush()
            if mode == "crash" or (mode == "crash_once" and ctx.attempt == 1):
                os._exit(9)                       # dies mid-task, no answer
            if mode == "hang_once" and ctx.attempt == 1:
                time.sleep(60)
            if mode == "count":                   # reports progress; the first attempt dies at 3
                start = (ctx.last_progress or {}).get("done", 0)
                for i in range(start, 6):
                    time.sleep(0.3)
                    ctx.progress({"done": i + 1})
                    if ctx.attempt == 1 and i + 1 == 3:
                        os._exit(9)
                return {"log": [f"counted from {start}"], "pids": [os.getpid()]}
            if mode == "ask":
                answer = ctx.interrupt({"question": f"{ctx.node}?"})
                return {"log": [f"{ctx.node}:{answer}"], "pids": [os.getpid()]}
            if mode == "keys":                    # what of the state it was sent
                return {"log": [",".join(sorted(state))]}
            if mode == "hog":                     # leaks 80 MB, as a model cache might
                globals().setdefault("leak", []).append(bytearray(80 * 1024 * 1024))
            if mode == "sleep":
                time.sleep(float(ctx.params.get("seconds", 1)))
            return {"log": [ctx.node], "pids": [os.getpid()]}

        cairn.run()
        """

    func graph(_ cluster: TestCluster, _ name: String, serve: String, nodes: [(String, String)], extra: String = "") throws -> String {
        var text = "name: \(name)\nstate:\n  log: { reducer: append }\n  pids: { reducer: append }\nnodes:\n"
        for (n, with) in nodes {
            text += "  \(n): { run: exec, command: [\"python3\", \"node.py\"], serve: \(serve), with: { \(with) }\(extra) }\n"
        }
        text += "edges:\n  - { from: START, to: \(nodes[0].0) }\n"
        for i in 0..<(nodes.count - 1) { text += "  - { from: \(nodes[i].0), to: \(nodes[i + 1].0) }\n" }
        text += "  - { from: \(nodes[nodes.count - 1].0), to: END }\n"
        let path = try writeGraph(cluster, name, text)
        try Self.program.write(toFile: (path as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        return path
    }

    func pids(_ status: [String: Any]) -> [Int] { status[path: "output.pids"] as? [Int] ?? [] }

    @Test func oneProcessServesManyTasksAndIsRecycledAfterMaxTasks() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let six = (1...6).map { ("n\($0)", "mode: plain") }
        let servedGraph = try graph(cluster, "served", serve: "true", nodes: six)
        let served = try await cluster.waitForRun(try await cluster.submit(servedGraph))
        #expect(served["status"] as? String == "completed", "\(served)")
        #expect(pids(served).count == 6 && Set(pids(served)).count == 1, "one process served every task: \(pids(served))")

        let again = try await cluster.waitForRun(try await cluster.submit(servedGraph))
        #expect(Set(pids(again)) == Set(pids(served)), "the next run of the graph finds the same process waiting")
        // Another bundle is another program, even with the same command.
        let other = try await cluster.waitForRun(try await cluster.submit(try graph(cluster, "other", serve: "true", nodes: six)))
        #expect(Set(pids(other)).count == 1 && Set(pids(other)) != Set(pids(served)))

        let recycled = try await cluster.waitForRun(try await cluster.submit(
            try graph(cluster, "recycled", serve: "{ max_tasks: 3 }", nodes: six)))
        let p = pids(recycled)
        #expect(p.count == 6 && Set(p[0..<3]).count == 1 && Set(p[3..<6]).count == 1 && p[0] != p[3],
                "recycled after 3 tasks: \(p)")

        let oneShot = try await cluster.waitForRun(try await cluster.submit(try graph(cluster, "oneshot", serve: "false", nodes: six)))
        #expect(Set(pids(oneShot)).count == 6, "one-shot: a process per task: \(pids(oneShot))")
    }

    @Test func aNodeIsSentOnlyTheChannelsItReads() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let all = try await cluster.waitForRun(try await cluster.submit(try graph(cluster, "all", serve: "true", nodes: [("k", "mode: keys")])))
        #expect(all[path: "output.log"] as? [String] == ["log,pids"], "\(all)")
        let some = try await cluster.waitForRun(try await cluster.submit(
            try graph(cluster, "some", serve: "true", nodes: [("k", "mode: keys")], extra: ", reads: [pids]")))
        #expect(some[path: "output.log"] as? [String] == ["pids"], "\(some)")
        let none = try await cluster.waitForRun(try await cluster.submit(
            try graph(cluster, "none", serve: "false", nodes: [("k", "mode: keys")], extra: ", reads: []")))
        #expect(none[path: "output.log"] as? [String] == [""], "\(none)")
    }

    @Test func aProgramThatPrintsAnEndlessLineIsKilledNotBuffered() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 2)
        defer { cluster.stop() }
        for serve in ["true", "false"] {
            let path = try writeGraph(cluster, "spew-\(serve)", """
                name: spew
                state:
                  out: {}
                nodes:
                  spew: { run: exec, command: ["python3", "spew.py"], serve: \(serve) }
                edges:
                  - { from: START, to: spew }
                  - { from: spew, to: END }
                """)
            try """
                import os, time
                os.write(1, b"x" * (17 << 20))   # 17 MiB and never a newline
                time.sleep(60)
                """.write(toFile: (path as NSString).deletingLastPathComponent + "/spew.py", atomically: true, encoding: .utf8)
            let started = Date()
            let status = try await cluster.waitForRun(try await cluster.submit(path), timeout: 30)
            #expect(status["status"] as? String == "failed")
            #expect((status["error"] as? String ?? "").contains("a line of more than 16 MiB on stdout"), "\(status)")
            #expect(Date().timeIntervalSince(started) < 20, "killed, not waited out")
        }
        // The worker is fine and serves the next run.
        let ok = try await cluster.waitForRun(try await cluster.submit(try graph(cluster, "after", serve: "true", nodes: [("a", "mode: plain")])))
        #expect(ok["status"] as? String == "completed")
    }

    @Test func idleProcessesAreCappedAtTheWorkersSlots() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let a = try graph(cluster, "a", serve: "true", nodes: [("a", "mode: plain")])
        let b = try graph(cluster, "b", serve: "true", nodes: [("b", "mode: plain")])
        let first = pids(try await cluster.waitForRun(try await cluster.submit(a)))
        let other = pids(try await cluster.waitForRun(try await cluster.submit(b)))
        try await cluster.waitUntil("one idle process is left", timeout: 10) { nodeProcesses(cluster).count == 1 }
        #expect(nodeProcesses(cluster) == other.map { Int32($0) }, "b's process waits; a's was retired")
        let again = pids(try await cluster.waitForRun(try await cluster.submit(a)))
        #expect(again != first && !again.isEmpty, "a got a fresh process: \(first) then \(again)")
    }

    @Test func aProcessOverItsMemoryLimitIsRecycled() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let hogs = try await cluster.waitForRun(try await cluster.submit(
            try graph(cluster, "hogs", serve: "{ max_memory: 60MB }", nodes: (1...3).map { ("h\($0)", "mode: hog") })))
        #expect(hogs["status"] as? String == "completed", "\(hogs)")
        #expect(Set(pids(hogs)).count == 3, "each task left it over 60 MB: recycled every time: \(pids(hogs))")
        let lean = try await cluster.waitForRun(try await cluster.submit(
            try graph(cluster, "lean", serve: "{ max_memory: 60MB }", nodes: (1...3).map { ("l\($0)", "mode: plain") })))
        #expect(Set(pids(lean)).count == 1, "under the limit it serves on: \(pids(lean))")
    }

    @Test func aCrashMidTaskFailsThatAttemptOnlyAndTheRetryRunsOnAFreshProcess() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let path = try graph(cluster, "crash", serve: "true",
                             nodes: [("a", "mode: plain"), ("b", "mode: crash_once"), ("c", "mode: plain")],
                             extra: ", retry: { max_attempts: 2, initial_interval: 50ms }")
        let runID = try await cluster.submit(path)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed", "\(status)")
        #expect(status[path: "output.log"] as? [String] == ["a", "b", "c"])
        let p = pids(status)
        #expect(p.count == 3 && p[1] != p[0] && p[2] == p[1], "b's retry ran on a fresh process, which then served c: \(p)")
        let history = try await cluster.cairn(["history", runID, "--json"])
        #expect(history.stdout.contains("exited with status 9") || history.stdout.contains("killed by signal"), "\(history.stdout)")
    }

    @Test func aTimeoutKillsTheProcessAndAFreshOneServesTheRetry() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let path = try graph(cluster, "hang", serve: "true", nodes: [("a", "mode: plain"), ("b", "mode: hang_once")],
                             extra: ", timeout: 1s, retry: { max_attempts: 2, initial_interval: 50ms }")
        let started = Date()
        let status = try await cluster.waitForRun(try await cluster.submit(path), timeout: 30)
        #expect(status["status"] as? String == "completed", "\(status)")
        #expect(Date().timeIntervalSince(started) < 15)
        let p = pids(status)
        #expect(p.count == 2 && p[0] != p[1], "the hung process was killed and replaced: \(p)")
        #expect(!processAlive(Int32(p[0])), "the timed-out process is gone")
    }

    @Test func aFailureCarriesItsOwnTasksStderrNotItsNeighbours() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1)
        defer { cluster.stop() }
        let path = try graph(cluster, "stderr", serve: "true", nodes: [("a", "mode: plain"), ("b", "mode: crash")])
        let status = try await cluster.waitForRun(try await cluster.submit(path))
        #expect(status["status"] as? String == "failed")
        let error = status["error"] as? String ?? ""
        #expect(error.contains("stderr of b attempt 1"), "\(error)")
        #expect(!error.contains("stderr of a"), "a's stderr is not b's failure: \(error)")
    }

    @Test func progressAndInterruptsWorkFromAServedProcess() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 1, coordinatorArgs: Self.fast)
        defer { cluster.stop() }
        let counting = try graph(cluster, "count", serve: "true", nodes: [("count", "mode: count")],
                                 extra: ", retry: { max_attempts: 2, initial_interval: 50ms }")
        let counted = try await cluster.waitForRun(try await cluster.submit(counting), timeout: 30)
        #expect(counted["status"] as? String == "completed", "\(counted)")
        let log = (counted[path: "output.log"] as? [String])?.first ?? ""
        #expect(log.hasPrefix("counted from ") && log != "counted from 0", "the retry continued from the progress the crashed process reported: \(log)")

        let asking = try graph(cluster, "ask", serve: "true", nodes: [("ask", "mode: ask")])
        let r = try await cluster.cairn(["submit", asking, "--wait", "--run-id", "served-ask"])
        #expect(r.status == 4, "paused: \(r.stdout)")
        let resumed = try await cluster.cairn(["resume", "served-ask", "--value", #""yes""#, "--wait", "--json"])
        #expect(resumed.status == 0, "\(resumed.stdout)")
        let status = try await cluster.cairn(["status", "served-ask", "--json"]).object
        #expect(status[path: "output.log"] as? [String] == ["ask:yes"])
    }

    @Test func killingTheWorkerLeavesNoNodeProcessBehind() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let worker = cluster.startWorker(name: "doomed", slots: 2)
        try await cluster.waitForWorkers(1)
        // A served process that finished its task (idle), then one mid-task, and a one-shot one mid-task.
        let idle = try graph(cluster, "idle", serve: "true", nodes: [("a", "mode: plain")])
        _ = try await cluster.waitForRun(try await cluster.submit(idle))
        let busy = try graph(cluster, "busy", serve: "true", nodes: [("b", "mode: sleep, seconds: 60")])
        _ = try await cluster.submit(busy)
        let oneShot = try graph(cluster, "oneshot", serve: "false", nodes: [("c", "mode: sleep, seconds: 60")])
        _ = try await cluster.submit(oneShot)
        try await cluster.waitUntil("three node processes run", timeout: 20) { nodeProcesses(cluster).count == 3 }
        kill(worker.processIdentifier, SIGKILL)
        worker.waitUntilExit()
        try await cluster.waitUntil("the node processes are gone", timeout: 5) { nodeProcesses(cluster).isEmpty }
    }

    @Test func aDrainedWorkerFinishesItsTaskThenStopsItsPrograms() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let worker = cluster.startWorker(name: "drained", slots: 2)
        try await cluster.waitForWorkers(1)
        let idle = try graph(cluster, "idle", serve: "true", nodes: [("a", "mode: plain")])
        _ = try await cluster.waitForRun(try await cluster.submit(idle))
        let busy = try graph(cluster, "busy", serve: "true", nodes: [("b", "mode: sleep, seconds: 1.5")])
        let runID = try await cluster.submit(busy)
        try await cluster.waitUntil("two served processes run", timeout: 20) { nodeProcesses(cluster).count == 2 }
        kill(worker.processIdentifier, SIGTERM)
        let status = try await cluster.waitForRun(runID, timeout: 20)
        #expect(status["status"] as? String == "completed", "the running task finished: \(status)")
        worker.waitUntilExit()
        #expect(worker.terminationStatus == 0)
        #expect(nodeProcesses(cluster).isEmpty, "the pools were stopped before the worker exited")
    }
}

/// Node programs of this cluster still alive (not zombies), from /proc.
func nodeProcesses(_ cluster: TestCluster) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let cmd = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")),
              String(decoding: cmd, as: UTF8.self).contains("node.py") else { return false }
        guard let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd"),
              cwd.contains(cluster.directory.split(separator: "/").last.map(String.init) ?? "//") else { return false }
        return processAlive(pid)
    }
}

func processAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let state = stat.split(separator: ")").last?.split(separator: " ").first else { return false }
    return state != "Z"
}
