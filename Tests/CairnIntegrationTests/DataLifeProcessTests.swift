import CairnClient
import CairnProtocol
import CairnTestSupport
import Foundation
import GRDB
import Testing

/// The life of stored data with real processes: a run exported from one coordinator and imported
/// into another reads the same checkpoint by checkpoint; verify finds a byte flipped in the SQLite
/// file; cleanup takes exactly the runs it should (pins, --keep-latest, forks), gives the space
/// back, and a coordinator killed in the middle of one leaves only whole runs. Where a test takes
/// `TestStore.available` it runs on PostgreSQL too (runs exported from SQLite import into it).
@Suite(.serialized) struct DataLifeProcessTests {
    static let program = """
        import sys, cairn

        @cairn.node
        def work(state, input, ctx):
            mode = ctx.params.get("mode")
            if mode == "gen":
                ctx.record_api_call("openai", model="gpt-x", operation="chat", tokens_in=10, tokens_out=2, cost=0.01, latency_ms=5)
                ctx.add_asset("s3://bucket/" + ctx.run_id + ".txt", name="clip", kind="text")
                return {"log": ["gen"], "note": state.get("topic", "none")}
            if mode == "ask":
                return {"log": ["answer:" + str(ctx.interrupt({"question": "ok?"}))]}
            if mode == "fail":
                sys.stderr.write(f"upstream said no (attempt {ctx.attempt})\\n")
                raise ConnectionError("upstream 500")
            if mode == "mark":
                return {"note": "MARKER-" + ctx.run_id}
            return {"log": [mode], "note": "done"}

        cairn.run()
        """

