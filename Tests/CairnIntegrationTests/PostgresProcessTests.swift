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

    /// `cairn-coordinator move`: a SQLite store's runs (finished, paused, forked, pinned) into
    /// PostgreSQL in one command; a coordinator there reads them as the old one did, resumes the
    /// paused run and forks; moving again changes nothing; bad arguments are refused.
    @Test func aSQLiteStoreMovesIntoPostgresWithOneCommandAndItsRunsReadResumeAndFork() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let old = try await TestCluster.start(workers: 1)
        defer { old.stop() }
        let chain = try writeGraph(old, "chain", chainGraph(name: "chain", nodes: 5, sleep: 10))
        let asks = try writeGraph(old, "asks", chainGraph(name: "asks", nodes: 5, sleep: 10) + "interrupt_before: [n3]\n")
        let done = try await old.submit(chain, runID: "moved-done")
        #expect(try await old.waitForRun(done)["status"] as? String == "completed")
        let paused = try await old.submit(asks, runID: "moved-paused")
        #expect(try await old.waitForRun(paused)["status"] as? String == "paused")
        let cps = try await old.cairn(["history", done, "--json"]).object["checkpoints"] as? [[String: Any]] ?? []
        let at2 = try #require(cps.first { $0["step"] as? Int == 2 }?["checkpoint_id"] as? String)
        let fork = try await old.cairn(["fork", done, "--checkpoint", at2, "--run-id", "moved-fork", "--wait"])
        #expect(fork.status == 0, "\(fork.stderr)")
        #expect(try await old.cairn(["pin", done]).status == 0)
        var before: [String: [String]] = [:]
        for run in [done, paused, "moved-fork"] {
            before[run] = [try await old.cairn(["history", run, "--json"]).stdout, try await old.cairn(["state", run, "--json"]).stdout,
                           try await old.cairn(["tasks", run, "--json"]).stdout]
        }
        let listed = try await old.cairn(["list", "--json"]).stdout
        old.stop(removeFiles: false)  // the coordinator on the source is stopped first

        let coordinator = TestCluster.binDirectory + "/cairn-coordinator"
        let url = server.url()
        let moved = try await TestCluster.run(coordinator, ["move", "--from", old.databasePath, "--to", url], timeout: 60)
        print(moved.stdout)
        #expect(moved.status == 0, "\(moved.stdout) \(moved.stderr)")
        #expect(moved.stdout.contains("moved") && moved.stdout.contains("3 (") && moved.stdout.contains("every moved run"), "\(moved.stdout)")
        #expect(moved.stdout.contains("start the coordinator with --db \(url)"), "it says what to do next: \(moved.stdout)")
        #expect(try await server.psql("SELECT pinned FROM runs WHERE run_id = 'moved-done'").trimmingCharacters(in: .whitespacesAndNewlines) == "t",
                "the pin moved with its run")

        let new = try await TestCluster.start(workers: 1, coordinatorArgs: ["--db", url])
        defer { new.stop() }
        #expect(try await new.cairn(["list", "--json"]).stdout == listed, "the list reads the same")
        for run in [done, paused, "moved-fork"] {
            let after = [try await new.cairn(["history", run, "--json"]).stdout, try await new.cairn(["state", run, "--json"]).stdout,
                         try await new.cairn(["tasks", run, "--json"]).stdout]
            #expect(after == before[run], "\(run) reads the same on PostgreSQL")
        }
        let resumed = try await new.cairn(["resume", paused, "--wait", "--json"])
        #expect(resumed.status == 0 && resumed.object[path: "output.log"] as? [String] == (1...5).map { "n\($0)" }, "\(resumed.stdout) \(resumed.stderr)")
        let forkedHere = try await new.cairn(["fork", done, "--checkpoint", at2, "--run-id", "forked-on-pg", "--wait", "--json"])
        #expect(forkedHere.status == 0 && forkedHere.object[path: "output.count"] as? Int == 5, "\(forkedHere.stdout) \(forkedHere.stderr)")

        // Again: nothing new to move, the runs there (one resumed since) are named and left alone.
        let again = try await TestCluster.run(coordinator, ["move", "--from", old.databasePath, "--to", url, "--json"], timeout: 60)
        let report = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any] ?? [:]
        #expect((report["moved"] as? [Any])?.isEmpty == true && (report["already_there"] as? [String])?.sorted() == [done, "moved-fork"], "\(again.stdout)")
        #expect((report["refused"] as? [[String: Any]])?.first?["run_id"] as? String == paused && again.status == 1,
                "the paused run, resumed on PostgreSQL, differs from the file's copy: \(again.stdout)")

        for (args, says) in [(["--from", old.directory + "/nothing.db", "--to", url], "there is no SQLite file"),
                             (["--from", url, "--to", url], "are the same store"),
                             (["--from", old.databasePath, "--to", "mysql://root@127.0.0.1/x"], "cannot serve mysql URLs")] {
            let r = try await TestCluster.run(coordinator, ["move"] + args, timeout: 30)
            #expect(r.status == 1 && r.stderr.contains(says), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: old.directory + "/nothing.db"), "a missing source is not created")
    }

    /// As an operator runs it in a container: the store in CAIRN_DB and the password in
    /// PGPASSWORD (out of the process list), and a refused login says the server's own reason.
    @Test func theStoreFromCAIRN_DBThePasswordFromPGPASSWORDAndARefusedLoginSaysWhy() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        try await server.psql("CREATE ROLE app LOGIN PASSWORD 'pw-s3cret'")
        try await server.psql("CREATE DATABASE appdb OWNER app", database: "postgres")
        let hba = server.directory + "/pg_hba.conf"
        try ("host all app 127.0.0.1/32 scram-sha-256\n" + String(contentsOfFile: hba, encoding: .utf8))
            .write(toFile: hba, atomically: false, encoding: .utf8)
        try await server.psql("SELECT pg_reload_conf()")
        let login = ["psql", "-X", "-w", "-h", "127.0.0.1", "-p", "\(server.port)", "-U", "app", "-d", "appdb", "-c", "SELECT 1"]
        for _ in 0..<100 where try await TestCluster.run("/usr/bin/env", login, timeout: 10).status == 0 {
            try await Task.sleep(for: .milliseconds(100))  // until the reload has taken effect
        }
        let dir = NSTemporaryDirectory() + "cairn-dbenv-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let coordinator = TestCluster.binDirectory + "/cairn-coordinator"
        let url = "postgres://app@127.0.0.1:\(server.port)/appdb"
        var base = ProcessInfo.processInfo.environment
        base.removeValue(forKey: "PGPASSWORD")
        base.removeValue(forKey: "CAIRN_TOKEN")

        for (env, says) in [(["CAIRN_DB": url], "the server asks for a password and none was given (put it in the URL or in PGPASSWORD)"),
                            (["CAIRN_DB": url, "PGPASSWORD": "wrong-pw"], "password authentication failed for user \"app\""),
                            (["CAIRN_DB": url + "x", "PGPASSWORD": "pw-s3cret"], "database \"appdbx\" does not exist"),
                            (["CAIRN_DB": "mysql://root@127.0.0.1/cairn"], "cannot serve mysql URLs")] {
            let r = try await TestCluster.run("/bin/sh", ["-c", "cd '\(dir)' && exec '\(coordinator)' --listen 127.0.0.1:0"],
                                              environment: base.merging(env) { $1 }, timeout: 30)
            #expect(r.status == 1 && r.stderr.contains(says), "\(env): \(r.stderr)")
            #expect(!r.stderr.contains("wrong-pw") && !r.stderr.contains("pw-s3cret"), "no password printed: \(r.stderr)")
        }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: coordinator)
        p.arguments = ["--listen", "127.0.0.1:0"]
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.environment = base.merging(["CAIRN_DB": url, "PGPASSWORD": "pw-s3cret"]) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        let line = try await TestCluster.readLine(out.fileHandleForReading, timeout: 30)
        #expect(line.contains("listening on"), "\(line)")
        let owner = try await server.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'checkpoints'", database: "appdb")
        #expect(owner.trimmingCharacters(in: .whitespacesAndNewlines) == "app", "the schema made in CAIRN_DB's database as its user: \(owner)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty, "no SQLite store beside it")
        let args = String(data: FileManager.default.contents(atPath: "/proc/\(p.processIdentifier)/cmdline") ?? Data(), encoding: .utf8) ?? ""
        #expect(!args.contains("pw-s3cret"), "the password is not on the command line")
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
