import CairnTestSupport
import Foundation
import Testing

/// The workers' state cache with real processes: a served Python node that reads its whole,
/// growing history at every step (as an agent reads its messages) must get it exactly right
/// with the cache on, off, too small for the runs at hand, and across a worker killed mid-run;
/// with the cache on, only what changed travels (`cairn stats`).
@Suite(.serialized) struct StateCacheProcessTests {
    /// Each message is "INDEX:DIGEST:PADDING", the digest over every message before it: a history
    /// with an item lost, doubled or out of order fails the node (and changes the final state).
    static let program = """
        import hashlib, time, cairn
        from cairn import _runtime

        @cairn.node
        def step(state, input, ctx):
            messages = state.get("messages", [])
            for i, m in enumerate(messages):
                if not m.startswith(f"{i}:"):
                    raise cairn.Fatal(f"message {i} is {m[:20]!r}: the history is wrong")
            digest = hashlib.sha256("\\n".join(messages).encode()).hexdigest()[:16]
            time.sleep(float(ctx.params.get("pause", 0)))
            n = len(messages)
            kept = bool(_runtime._kept.runs.get(ctx.run_id))   # the process was handed what changed
            return cairn.Result(writes={"messages": [f"{n}:{digest}:" + "x" * 300], "turns": n + 1, "kept": [kept]},
                                goto="END" if n + 1 >= 40 else ("tool" if ctx.node == "agent" else "agent"))

        cairn.run()
        """

    func graph(_ cluster: TestCluster, pause: Double = 0) throws -> String {
        let node = "{ run: exec, command: [\"python3\", \"node.py\"], serve: true, with: { pause: \(pause) } }"
        let path = try writeGraph(cluster, "loop", """
            name: agent-loop
            state:
              messages: { reducer: append }
              turns: {}
              kept: { reducer: append }
            nodes:
              agent: \(node)
              tool: \(node)
            edges:
              - { from: START, to: agent }
              - { from: agent, to: tool }
              - { from: tool, to: agent }
            limits: { max_steps: 100 }
            """)
        try Self.program.write(toFile: (path as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        return path
    }

    func stats(_ cluster: TestCluster) async throws -> (sent: Int, kept: Int) {
        let s = try await cluster.cairn(["stats", "--json"]).object
        return (s["state_bytes_sent"] as? Int ?? -1, s["state_bytes_kept"] as? Int ?? -1)
    }

    func output(_ run: [String: Any]) -> [String] { run[path: "output.messages"] as? [String] ?? [] }
    /// How many tasks found their process keeping the run's state.
    func kept(_ run: [String: Any]) -> Int { (run[path: "output.kept"] as? [Bool] ?? []).filter { $0 }.count }

    @Test func aLoopReadingItsWholeHistoryGetsItExactlyWithTheCacheOnOffOrTooSmall() async throws {
        let cluster = try await TestCluster.start(workers: 0)
        defer { cluster.stop() }
        let g = try graph(cluster)

        // Off: every task gets the whole state.
        let off = ["off1", "off2"].map { cluster.startWorker(name: $0, slots: 2, extraArgs: ["--state-cache", "0"]) }
        try await cluster.waitForWorkers(2)
        let reference = try await cluster.waitForRun(try await cluster.submit(g))
        #expect(reference["status"] as? String == "completed", "\(reference)")
        let expected = output(reference)
        #expect(expected.count == 40)
        let afterOff = try await stats(cluster)
        #expect(afterOff.kept == 0 && afterOff.sent > 40 * 20 * 300, "\(afterOff)")
        #expect(kept(reference) == 0)
        for p in off { p.terminate(); p.waitUntilExit() }
        try await cluster.waitForWorkers(0)

        // On (the default): the same final state, and a small part of the bytes sent.
        _ = ["on1", "on2"].map { cluster.startWorker(name: $0, slots: 2) }
        try await cluster.waitForWorkers(2)
        let cached = try await cluster.waitForRun(try await cluster.submit(g))
        #expect(cached["status"] as? String == "completed", "\(cached)")
        #expect(output(cached) == expected)
        // Each served process was handed what changed since its last task of the run (two
        // workers, two processes each: the first task on each process goes whole).
        #expect(kept(cached) >= 30, "\(kept(cached)) of 40 tasks found their state kept")
        let afterOn = try await stats(cluster)
        let sentOn = afterOn.sent - afterOff.sent
        #expect(afterOn.kept > 40 * 10 * 300, "\(afterOn)")
        #expect(sentOn * 4 < afterOff.sent, "with the cache \(sentOn) bytes were sent, without \(afterOff.sent)")

        // Too small for five runs at once (each outgrows 4 KiB): evictions and whole values, same states.
        for p in ["on1", "on2"].compactMap({ cluster.worker(named: $0) }) { p.terminate(); p.waitUntilExit() }
        try await cluster.waitForWorkers(0)
        _ = ["tiny1", "tiny2"].map { cluster.startWorker(name: $0, slots: 3, extraArgs: ["--state-cache", "8KiB"]) }
        try await cluster.waitForWorkers(2)
        var ids: [String] = []
        for _ in 0..<5 { ids.append(try await cluster.submit(g)) }
        for id in ids {
            let r = try await cluster.waitForRun(id)
            #expect(r["status"] as? String == "completed", "\(r)")
            #expect(output(r) == expected, "run \(id)")
        }
    }

    @Test func aWorkerKilledMidRunTakesItsCacheWithItAndTheRunFinishesExactly() async throws {
        let cluster = try await TestCluster.start(workers: 0, coordinatorArgs: ["--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s"])
        defer { cluster.stop() }
        let reference = try await {
            let p = cluster.startWorker(name: "ref", slots: 1, extraArgs: ["--state-cache", "0"])
            try await cluster.waitForWorkers(1)
            defer { p.terminate(); p.waitUntilExit() }
            return try await cluster.waitForRun(try await cluster.submit(try graph(cluster)))
        }()
        let expected = output(reference)
        #expect(expected.count == 40)
        try await cluster.waitForWorkers(0)

        let a = cluster.startWorker(name: "a", slots: 1)
        try await cluster.waitForWorkers(1)
        let id = try await cluster.submit(try graph(cluster, pause: 0.05))
        _ = try await cluster.waitForStep(id, atLeast: 15)
        cluster.startWorker(name: "b", slots: 1)
        try await cluster.waitForWorkers(2)
        kill(a.processIdentifier, SIGKILL)
        // b takes over from whatever it holds (nothing at first); a started again starts empty.
        _ = try await cluster.waitForStep(id, atLeast: 25)
        cluster.startWorker(name: "a2", slots: 1)
        let r = try await cluster.waitForRun(id)
        #expect(r["status"] as? String == "completed", "\(r)")
        #expect(output(r) == expected)
    }
}
