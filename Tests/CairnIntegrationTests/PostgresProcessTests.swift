import CairnTestSupport
import Foundation
import Testing

/// A real coordinator on a real, throwaway PostgreSQL (`--db postgres://…`): runs finish, the
/// coordinator killed with `kill -9` mid-run comes back on the same database and finishes them
/// exactly; PostgreSQL restarted in an instant, and down for 10 s, under running runs: the
/// coordinator holds, answers at once, says it is unhealthy, reconnects and finishes every run
/// exactly; `--db` URLs it cannot serve are refused in one line with nothing created.
@Suite(.serialized, .enabled(if: PostgresServer.available, "PostgreSQL: \(PostgresServer.unavailableReason ?? "")"))
struct PostgresProcessTests {
    @Test func runsFinishExactlyOnPostgresThroughACoordinatorKill() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let url = server.url()
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--db", url])
        defer { cluster.stop() }
        try await cluster.waitForLog("coordinator.log", containing: "store=PostgreSQL postgres://postgres@127.0.0.1")
        #expect(!FileManager.default.fileExists(atPath: cluster.databasePath), "no SQLite file beside a PostgreSQL store")

        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: 12, sleep: 100))
        var runs: [String] = []
        for i in 0..<4 { runs.append(try await cluster.submit(graph, runID: "pg-\(i)")) }
        for run in runs { try await cluster.waitForStep(run, atLeast: 3) }
        try await cluster.restartCoordinator(signal: SIGKILL, args: ["--db", url])
        try await cluster.waitForLog("coordinator.log", containing: "recovered unfinished runs")
        for run in runs {
            let status = try await cluster.waitForRun(run, timeout: 60)
            #expect(status["status"] as? String == "completed", "\(status)")
            #expect(status[path: "output.log"] as? [String] == (1...12).map { "n\($0)" }, "each step applied once: \(status)")
            #expect(status[path: "output.count"] as? Int == 12)
        }
        // The rows are PostgreSQL's: every checkpoint of every run, one per step plus the input.
        let rows = try await server.psql("SELECT count(*) FROM checkpoints WHERE run_id LIKE 'pg-%'")
        #expect(rows.trimmingCharacters(in: .whitespacesAndNewlines) == "\(4 * 13)", "checkpoints: \(rows)")
        let history = try await cluster.cairn(["history", "pg-0", "--json"])
        #expect((history.object["checkpoints"] as? [Any])?.count == 13, "\(history.stdout)")
    }

    @Test func postgresRestartedAndDownForTenSecondsMidRunLosesNothingAndRepeatsNothing() async throws {
        let metrics = try RedisServer.freePort()
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--metrics", "127.0.0.1:\(metrics)"], store: .postgres)
        defer { cluster.stop() }
        let server = try #require(cluster.postgres)
        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: 12, sleep: 100))
        let health = ["health", "http://127.0.0.1:\(metrics)/healthz", "--timeout", "15"]
        #expect(try await cluster.cairn(health).status == 0)

        // 1. `pg_ctl restart -m immediate`: SIGQUIT (every backend dies at once), started again.
        var runs: [String] = []
        for i in 0..<3 { runs.append(try await cluster.submit(graph, runID: "restart-\(i)")) }
        for run in runs { try await cluster.waitForStep(run, atLeast: 3) }
        server.kill(signal: SIGQUIT)
        try await server.restart()

        // 2. Down for 10 s, with runs mid-chain.
        for i in 0..<3 { runs.append(try await cluster.submit(graph, runID: "down-\(i)")) }
        for run in runs.suffix(3) { try await cluster.waitForStep(run, atLeast: 2) }
        server.kill(signal: SIGQUIT)
        let down = ContinuousClock.now
        // Noticed by the writer: at the lease timeout (3 s), or at the work timeout (3 + 5 s) for a
        // write the server was killed under and that postgres-nio leaves unanswered.
        try await cluster.waitUntil("the coordinator reporting its writes failing", timeout: 20) {
            (try await cluster.cairn(["stats", "--json"], timeout: 10).object["store_error"] as? String ?? "").contains("writes are failing")
        }
        let noticed = down.duration(to: .now)
        // A command that writes is refused at once, saying why, with nothing done.
        let asked = ContinuousClock.now
        let refused = try await cluster.cairn(["submit", graph, "--run-id", "while-down", "--json"], timeout: 15)
        let answered = asked.duration(to: .now)
        #expect(refused.status == 6 && refused.stderr.contains("unreachable") && refused.stderr.contains("nothing was done"), "\(refused.stderr)")
        #expect(answered < .seconds(5), "a write command is answered within seconds: \(answered)")
        let unhealthy = try await cluster.cairn(health)
        #expect(unhealthy.status == 1 && unhealthy.stdout.contains("unreachable"), "\(unhealthy.stdout) \(unhealthy.stderr)")
        let left = Duration.seconds(10) - down.duration(to: .now)
        if left > .zero { try await Task.sleep(for: left) }
        try await server.restart()
        let back = ContinuousClock.now
        try await cluster.waitUntil("the store accepting writes again", timeout: 30) {
            try await cluster.cairn(["stats", "--json"]).object["store_error"] is NSNull
        }
        let healed = back.duration(to: .now)
        print("PostgreSQL down: noticed after \(noticed), a submit refused after \(answered), writes again \(healed) after it was back")

        // Every run finishes exactly: each write once, one checkpoint per step, all in PostgreSQL.
        for run in runs {
            let status = try await cluster.waitForRun(run, timeout: 90)
            #expect(status["status"] as? String == "completed", "\(run): \(status)")
            #expect(status[path: "output.log"] as? [String] == (1...12).map { "n\($0)" }, "\(run): each step applied once: \(status)")
            #expect(status[path: "output.count"] as? Int == 12)
            let history = try await cluster.cairn(["history", run, "--json"]).object
            let steps = ((history["checkpoints"] as? [[String: Any]]) ?? []).compactMap { $0["step"] as? Int }
            #expect(steps == Array((0...12).reversed()), "\(run): one checkpoint per step, none repeated")
        }
        #expect(try await cluster.sql("SELECT count(*) FROM checkpoints") == "\(runs.count * 13)")
        #expect(try await cluster.sql("SELECT count(*) FROM runs WHERE run_id = 'while-down'") == "0", "the refused submit left nothing")
        #expect(try await cluster.cairn(health).status == 0)
        #expect(try await cluster.cairn(["verify", "--all"]).status == 0)
    }

    @Test func aDatabaseURLItCannotServeIsRefusedInOneLine() async throws {
        let dir = NSTemporaryDirectory() + "cairn-dburl-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = TestCluster.binDirectory + "/cairn-coordinator"
        for (db, says) in [("mysql://root@127.0.0.1:3306/cairn", "cannot serve mysql URLs"),
                           ("sqlite:///tmp/x.db", "cannot serve sqlite URLs"),
                           ("postgres://127.0.0.1:5432/cairn", "no user"),
                           ("postgres://u:secret@127.0.0.1:5432/cairn?sslmode=maybe", "sslmode must be")] {
            let r = try await TestCluster.run("/bin/sh", ["-c", "cd '\(dir)' && exec '\(coordinator)' --listen 127.0.0.1:0 --db '\(db)'"], timeout: 30)
            #expect(r.status == 1 && r.stderr.contains(says), "\(db): \(r.stderr)")
            #expect(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1, "one line: \(r.stderr)")
            #expect(!r.stderr.contains("secret"), "the password stays out of the message: \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "nothing created (no folder named postgres: or mysql:)")
    }
}