    func graph(_ cluster: TestCluster, _ name: String, _ modes: [String], retry: String = "", serve: Bool = true) throws -> String {
        var text = "name: \(name)\nstate:\n  log: { reducer: append }\n  note: {}\n  topic: {}\nnodes:\n"
        for (i, mode) in modes.enumerated() {
            text += "  n\(i): { run: exec, command: [\"python3\", \"node.py\"], serve: \(serve), with: { mode: \(mode) }\(retry) }\n"
        }
        text += "edges:\n  - { from: START, to: n0 }\n"
        for i in 0..<(modes.count - 1) { text += "  - { from: n\(i), to: n\(i + 1) }\n" }
        text += "  - { from: n\(modes.count - 1), to: END }\n"
        let path = try writeGraph(cluster, name, text)
        try Self.program.write(toFile: (path as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        return path
    }

    func checkpoints(_ cluster: TestCluster, _ run: String) async throws -> [[String: Any]] {
        try await cluster.cairn(["history", run, "--json"]).object["checkpoints"] as? [[String: Any]] ?? []
    }

    /// What a person reads about a run, as JSON with the parts that name the machine left out.
    func reading(_ cluster: TestCluster, _ run: String) async throws -> [String] {
        var out: [String] = []
        out.append(try await cluster.cairn(["history", run, "--json"]).stdout)
        for cp in try await checkpoints(cluster, run) where (cp["run_id"] as? String) == run {
            let s = try await cluster.cairn(["state", run, "--checkpoint", cp["checkpoint_id"] as? String ?? "", "--json"])
            #expect(s.status == 0, "\(s.stderr)")
            out.append(s.stdout)
        }
        out.append(try await cluster.cairn(["tasks", run, "--json"]).stdout)
        out.append(try await cluster.cairn(["assets", run, "--json"]).stdout)
        out.append(try await cluster.cairn(["debug", run, "--json"]).stdout)
        out.append(try await cluster.cairn(["debug", run, "--step", "1", "--json"]).stdout)
        return out
    }

    /// The source is always SQLite: on PostgreSQL this is the move of runs from a SQLite file.
    @Test(arguments: TestStore.available)
    func anExportedRunReadsTheSameOnAnotherCoordinatorAndAnImportTwiceIsANoOp(_ store: TestStore) async throws {
        let source = try await TestCluster.start(workers: 1, slots: 2)
        defer { source.stop() }
        let target = try await TestCluster.start(workers: 1, slots: 2, store: store)
        defer { target.stop() }
        let media = try graph(source, "media", ["gen", "plain"])
        let review = try graph(source, "review", ["gen", "ask", "plain"])
        let done = try await source.submit(media, input: #"{"topic": "tides"}"#)
        let asking = try await source.submit(review)
        #expect(try await source.waitForRun(done)["status"] as? String == "completed")
        #expect(try await source.waitForRun(asking)["status"] as? String == "paused")
        let from = try #require(try await checkpoints(source, done).last { $0["step"] as? Int == 1 }?["checkpoint_id"] as? String)
        let forkRun = try await source.cairn(["fork", done, "--checkpoint", from, "--run-id", "forked", "--json"])
        #expect(forkRun.status == 0, "\(forkRun.stderr)")
        #expect(try await source.waitForRun("forked")["status"] as? String == "completed")

        // The fork reads its parent's values in place: exporting it takes the parent along.
        let file = source.directory + "/runs.cairn"
        let exported = try await source.cairn(["export", "forked", asking, "-o", file, "--json"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let ids = (exported.object["runs"] as? [[String: Any]] ?? []).compactMap { $0["run_id"] as? String }
        #expect(ids == [done, "forked", asking], "parents first: \(ids)")
        #expect(try await source.cairn(["export", "nope", "-o", file + ".x"]).status != 0)

        let imported = try await target.cairn(["import", file, "--json"])
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect((imported.object["runs"] as? [[String: Any]] ?? []).allSatisfy { $0["already_present"] as? Bool == false })
        for run in [done, "forked", asking] {
            #expect(try await reading(target, run) == (try await reading(source, run)), "run \(run) reads the same after import")
        }
        let stats = ["stats", "--by", "model", "--json"]
        #expect(try await target.cairn(stats).stdout == (try await source.cairn(stats)).stdout)
        #expect(try await target.cairn(["verify", "--all"]).status == 0)
        let forkedHere = try await target.cairn(["fork", done, "--checkpoint", from, "--run-id", "forked-here", "--wait", "--json"])
        #expect(forkedHere.status == 0 && forkedHere.object["status"] as? String == "completed", "an imported run forks: \(forkedHere.stderr)")

        let again = try await target.cairn(["import", file, "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect((again.object["runs"] as? [[String: Any]] ?? []).allSatisfy { $0["already_present"] as? Bool == true }, "\(again.stdout)")

        // The imported paused run goes on here; after that the file's copy of it is other content.
        let resumed = try await target.cairn(["resume", asking, "--value", #""yes""#, "--wait", "--json"])
        #expect(resumed.status == 0 && resumed.object["status"] as? String == "completed", "\(resumed.stderr) \(resumed.stdout)")
        let conflict = try await target.cairn(["import", file])
        #expect(conflict.status != 0 && conflict.stderr.contains("already exists here with other content"), "\(conflict.stderr)")

        // A file cut short or altered is refused whole: nothing reaches an empty coordinator.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        var altered = bytes
        altered[altered.count / 2] ^= 0x01
        try altered.write(to: URL(fileURLWithPath: file + ".altered"))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: file + ".short"))
        let empty = try await TestCluster.start(workers: 0, store: store)
        defer { empty.stop() }
        for bad in [file + ".altered", file + ".short"] {
            let r = try await empty.cairn(["import", bad])
            #expect(r.status == 1 && r.stderr.contains("nothing was imported"), "\(r.stderr)")
        }
        let listed = try await empty.cairn(["list", "--json"])
        #expect((listed.json as? [Any])?.isEmpty == true, "nothing was written: \(listed.stdout)")
    }

    @Test func withTheHotTierEachCommandSeesAndDeletesRunsStillInRedis() async throws {
        let redis = try await RedisServer()
        defer { redis.stop() }
        // Flushed only when asked (a run's end, a read): steps wait in Redis until then.
        let cluster = try await TestCluster.start(workers: 1, slots: 2,
                                                  coordinatorArgs: ["--redis", redis.url, "--flush-interval", "1h", "--flush-batch", "1000000"])
        defer { cluster.stop() }
        let g = try graph(cluster, "hot", ["gen", "plain"])
        for i in 0..<3 {
            // `--wait` watches the run: no read of the store, so nothing asks for a flush.
            let r = try await cluster.cairn(["submit", g, "--run-id", "hot-\(i)", "--wait"])
            #expect(r.status == 0, "\(r.stderr)")
        }

        let verified = try await cluster.cairn(["verify", "--all", "--json"])
        #expect(verified.status == 0 && verified.object["checkpoints"] as? Int == 9, "\(verified.stdout)")
        let file = cluster.directory + "/hot.cairn"
        #expect(try await cluster.cairn(["export", "hot-0", "-o", file]).status == 0)
        let target = try await TestCluster.start(workers: 0)
        defer { target.stop() }
        #expect(try await target.cairn(["import", file]).status == 0)
        #expect(try await target.cairn(["history", "hot-0", "--json"]).stdout == (try await cluster.cairn(["history", "hot-0", "--json"])).stdout)

        let cleaned = try await cluster.cairn(["cleanup", "--older-than", "0s", "--json"])
        #expect((cleaned.object["deleted"] as? [Any])?.count == 3, "\(cleaned.stdout)")
        // A coordinator killed now replays what Redis still holds: nothing of the deleted runs.
        try await cluster.restartCoordinator(signal: SIGKILL, args: ["--redis", redis.url])
        #expect(try await cluster.sql("SELECT COUNT(*) FROM runs") == "0")
        #expect(try await cluster.sql("SELECT COUNT(*) FROM checkpoints") == "0")
        #expect(try await cluster.cairn(["verify", "--all"]).status == 0)
    }

    @Test func debugDumpsTheStepARunFailedInAndAnyStepAsked() async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 2)
        defer { cluster.stop() }
        // One-shot processes: each attempt's stderr is whole when its error is reported.
        let g = try graph(cluster, "flaky", ["plain", "fail"], retry: ", retry: { max_attempts: 3, initial_interval: 10ms }", serve: false)
        let run = try await cluster.submit(g, input: #"{"topic": "tides"}"#)
        #expect(try await cluster.waitForRun(run)["status"] as? String == "failed")

        let failed = try await cluster.cairn(["debug", run, "--json"]).object
        #expect(failed[path: "run.status"] as? String == "failed" && failed["step"] as? Int == 2, "the step it failed in: \(failed)")
        #expect(failed[path: "started_from.state.log"] as? [String] == ["plain"] && failed[path: "started_from.state.topic"] as? String == "tides")
        #expect(failed["produced"] is NSNull, "a failed step made no checkpoint")
        let tasks = failed["tasks"] as? [[String: Any]] ?? []
        #expect(tasks.count == 1 && tasks.first?["node"] as? String == "n1" && tasks.first?["kind"] as? String == "exec"
                && tasks.first?["reads"] as? String == "all", "\(tasks)")
        let attempts = tasks.first?["attempts"] as? [[String: Any]] ?? []
        #expect(attempts.map { $0["attempt"] as? Int } == [1, 2, 3] && attempts.allSatisfy { $0["status"] as? String == "failed" && $0["worker"] as? String == "w1" })
        for (i, a) in attempts.enumerated() {
            let error = a["error"] as? String ?? ""
            #expect(error.contains("upstream 500") && error.contains("upstream said no (attempt \(i + 1))"), "each attempt's own error and stderr tail: \(error)")
            #expect(a["error_kind"] as? String == "ConnectionError" && a["duration_ms"] is Double)
        }

        let first = try await cluster.cairn(["debug", run, "--step", "1", "--json"]).object
        #expect(first[path: "started_from.source"] as? String == "input" && first[path: "produced.updated.log"] as? [String] == ["plain"], "\(first)")
        #expect(((first["tasks"] as? [[String: Any]])?.first?["attempts"] as? [[String: Any]])?.count == 1)
        let text = try await cluster.cairn(["debug", run])
        #expect(text.status == 0 && text.stdout.contains("started from") && text.stdout.contains("upstream said no (attempt 3)"), "\(text.stdout)")
        let none = try await cluster.cairn(["debug", run, "--step", "9"])
        #expect(none.status == 1 && none.stderr.contains("has no step 9"), "\(none.stderr)")
    }

    @Test(arguments: TestStore.available)
    func verifyNamesAValueWhoseByteWasFlippedInTheStoreAndStateRefusesIt(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 1, slots: 2, store: store)
        defer { cluster.stop() }
        let g = try graph(cluster, "marked", ["mark", "plain"])
        let run = try await cluster.submit(g, runID: "flip-me")
        #expect(try await cluster.waitForRun(run)["status"] as? String == "completed")
        #expect(try await cluster.cairn(["verify", run]).status == 0)
        let marked = try #require(try await checkpoints(cluster, run).first { $0["step"] as? Int == 1 }?["checkpoint_id"] as? String)

        // SIGTERM: the coordinator checkpoints its log into the file, so the value is in it once.
        try await cluster.restartCoordinator(signal: SIGTERM) {
            guard store == .sqlite else { return }
            var data = try Data(contentsOf: URL(fileURLWithPath: cluster.databasePath))
            let marker = Data("MARKER-flip-me".utf8)
            let at = try #require(data.range(of: marker))
            #expect(data.range(of: marker, in: at.upperBound..<data.count) == nil, "the marker is stored once")
            data[at.lowerBound + 3] ^= 0x01
            try data.write(to: URL(fileURLWithPath: cluster.databasePath))
        }
        if store == .postgres {
            // The same flip behind the coordinator's back: the fourth byte of the stored value.
            let marker = "'\\x" + Data("MARKER-flip-me".utf8).map { String(format: "%02x", $0) }.joined() + "'::bytea"
            #expect(try await cluster.sql("SELECT count(*) FROM channel_values WHERE position(\(marker) IN data) > 0") == "1", "the marker is stored once")
            _ = try await cluster.sql("""
                UPDATE channel_values SET data = set_byte(data, position(\(marker) IN data) + 2, get_byte(data, position(\(marker) IN data) + 2) # 1)
                WHERE position(\(marker) IN data) > 0
                """)
        }
        let report = try await cluster.cairn(["verify", "--all", "--json"])
        #expect(report.status == 1)
        let damage = report.object["damage"] as? [[String: Any]] ?? []
        #expect(damage.count == 1, "\(damage)")
        #expect(damage.first?["run_id"] as? String == run && damage.first?["checkpoint_id"] as? String == marked
                && damage.first?["channel"] as? String == "note" && damage.first?["version"] as? String == marked, "\(damage)")
        #expect((damage.first?["problem"] as? String ?? "").contains("SHA-256 mismatch"))
        let text = try await cluster.cairn(["verify", run])
        #expect(text.status == 1 && text.stdout.contains(marked) && text.stdout.contains("note"), "\(text.stdout)")

        let state = try await cluster.cairn(["state", run, "--checkpoint", marked])
        #expect(state.status == 5, "damaged data exits 5: \(state.stderr)")
        #expect(state.stderr.contains("integrity check failed") && state.stderr.contains(run), "\(state.stderr)")
        #expect(try await cluster.cairn(["state", run]).status == 0, "the newest checkpoint does not read the damaged value")
    }

    @Test(arguments: TestStore.available)
    func cleanupTakesOnlyWhatItShouldAndGivesTheSpaceBack(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 2, slots: 2, store: store)
        defer { cluster.stop() }
        let one = try graph(cluster, "one", ["gen", "plain", "plain"])
        let two = try graph(cluster, "two", ["plain", "plain"])
        let asks = try graph(cluster, "asks", ["ask"])
        var ones: [String] = []
        for i in 0..<4 { ones.append(try await cluster.submit(one, runID: "one-\(i)")); _ = try await cluster.waitForRun(ones[i]) }
        let twoOld = try await cluster.submit(two, runID: "two-old")
        let twoParent = try await cluster.submit(two, runID: "two-parent")
        let paused = try await cluster.submit(asks, runID: "waiting")
        for r in [twoOld, twoParent] { _ = try await cluster.waitForRun(r) }
        #expect(try await cluster.waitForRun(paused)["status"] as? String == "paused")
        let from = try #require(try await checkpoints(cluster, twoParent).first?["checkpoint_id"] as? String)
        #expect(try await cluster.cairn(["fork", twoParent, "--checkpoint", from, "--run-id", "two-fork"]).status == 0)
        _ = try await cluster.waitForRun("two-fork")
        #expect(try await cluster.cairn(["pin", "one-0"]).status == 0)

        let dry = try await cluster.cairn(["cleanup", "--older-than", "0s", "--keep-latest", "1", "--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderr)")
        func ids(_ r: TestCluster.CommandResult, _ key: String) -> [String] {
            (r.object[key] as? [[String: Any]] ?? []).compactMap { $0["run_id"] as? String }.sorted()
        }
        // one: 0 pinned, 3 the newest; two: the fork the newest, its parent read by it.
        #expect(ids(dry, "deleted") == ["one-1", "one-2", "two-old"], "\(dry.stdout)")
        #expect(ids(dry, "kept") == ["one-0", "one-3", "two-fork", "two-parent"], "\(dry.stdout)")
        #expect(try await cluster.sql("SELECT COUNT(*) FROM runs") == "8", "a dry run deletes nothing")

        // The file and its log: most of what was written may still be in the log.
        func stored() -> Int {
            [cluster.databasePath, cluster.databasePath + "-wal"].reduce(0) { sum, p in
                sum + ((try? FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0)  // no log: 0 bytes
            }
        }
        let bytesBefore = stored()
        let real = try await cluster.cairn(["cleanup", "--older-than", "0s", "--keep-latest", "1", "--json"])
        #expect(real.status == 0, "\(real.stderr)")
        #expect(ids(real, "deleted") == ["one-1", "one-2", "two-old"])
        // PostgreSQL keeps freed pages for reuse (VACUUM gives back only a table's empty tail).
        #expect(store == .postgres || real.object["bytes_freed"] as? Int ?? 0 > 0, "\(real.stdout)")
        #expect(real.object["checkpoints"] as? Int == 11, "4 checkpoints each of one's runs, 3 of two's: \(real.stdout)")
        for table in ["runs", "checkpoints", "channel_values", "pending_writes", "attempts", "api_calls", "assets"] {
            #expect(try await cluster.sql("SELECT COUNT(*) FROM \(table) WHERE run_id IN ('one-1','one-2','two-old')") == "0", "\(table)")
        }
        #expect(try await cluster.sql("SELECT COUNT(*) FROM assets WHERE run_id IN ('one-0','one-3')") == "2", "the kept runs keep theirs")
        let bytesAfter = stored()
        #expect(store == .postgres || bytesAfter < bytesBefore, "the file shrank: \(bytesBefore) -> \(bytesAfter)")
        #expect(try await cluster.cairn(["verify", "--all"]).status == 0)
        #expect(try await cluster.cairn(["status", "one-1"]).status == 1)
        for kept in ["one-0", "one-3", "two-fork", "two-parent"] {
            #expect(try await cluster.cairn(["state", kept]).status == 0, "\(kept)")
        }

        // Unpinned, and with nothing newer to keep it, the pinned run goes too; the paused run never.
        #expect(try await cluster.cairn(["unpin", "one-0"]).status == 0)
        let rest = try await cluster.cairn(["cleanup", "--older-than", "0s", "--json"])
        #expect(ids(rest, "deleted") == ["one-0", "one-3", "two-fork", "two-parent"], "\(rest.stdout)")
        #expect(try await cluster.sql("SELECT run_id FROM runs") == "waiting")
        #expect(try await cluster.sql("SELECT COUNT(*) FROM graphs") == "1", "only the paused run's graph is left")
        let resumed = try await cluster.cairn(["resume", paused, "--value", "1", "--wait"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try await cluster.cairn(["cleanup", "--older-than", "0s", "--status", "paused"]).status != 0, "a cleanup never takes paused runs")
    }

    @Test func aCleanupKilledMidwayLeavesWholeRunsAndRetentionRunsOnItsOwn() async throws {
        let cluster = try await TestCluster.start(workers: 2, slots: 4)
        defer { cluster.stop() }
        // Enough runs that deleting them takes many transactions: submitted pipelined on one
        // connection, each three built-in steps.
        let total = 1_500
        let source = "name: many\nstate:\n  log: { reducer: append }\nnodes:\n"
            + (0..<3).map { "  n\($0): { run: echo, writes: { log: [\($0)] } }\n" }.joined()
            + "edges:\n  - { from: START, to: n0 }\n  - { from: n0, to: n1 }\n  - { from: n1, to: n2 }\n  - { from: n2, to: END }\n"
        var config = ClientConfig()
        config.port = cluster.port
        let requests = (0..<total).map { i in
            var r = Cairn_V1_SubmitRequest()
            r.graphFileName = "many.yaml"; r.graphSource = Data(source.utf8); r.runID = "m-\(i)"; r.inputJson = Data("{}".utf8)
            return r
        }
        let results = try await CairnClient.withConnection(config) { try await $0.submitAllAndWait(requests) }
        #expect(results.allSatisfy { (try? $0.get().status) == "completed" })
        let db = try DatabaseQueue(path: cluster.databasePath, configuration: { var c = Configuration(); c.readonly = true; return c }())
        func runsLeft() throws -> Int { try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM runs") ?? -1 } }
        #expect(try runsLeft() == total)

        let cleanup = Process()
        cleanup.executableURL = URL(fileURLWithPath: TestCluster.binDirectory + "/cairn")
        cleanup.arguments = ["cleanup", "--older-than", "0s", "--coordinator", cluster.address]
        cleanup.standardOutput = FileHandle.nullDevice
        cleanup.standardError = FileHandle.nullDevice
        try cleanup.run()
        // Killed the moment the first runs are gone: the cleanup is under way.
        let began = Date().addingTimeInterval(60)
        while try runsLeft() == total, Date() < began { usleep(500) }
        try await cluster.restartCoordinator(signal: SIGKILL)
        cleanup.waitUntilExit()
        // Whatever moment the kill landed in, every run is either all there or all gone.
        #expect(try await cluster.cairn(["verify", "--all"]).status == 0)
        let half = try await cluster.sql("""
            SELECT COUNT(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.run_id = r.run_id)
               OR (SELECT COUNT(*) FROM attempts a WHERE a.run_id = r.run_id) != 3
               OR (SELECT COUNT(*) FROM checkpoints c WHERE c.run_id = r.run_id) != 4
            """)
        #expect(half == "0", "no run is half deleted")
        let left = try runsLeft()
        print("a cleanup killed under way left \(left) of \(total) runs, each whole")
        #expect(left > 0 && left < total, "the kill landed while runs were being deleted: \(left) of \(total) left")
        #expect(try await cluster.sql("SELECT COUNT(DISTINCT run_id) FROM checkpoints") == "\(left)")

        // A coordinator started with --retention deletes finished runs on its own; pins hold.
        let g = try graph(cluster, "kept", ["plain"])
        let survivor = try await cluster.submit(g, runID: "pinned-one")
        _ = try await cluster.waitForRun(survivor)
        #expect(try await cluster.cairn(["pin", survivor]).status == 0)
        try await cluster.restartCoordinator(signal: SIGTERM, args: ["--retention", "1s", "--retention-interval", "1s"])
        try await cluster.waitUntil("the scheduled cleanup ran", timeout: 30) {
            try await cluster.sql("SELECT COUNT(*) FROM runs") == "1"
        }
        #expect(try await cluster.sql("SELECT run_id FROM runs") == survivor)
        try await cluster.waitForLog("coordinator.log", containing: "cleanup deleted runs")
    }
}
