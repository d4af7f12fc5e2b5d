import CairnTestSupport
import Foundation
import Testing

/// A real coordinator on a real, throwaway PostgreSQL (`--db postgres://…`): runs finish, the
/// coordinator killed with `kill -9` mid-run comes back on the same database and finishes them
/// exactly, and `--db` URLs it cannot serve are refused in one line with nothing created.
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
