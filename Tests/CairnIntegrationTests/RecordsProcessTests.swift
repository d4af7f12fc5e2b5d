import CairnTestSupport
import Foundation
import Testing

/// The operator's seven questions, answered on a store holding runs of several graphs (some
/// failed, some retried, one waiting for a person) by Python nodes that log API calls and
/// assets: through `cairn` (JSON) and through plain `sqlite3` (or `psql`) on the store, with the
/// README's SQL.
@Suite(.serialized) struct RecordsProcessTests {
    static let program = """
        import os, sys, tempfile, cairn

        @cairn.node
        def work(state, input, ctx):
            mode = ctx.params.get("mode")
            if mode == "gen":
                ctx.record_api_call("openai", model="gpt-x", operation="chat", tokens_in=100, tokens_out=20, cost=0.002, latency_ms=150)
                ctx.record_api_call("anthropic", model="claude-y", operation="chat", tokens_in=50, tokens_out=10, cost=0.001, latency_ms=90)
                path = os.path.join(tempfile.gettempdir(), f"cairn-asset-{ctx.run_id}.txt")
                with open(path, "w") as f:
                    f.write("clip for " + ctx.run_id)
                ctx.add_asset("file://" + path, name="clip", kind="text", path=path, meta={"run": ctx.run_id})
                ctx.add_metrics(frames=24)
                return {"log": ["gen"]}
            if mode == "ask":
                return {"log": ["answer:" + str(ctx.interrupt({"question": "ok?"}))]}
            if mode == "fail" or (mode == "fail_once" and ctx.attempt == 1):
                ctx.record_api_call("openai", model="gpt-x", operation="chat", cost=0.0005, status="500")
                sys.stderr.write(f"upstream said no (attempt {ctx.attempt})\\n")
                raise ConnectionError("upstream 500")
            return {"log": [mode]}

        cairn.run()
        """

