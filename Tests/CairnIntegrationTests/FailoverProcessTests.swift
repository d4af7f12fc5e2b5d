import CairnTestSupport
import Foundation
import Testing

/// Standby coordinators on one PostgreSQL database, as real processes: one leads, the other
/// stands by and says so; the active one killed with `kill -9`, or frozen with SIGSTOP past its
/// lease and woken, and the standby takes over; workers and the CLI, given both addresses,
/// follow; every run ends exactly as with no fault, one checkpoint per step, nothing applied twice.
@Suite(.serialized, .enabled(if: PostgresServer.available, "PostgreSQL: \(PostgresServer.unavailableReason ?? "")"))
struct FailoverProcessTests {
    static let steps = 12

    static func expectExact(_ cluster: TestCluster, _ runs: [String]) async throws {
        for run in runs {
            let status = try await cluster.waitForRun(run, timeout: 90)
            #expect(status["status"] as? String == "completed", "\(run): \(status)")
            #expect(status[path: "output.log"] as? [String] == (1...steps).map { "n\($0)" }, "each step applied once: \(status)")
            #expect(status[path: "output.count"] as? Int == steps)
        }
        let rows = try await cluster.sql("SELECT count(*) FROM checkpoints")
        #expect(rows == "\(runs.count * (steps + 1))", "one checkpoint per step and the input, none from a deposed coordinator: \(rows)")
    }

    /// Seconds from `since` until every run has recorded a step newer than `before` (asked of the
    /// new leader directly: the CLI given both addresses gives a frozen one 2 s first).
    static func stepAgain(_ cluster: TestCluster, _ runs: [String], before: [String: Int], since: ContinuousClock.Instant) async throws -> Double {
        let leader = "127.0.0.1:\(cluster.standbyPorts[0])"
        var waiting = Set(runs)
        try await cluster.waitUntil("every run taking a step after the fail-over", timeout: 60) {
            for run in waiting {
                let s = try await cluster.cairn(["status", run, "--json", "--coordinator", leader]).object
                if (s["step"] as? Int ?? -1) > before[run]! || (s["status"] as? String ?? "running") != "running" { waiting.remove(run) }
            }
            return waiting.isEmpty
        }
        let d = since.duration(to: .now)
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    static func steps(_ cluster: TestCluster, _ runs: [String]) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for run in runs { out[run] = try await cluster.cairn(["status", run, "--json"]).object["step"] as? Int ?? 0 }
        return out
    }

    @Test func theActiveCoordinatorKilledMidRunAStandbyTakesOverAndEveryRunEndsExactly() async throws {
        let cluster = try await TestCluster.start(workers: 2, store: .postgres, standbys: 1)
        defer { cluster.stop() }
        try await cluster.waitForLog("coordinator-1.log", containing: "standing by: another coordinator leads")
        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: Self.steps, sleep: 150))
        let slow = try writeGraph(cluster, "slow", chainGraph(name: "slow", nodes: Self.steps, sleep: 600))
        var runs = [try await cluster.submit(slow, runID: "fo-watched")]
        for i in 0..<6 { runs.append(try await cluster.submit(graph, runID: "fo-\(i)")) }
        for run in runs { try await cluster.waitForStep(run, atLeast: 3) }
        let before = try await Self.steps(cluster, runs)
        // A person watching a run, given both coordinators: the watch goes on across the fail-over.
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: TestCluster.binDirectory + "/cairn")
        watch.arguments = ["watch", "fo-watched", "--json"]
        watch.environment = ProcessInfo.processInfo.environment.merging(["CAIRN_COORDINATOR": cluster.address, "NO_COLOR": "1"]) { $1 }
        let (watchOut, watchErr) = (Pipe(), Pipe())
        watch.standardOutput = watchOut
        watch.standardError = watchErr
        try watch.run()
        defer { if watch.isRunning { watch.terminate() } }
        let first = try await TestCluster.readLine(watchOut.fileHandleForReading, timeout: 20, what: "the watch's first event")
        #expect(first.contains("\"snapshot\""), "\(first)")

        let killed = ContinuousClock.now
        kill(cluster.coordinator.processIdentifier, SIGKILL)
        try await cluster.waitForLog("coordinator-1.log", containing: "this coordinator leads", timeout: 15)
        let took = try await Self.stepAgain(cluster, runs, before: before, since: killed)
        print("fail-over after kill -9: every run stepped again \(String(format: "%.2f", took)) s after the kill")
        #expect(took < 10, "the next step within seconds of the kill: \(took) s")
        try await Self.expectExact(cluster, runs)
        let watched = String(decoding: watchOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let said = String(decoding: watchErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        watch.waitUntilExit()
        let final = watched.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } ?? [:]
        #expect(watch.terminationStatus == 0 && final["final"] as? Bool == true && final[path: "run.status"] as? String == "completed",
                "the watch followed the run to its end on the new leader: \(watch.terminationStatus) \(watched.suffix(400)) \(said)")
        #expect(said.contains("following the run on the active coordinator") && said.split(separator: "\n").count == 1,
                "one line says it moved: \(said)")
        #expect(cluster.log("worker-w1.log").contains("the active coordinator moved: serving it"), "one line says where it moved")
        #expect(try await cluster.sql("SELECT epoch FROM cairn_leader") == "2")
    }

    /// A standby asked anything answers with where the active one is: the CLI given only the
    /// standby's address is served by the active one, the HTTP API redirects there, /healthz and
    /// stats name each one's role.
    @Test func aStandbyTellsWhereTheActiveCoordinatorIs() async throws {
        // The active one's API published under another name (as behind a container's port
        // mapping): a standby's redirects name what --advertise-http says.
        let (metrics, activeHTTPPort) = (try RedisServer.freePort(), try RedisServer.freePort())
        let cluster = try await TestCluster.start(workers: 1, coordinatorArgs: ["--http", "127.0.0.1:\(activeHTTPPort)", "--metrics", "127.0.0.1:\(metrics)",
                                                                                "--advertise-http", "localhost:\(activeHTTPPort)"],
                                                  store: .postgres)
        defer { cluster.stop() }
        let (port, http, standbyMetrics) = (try RedisServer.freePort(), try RedisServer.freePort(), try RedisServer.freePort())
        try cluster.startStandby(index: 1, port: port, args: ["--http", "127.0.0.1:\(http)", "--metrics", "127.0.0.1:\(standbyMetrics)"])
        try await cluster.waitForLog("coordinator-1.log", containing: "standing by: another coordinator leads")
        try await cluster.waitForLog("coordinator.log", containing: "HTTP API listening")
        let activeHTTP = "localhost:\(activeHTTPPort)"

        // The protocol port: a CLI given only the standby is sent on to the active one.
        let workers = try await cluster.cairn(["workers", "--json", "--coordinator", "127.0.0.1:\(port)"])
        #expect(workers.status == 0 && (workers.json as? [Any])?.count == 1, "\(workers.stderr) \(workers.stdout)")
        let stats = try await cluster.cairn(["stats", "--json", "--coordinator", "127.0.0.1:\(port)"])
        #expect(stats.object["role"] as? String == "active" && stats.object["leader_epoch"] as? Int == 1, "\(stats.stdout)")

        // The HTTP port: 307 to the same path on the active one's API, and followed, its answer.
        let head = try await TestCluster.run("/usr/bin/env", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                                             "http://127.0.0.1:\(http)/api/runs?limit=5"], timeout: 30)
        #expect(head.stdout == "307 http://\(activeHTTP)/api/runs?limit=5", "\(head.stdout)")
        let followed = try await TestCluster.run("/usr/bin/env", ["curl", "-sL", "http://127.0.0.1:\(http)/api/stats"], timeout: 30)
        #expect(followed.stdout.contains("\"role\":\"active\""), "\(followed.stdout)")

        // /healthz: each says its role; a standby is healthy at its job.
        let standbyHealth = try await TestCluster.run("/usr/bin/env", ["curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:\(standbyMetrics)/healthz"], timeout: 30)
        #expect(standbyHealth.stdout.contains("\"role\": \"standby\"") && standbyHealth.stdout.contains("\"leader\": \"127.0.0.1:\(cluster.port)\"")
                && standbyHealth.stdout.hasSuffix(" 200"), "\(standbyHealth.stdout)")
        let activeHealth = try await TestCluster.run("/usr/bin/env", ["curl", "-s", "http://127.0.0.1:\(metrics)/healthz"], timeout: 30)
        #expect(activeHealth.stdout.contains("\"role\": \"active\", \"epoch\": 1"), "\(activeHealth.stdout)")
        let gauge = try await TestCluster.run("/usr/bin/env", ["curl", "-s", "http://127.0.0.1:\(standbyMetrics)/metrics"], timeout: 30)
        #expect(gauge.stdout.contains("cairn_coordinator_active 0"), "\(gauge.stdout.prefix(400))")
    }

    @Test func aFrozenActiveCoordinatorIsReplacedAndWhenItWakesItWritesNothingAndStandsBy() async throws {
        let metrics = try RedisServer.freePort()
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--metrics", "127.0.0.1:\(metrics)"], store: .postgres,
                                                  standbys: 1, standbyArgs: { _ in [] })
        defer { cluster.stop() }
        for name in ["w3", "w4"] { cluster.startWorker(name: name, extraArgs: ["--peer-timeout", "3s"]) }
        try await cluster.waitForLog("coordinator-1.log", containing: "standing by: another coordinator leads")
        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: Self.steps, sleep: 150))
        var runs: [String] = []
        for i in 0..<4 { runs.append(try await cluster.submit(graph, runID: "frozen-\(i)")) }
        for run in runs { try await cluster.waitForStep(run, atLeast: 2) }
        let before = try await Self.steps(cluster, runs)

        let frozen = ContinuousClock.now
        kill(cluster.coordinator.processIdentifier, SIGSTOP)
        try await cluster.waitForLog("coordinator-1.log", containing: "this coordinator leads", timeout: 15)
        let took = try await Self.stepAgain(cluster, runs, before: before, since: frozen)
        print("fail-over after SIGSTOP: every run stepped again \(String(format: "%.2f", took)) s after the freeze")
        kill(cluster.coordinator.processIdentifier, SIGCONT)
        try await cluster.waitForLog("coordinator.log", containing: "stepping down", timeout: 15)
        try await cluster.waitForLog("coordinator.log", containing: "standing by: another coordinator leads", timeout: 15)
        // Started again in place (an exec), its ports bound afresh: it says it stands by.
        let health = try await cluster.cairn(["health", "http://127.0.0.1:\(metrics)/healthz"], timeout: 30)
        #expect(health.stdout.contains("\"role\": \"standby\""), "\(health.stdout) \(cluster.log("coordinator.log").suffix(1500))")
        try await Self.expectExact(cluster, runs)
        #expect(try await cluster.sql("SELECT epoch FROM cairn_leader") == "2", "the woken one did not take the lead back")
    }
}