    func graph(_ cluster: TestCluster, _ name: String, _ nodes: [(String, String)]) throws -> String {
        var text = "name: \(name)\nstate:\n  log: { reducer: append }\nnodes:\n"
        for (n, mode) in nodes {
            text += "  \(n): { run: exec, command: [\"python3\", \"node.py\"], serve: true, with: { mode: \(mode) }, "
                + "retry: { max_attempts: 3, initial_interval: 10ms } }\n"
        }
        text += "edges:\n  - { from: START, to: \(nodes[0].0) }\n"
        for i in 0..<(nodes.count - 1) { text += "  - { from: \(nodes[i].0), to: \(nodes[i + 1].0) }\n" }
        text += "  - { from: \(nodes[nodes.count - 1].0), to: END }\n"
        let path = try writeGraph(cluster, name, text)
        try Self.program.write(toFile: (path as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        return path
    }

    func rows(_ r: TestCluster.CommandResult) -> [[String: Any]] { r.json as? [[String: Any]] ?? [] }

    /// "24 hours ago" in seconds since 1970, in the store's dialect: the one place the README's
    /// queries differ between SQLite and PostgreSQL.
    func dayAgo(_ store: TestStore) -> String {
        store == .postgres ? "extract(epoch FROM now() - interval '24 hours')" : "strftime('%s', 'now', '-24 hours')"
    }

    @Test(arguments: TestStore.available)
    func theSevenQuestionsAnswerTheSameThroughTheCLIAndSQL(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 2, slots: 2, store: store)
        defer { cluster.stop() }
        let media = try graph(cluster, "media", [("gen", "gen")])
        let review = try graph(cluster, "review", [("gen", "gen"), ("ask", "ask")])
        let flaky = try graph(cluster, "flaky", [("prep", "plain"), ("fetch", "fail")])
        let wobbly = try graph(cluster, "wobbly", [("fetch", "fail_once")])
        let m1 = try await cluster.submit(media), m2 = try await cluster.submit(media)
        let asking = try await cluster.submit(review)
        let failed = try await cluster.submit(flaky)
        let retried = try await cluster.submit(wobbly)
        for (id, want) in [(m1, "completed"), (m2, "completed"), (asking, "paused"), (failed, "failed"), (retried, "completed")] {
            let s = try await cluster.waitForRun(id)
            #expect(s["status"] as? String == want, "\(id): \(s)")
        }

        // 1. Failed runs: the failing node, its error, the attempts.
        let failures = rows(try await cluster.cairn(["failures", "--since", "1h", "--json"]))
        #expect(failures.count == 1, "\(failures)")
        #expect(failures.first?["run_id"] as? String == failed && failures.first?["node"] as? String == "fetch")
        #expect(failures.first?["attempts"] as? Int == 3 && failures.first?["error_kind"] as? String == "ConnectionError")
        #expect((failures.first?["error"] as? String ?? "").contains("upstream 500"), "\(failures)")
        #expect(rows(try await cluster.cairn(["failures", "--graph", "media", "--json"])).isEmpty)
        #expect(try await cluster.sql("""
            SELECT run_id, failing_node, attempts FROM failed_runs
            WHERE finished_at >= \(dayAgo(store)) ORDER BY finished_at DESC
            """) == "\(failed)|fetch|3")

        // 2. Slowest nodes: p50/p95/max per graph.
        let stats = try await cluster.cairn(["stats", "--by", "node", "--since", "1h", "--json"]).object
        let durations = stats["durations"] as? [[String: Any]] ?? []
        let gen = durations.first { $0["graph_name"] as? String == "media" && $0["node"] as? String == "gen" }
        #expect(gen?["attempts"] as? Int == 2, "\(durations)")
        if let p50 = gen?["p50_ms"] as? Double, let p95 = gen?["p95_ms"] as? Double, let max = gen?["max_ms"] as? Double {
            #expect(p50 > 0 && p50 <= p95 && p95 <= max, "\(String(describing: gen))")
        } else { Issue.record("no durations for media/gen: \(durations)") }
        #expect(!durations.contains { $0["node"] as? String == "fetch" && $0["graph_name"] as? String == "flaky" },
                "a node that never completed has no duration row")
        let sqlDurations = try await cluster.sql("""
            WITH d AS (
                SELECT graph_name, node, duration_ms,
                       ROW_NUMBER() OVER (PARTITION BY graph_name, node ORDER BY duration_ms) AS i,
                       COUNT(*) OVER (PARTITION BY graph_name, node) AS n
                FROM attempt_details WHERE status = 'completed' AND started_at >= \(dayAgo(store)))
            SELECT graph_name, node, MAX(n), MIN(CASE WHEN i >= 0.50 * n THEN duration_ms END), MIN(CASE WHEN i >= 0.95 * n THEN duration_ms END),
                   MAX(duration_ms)
            FROM d WHERE graph_name = 'media' GROUP BY graph_name, node
            """)
        #expect(sqlDurations.hasPrefix("media|gen|2|"), "\(sqlDurations)")

        // 3. Cost, API calls and tokens: per node, per provider/model.
        let cost = stats["cost"] as? [[String: Any]] ?? []
        let fetch = cost.first { $0["graph_name"] as? String == "flaky" && $0["node"] as? String == "fetch" }
        #expect(fetch?["attempts"] as? Int == 3 && fetch?["api_calls"] as? Int == 3, "failed attempts are paid for: \(cost)")
        #expect(abs((fetch?["cost"] as? Double ?? 0) - 0.0015) < 1e-9, "\(cost)")
        let mediaGen = cost.first { $0["graph_name"] as? String == "media" && $0["node"] as? String == "gen" }
        #expect(mediaGen?["tokens_in"] as? Int == 300 && mediaGen?["tokens_out"] as? Int == 60, "\(cost)")
        let models = (try await cluster.cairn(["stats", "--by", "model", "--json"]).object["cost"] as? [[String: Any]]) ?? []
        let gptx = models.first { $0["model"] as? String == "gpt-x" }, claude = models.first { $0["model"] as? String == "claude-y" }
        // gpt-x: one per gen (media ×2, review ×1) and one per failed fetch attempt (3 + 1).
        #expect(gptx?["calls"] as? Int == 7 && gptx?["failed_calls"] as? Int == 4 && claude?["calls"] as? Int == 3, "\(models)")
        #expect(try await cluster.sql("""
            SELECT provider, model, COUNT(*), SUM(tokens_in), round(SUM(cost), 6) FROM api_call_details
            WHERE model = 'claude-y' GROUP BY provider, model
            """) == "anthropic|claude-y|3|150|0.003")
        let perRun = try await cluster.sql("SELECT cost, api_calls, tokens_in, tokens_out FROM runs WHERE run_id = '\(m1)'")
        #expect(perRun == "0.003|2|150|30", "\(perRun)")
        let status = try await cluster.cairn(["status", m1, "--json"]).object
        #expect(status["tokens_in"] as? Int == 150 && status["tokens_out"] as? Int == 30 && status["api_calls"] as? Int == 2, "\(status)")

        // 4. The assets a run produced, and who produced a URI.
        let assets = rows(try await cluster.cairn(["assets", m1, "--json"]))
        #expect(assets.count == 1 && assets.first?["name"] as? String == "clip" && assets.first?["node"] as? String == "gen", "\(assets)")
        let content = "clip for \(m1)"
        #expect(assets.first?["bytes"] as? Int == content.utf8.count)
        #expect((assets.first?["sha256"] as? String)?.count == 64)
        let uri = assets.first?["uri"] as? String ?? ""
        let owner = rows(try await cluster.cairn(["assets", "--uri", uri, "--json"]))
        #expect(owner.count == 1 && owner.first?["run_id"] as? String == m1, "\(owner)")
        #expect(try await cluster.sql("SELECT run_id, node FROM assets WHERE uri = '\(uri)'") == "\(m1)|gen")
        #expect(rows(try await cluster.cairn(["assets", "--json"])).count == 3, "one clip per gen: media ×2, review ×1")

        // 5. Every attempt of one task: worker, timings, outcome, error.
        let attempts = rows(try await cluster.cairn(["tasks", retried, "--node", "fetch", "--json"]))
        #expect(attempts.map { $0["status"] as? String } == ["failed", "completed"], "\(attempts)")
        #expect(attempts.map { $0["attempt"] as? Int } == [1, 2] && Set(attempts.compactMap { $0["task_id"] as? String }).count == 1)
        for a in attempts {
            #expect(!(a["worker"] as? String ?? "").isEmpty && (a["duration_ms"] as? Double ?? 0) > 0, "\(a)")
            #expect((a["queue_ms"] as? Double).map { $0 >= 0 } == true, "queue wait kept: \(a)")
        }
        #expect((attempts.first?["error"] as? String ?? "").contains("upstream 500"))
        let table = try await cluster.cairn(["tasks", retried])
        #expect(table.status == 0 && table.stdout.contains("STATUS") && table.stdout.contains("failed"), "\(table.stdout)")
        let missing = try await cluster.cairn(["tasks", "r-nope"])
        #expect(missing.status != 0 && missing.stderr.contains("no run with id r-nope"), "\(missing.stderr)")

        // 6. Runs waiting for a person, how long, resume counts.
        let waiting = rows(try await cluster.cairn(["waiting", "--json"]))
        #expect(waiting.count == 1 && waiting.first?["run_id"] as? String == asking && waiting.first?["resume_count"] as? Int == 0, "\(waiting)")
        #expect((waiting.first?["waited_s"] as? Double ?? -1) >= 0 && (waiting.first?["interrupt"] as? String ?? "").contains("ok?"))
        #expect(try await cluster.sql("SELECT run_id, resume_count FROM waiting_runs") == "\(asking)|0")
        let resumed = try await cluster.cairn(["resume", asking, "--value", #""yes""#, "--wait"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(rows(try await cluster.cairn(["waiting", "--json"])).isEmpty)
        #expect(try await cluster.sql("SELECT resume_count FROM runs WHERE run_id = '\(asking)'") == "1")

        // 7. Per worker: tasks done, failures, lost.
        let workers = rows(try await cluster.cairn(["workers", "--history", "--json"]))
        let done = workers.reduce(0) { $0 + ($1["done"] as? Int ?? 0) }, failedAttempts = workers.reduce(0) { $0 + ($1["failed"] as? Int ?? 0) }
        #expect(done == Int(try await cluster.sql("SELECT COUNT(*) FROM attempts WHERE status = 'completed'")) && done >= 7, "\(workers)")
        #expect(failedAttempts == 4 && workers.allSatisfy { ($0["lost"] as? Int) == 0 }, "\(workers)")
        #expect(try await cluster.sql("SELECT SUM(done), SUM(failed) FROM worker_tasks") == "\(done)|4")

        let bad = try await cluster.cairn(["stats", "--by", "colour"])
        #expect(bad.status != 0 && bad.stderr.contains("unknown grouping 'colour'"), "\(bad.stderr)")
    }
}