extension FailoverProcessTests {
    /// PostgreSQL restarted in an instant, then down for longer than the lease, under two
    /// coordinators: afterwards exactly one leads (the old one or the standby, whichever the
    /// database gave it to), the other stands by, and every run ends exactly.
    @Test func postgresRestartedUnderTwoCoordinatorsLeavesOneActiveAndEveryRunExact() async throws {
        let (m0, m1) = (try RedisServer.freePort(), try RedisServer.freePort())
        let cluster = try await TestCluster.start(workers: 2, coordinatorArgs: ["--metrics", "127.0.0.1:\(m0)"], store: .postgres,
                                                  standbys: 1, standbyArgs: { _ in ["--metrics", "127.0.0.1:\(m1)"] })
        defer { cluster.stop() }
        let server = try #require(cluster.postgres)
        try await cluster.waitForLog("coordinator-1.log", containing: "standing by: another coordinator leads")
        let graph = try writeGraph(cluster, "chain", chainGraph(name: "chain", nodes: Self.steps, sleep: 150))
        var runs: [String] = []
        for i in 0..<4 { runs.append(try await cluster.submit(graph, runID: "pgr-\(i)")) }
        for run in runs { try await cluster.waitForStep(run, atLeast: 2) }

        server.kill(signal: SIGQUIT)  // pg_ctl restart -m immediate
        try await server.restart()
        for run in runs { try await cluster.waitForStep(run, atLeast: 5, timeout: 60) }
        server.kill(signal: SIGQUIT)  // down past the lease: both may claim when it is back
        try await Task.sleep(for: .seconds(5))
        try await server.restart()
        try await Self.expectExact(cluster, runs)

        func role(_ port: Int) async throws -> String {
            let r = try await TestCluster.run("/usr/bin/env", ["curl", "-s", "http://127.0.0.1:\(port)/healthz"], timeout: 30)
            return r.stdout.contains("\"role\": \"active\"") ? "active" : r.stdout.contains("\"role\": \"standby\"") ? "standby" : r.stdout
        }
        var roles: [String] = []
        do {
            try await cluster.waitUntil("one coordinator active and the other standing by", timeout: 30) {
                roles = [try await role(m0), try await role(m1)].sorted()
                return roles == ["active", "standby"]
            }
        } catch {
            Issue.record("roles \(roles)\n--- coordinator.log\n\(cluster.log("coordinator.log").suffix(3000))\n--- coordinator-1.log\n\(cluster.log("coordinator-1.log").suffix(3000))")
            throw error
        }
        let leader = try await cluster.sql("SELECT epoch FROM cairn_leader")
        print("after PostgreSQL was restarted and down under two coordinators: roles \(roles), leader epoch \(leader)")
    }
}
