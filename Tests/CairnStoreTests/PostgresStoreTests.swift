import CairnCore
@testable import CairnPostgres
import CairnSQLite
import CairnStore
import CairnTestSupport
import Foundation
import Logging
import PostgresNIO
import Testing

/// The PostgreSQL store against a real, throwaway PostgreSQL server (initdb into a temporary
/// folder, a free loopback port): the conformance suite, the same answers as SQLite for the same
/// rows, SHA-256 checks on read, verify/export/delete/pin, migrations, and a server that goes away.
@Suite(.enabled(if: PostgresServer.available, "PostgreSQL: \(PostgresServer.unavailableReason ?? "")"))
struct PostgresStoreTests {
    static func open(_ url: String, maxConnections: Int = 8, leaseTimeout: Duration = .seconds(3),
                     workTimeout: Duration = .seconds(5)) async throws -> PostgresStore {
        let store = PostgresStore(url: try PostgresURL(url), logger: Logger(label: "test"), maxConnections: maxConnections,
                                  leaseTimeout: leaseTimeout, workTimeout: workTimeout)
        try await store.migrate()
        return store
    }

    @Test func thePostgresStoreConforms() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        var stores: [PostgresStore] = []
        defer { stores.forEach { $0.close() } }
        try await StoreConformance.run {
            let s = try await Self.open(try await server.freshDatabase())
            stores.append(s)
            return s
        }
    }

    @Test func migrationsApplyOnceEvenWhenTwoCoordinatorsStartTogether() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let url = try PostgresURL(server.url())
        let a = PostgresStore(url: url, logger: Logger(label: "a")), b = PostgresStore(url: url, logger: Logger(label: "b"))
        defer { a.close(); b.close() }
        async let first = a.migrate()
        async let second = b.migrate()
        let applied = try await [first, second]
        let all = PostgresSchema.migrations.map(\.0)
        #expect(applied.flatMap { $0 }.sorted() == all.sorted(), "each migration applied by exactly one: \(applied)")
        #expect(try await a.migrate() == [])
        #expect(try await b.appliedMigrations() == all.sorted())
    }

    /// The seeded runs of the maintenance tests, written to SQLite and to PostgreSQL: every read
    /// the engine makes answers the same on both.
    @Test func everyReadAnswersAsSQLiteDoesForTheSameRows() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url())
        defer { pg.close() }
        let dir = NSTemporaryDirectory() + "cairn-pgcmp-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sqlite = try SQLiteStore(path: dir + "/a.db", logger: Logger(label: "test"))
        let batch = MaintenanceTests.seedBatch()
        try await sqlite.commit(batch)
        try await pg.commit(batch)
        // Written twice: upserts and first-write-wins rows come out the same as written once.
        try await pg.commit(batch)
        try await sqlite.commit(batch)

        for id in ["r1", "fork", "other", "nope"] {
            #expect(try await pg.run(id) == (try await sqlite.run(id)), "run \(id)")
            #expect(try await pg.taskExecutions(runID: id) == (try await sqlite.taskExecutions(runID: id)), "attempts of \(id)")
            let cps = try await sqlite.checkpoints(runID: id, namespace: "", limit: 100)
            #expect(try await pg.checkpoints(runID: id, namespace: "", limit: 100) == cps, "checkpoints of \(id)")
            #expect(try await pg.checkpoint(runID: id, namespace: "", checkpointID: nil) == cps.first, "latest of \(id)")
            for c in cps {
                #expect(try await pg.state(at: c) == (try await sqlite.state(at: c)), "state of \(id)@\(c.checkpointID)")
                #expect(try await pg.pendingWrites(runID: id, namespace: "", checkpointID: c.checkpointID)
                        == (try await sqlite.pendingWrites(runID: id, namespace: "", checkpointID: c.checkpointID)))
            }
            #expect(try await pg.exportRun(id)?.json == (try await sqlite.exportRun(id))?.json, "export of \(id)")
        }
        #expect(try await pg.channelValue(runID: "fork", namespace: "", channel: "log", version: "r1/c2") == .array(["a", "b"]))
        for filter in [RunFilter(), RunFilter(status: .completed), RunFilter(graphName: "demo", limit: 1), RunFilter(createdAfter: 25)] {
            #expect(try await pg.runs(filter) == (try await sqlite.runs(filter)), "\(filter)")
        }
        let page = try await pg.runs(RunFilter(limit: 1))
        let next = RunFilter(after: RunCursor(createdAt: try #require(page.first?.record).createdAt, runID: page[0].runID))
        #expect(try await pg.runs(next) == (try await sqlite.runs(next)))
        #expect(try await pg.unfinishedRuns() == (try await sqlite.unfinishedRuns()))
        #expect(try await pg.runCounts() == (try await sqlite.runCounts()))
        #expect(try await pg.workers() == (try await sqlite.workers()))
        for h in ["g1", "g2", "nope"] { #expect(try await pg.graph(h) == (try await sqlite.graph(h))) }
        let bundle = Hashing.sha256Hex([1, 2, 3])
        #expect(try await pg.bundle(bundle) == [1, 2, 3])

        for report in RecordsQuery.Report.allCases {
            for by in RecordsQuery.Grouping.allCases {
                for q in [RecordsQuery(report: report, by: by), RecordsQuery(report: report, by: by, runID: "r1"),
                          RecordsQuery(report: report, by: by, graph: "demo", uri: "file:///clip")] {
                    // The same table, or the same refusal (the attempts report needs a run).
                    var want: RecordsTable?, got: RecordsTable?, wantError = "", gotError = ""
                    do { want = try await sqlite.records(q) } catch { wantError = "\(error)" }
                    do { got = try await pg.records(q) } catch { gotError = "\(error)" }
                    #expect(got == want && gotError == wantError, "\(q): \(gotError) vs \(wantError)")
                }
            }
        }
        #expect(try await pg.verify(runIDs: nil) == (try await sqlite.verify(runIDs: nil)))
    }

    @Test func alteredBytesAreNamedOnReadAndByVerify() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url())
        defer { pg.close() }
        try await pg.commit(MaintenanceTests.seedBatch())
        let clean = try await pg.verify(runIDs: nil)
        #expect(clean.ok, "\(clean.damage)")
        #expect(clean.runs == 3 && clean.checkpoints == 5 && clean.values == 7 && clean.writes == 1 && clean.attempts == 2)

        try await server.psql("UPDATE channel_values SET codec = 0, data = convert_to('\"changed\"', 'UTF8') WHERE run_id = 'r1' AND channel = 'draft' AND version = 'c2'")
        let report = try await pg.verify(runIDs: nil)
        #expect(report.damage == [Damage(runID: "r1", checkpointID: "c2", channel: "draft", version: "c2", problem: "SHA-256 mismatch: stored data was altered or corrupted")])
        #expect(try await pg.verify(runIDs: ["other"]).ok)
        let c2 = try #require(try await pg.checkpoint(runID: "r1", namespace: "", checkpointID: "c2"))
        await #expect(throws: StoredBlob.IntegrityError.self) { _ = try await pg.state(at: c2) }

        try await server.psql("DELETE FROM checkpoints WHERE run_id = 'r1' AND checkpoint_id = 'c2'")
        try await server.psql("INSERT INTO attempts (run_id, step, task_id, attempt, status, node, worker, started_at, finished_at, duration_ms) VALUES ('ghost', 1, 't', 1, 'completed', 'n', 'w', 1, 2, 1000)")
        let lines = Set(try await pg.verify(runIDs: nil).damage.map(\.description))
        #expect(lines.contains("run r1 checkpoint c3: its parent checkpoint c2 is not stored"), "\(lines)")
        #expect(lines.contains("run ghost: 1 row(s) of attempts belong to no stored run"), "\(lines)")

        try await server.psql("UPDATE runs SET input = convert_to('{not json', 'UTF8') WHERE run_id = 'other'")
        await #expect(throws: (any Error).self) { _ = try await pg.run("other") }
    }

    /// The move from SQLite: each run exported from a SQLite file and committed to PostgreSQL
    /// reads back the same, and back again.
    @Test func runsMoveBetweenSQLiteAndPostgresUnchanged() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url())
        defer { pg.close() }
        let dir = NSTemporaryDirectory() + "cairn-pgmove-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sqlite = try SQLiteStore(path: dir + "/a.db", logger: Logger(label: "test"))
        try await sqlite.commit(MaintenanceTests.seedBatch())
        let back = try SQLiteStore(path: dir + "/b.db", logger: Logger(label: "test"))
        for id in ["r1", "fork", "other"] {
            let batch = try #require(try await sqlite.exportRun(id))
            try await pg.commit(batch)
            let moved = try #require(try await pg.exportRun(id))
            #expect(moved.json == batch.json, "run \(id) reads back from PostgreSQL as exported")
            try await back.commit(moved)
            #expect(try await back.exportRun(id)?.json == batch.json)
        }
        #expect(try await pg.verify(runIDs: nil).ok)
    }

    @Test func deletingAndPinningOnPostgres() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url())
        defer { pg.close() }
        try await pg.commit(MaintenanceTests.seedBatch())
        #expect(try await pg.setPinned("r1", true))
        #expect(try await pg.setPinned("nope", true) == false)
        var r = try #require(try await pg.run("r1"))
        r.pinned = false
        var b = StoreBatch(); b.runs = [r]
        try await pg.commit(b)
        #expect(try await pg.run("r1")?.pinned == true, "a run's own writes keep its pin")

        let report = try await pg.deleteRuns(["other"])
        #expect(report.runs == ["other"] && report.checkpoints == 1 && report.graphs == 1 && report.bundles == 1)
        for table in ["runs", "checkpoints", "channel_values", "pending_writes", "attempts", "api_calls", "assets"] {
            #expect(try await server.psql("SELECT COUNT(*) FROM \(table) WHERE run_id = 'other'") == "0\n", "\(table)")
        }
        #expect(try await pg.bundle(Hashing.sha256Hex([1, 2, 3])) == nil)
        #expect(try await pg.deleteRuns(["fork"]).graphs == 0, "g1 is still r1's")
        let r1 = try await pg.deleteRuns(["r1"])
        #expect(r1.checkpoints == 3 && r1.attempts == 2 && r1.graphs == 1)
        for table in ["api_calls", "assets", "pending_writes", "graphs", "channel_values"] {
            #expect(try await server.psql("SELECT COUNT(*) FROM \(table)") == "0\n", "\(table)")
        }
        #expect(try await pg.verify(runIDs: nil).ok)
    }

    /// A server that is down is a transient fault naming the database (the writer holds and
    /// retries); once it is back, the same store writes and reads again, and nothing committed
    /// before is lost.
    @Test func aServerThatGoesAwayIsTransientAndComesBack() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url())
        defer { pg.close() }
        try await pg.commit(MaintenanceTests.seedBatch())
        server.kill()
        var b = StoreBatch()
        var r = RunRecord(runID: "late", graphHash: "g1", graphName: "demo", graphVersion: 1, status: .queued, durability: "sync", input: nil, createdAt: 50)
        r.updatedAt = 50
        b.runs = [r]
        // Every request while it is down fails within seconds, not after the pool's own backoff:
        // writes and reads alike, the first and the later ones. Within the lease timeout (3 s)
        // when no connection can be had; within it and the work timeout (3 + 5 s) for a request
        // that got a pooled connection the dying server never answers (postgres-nio can leave one
        // waiting), whose connection is then closed.
        for attempt in 1...3 {
            let started = ContinuousClock.now
            do {
                if attempt == 2 { _ = try await pg.runCounts() } else { try await pg.commit(b) }
                Issue.record("a request to a stopped server succeeded")
            } catch let fault as StoreFault {
                #expect(fault.kind == .transient, "\(fault)")
                #expect(fault.message.contains("127.0.0.1:\(server.port)") && fault.message.contains("unreachable"), "\(fault)")
                #expect(!fault.message.contains("password"), "\(fault)")
            }
            let took = started.duration(to: .now)
            print("request \(attempt) to a stopped PostgreSQL failed after \(took)")
            #expect(took < .seconds(9), "answered within seconds: \(took)")
        }
        try await server.restart()
        let back = ContinuousClock.now
        var committed = false
        for _ in 0..<50 where !committed {
            do { try await pg.commit(b); committed = true } catch { try await Task.sleep(nanoseconds: 200_000_000) }
        }
        #expect(committed)
        print("the first write after the server came back went through \(back.duration(to: .now)) after its restart")
        #expect(back.duration(to: .now) < .seconds(10))
        #expect(try await pg.run("late")?.status == .queued)
        #expect(try await pg.verify(runIDs: nil).ok)
        #expect(try await pg.runCounts()[.completed] == 2)
    }

    /// A pool whose connections are all busy is not a server that is gone: a request that cannot
    /// have one in time fails as busy, and the long request holding it finishes undisturbed.
    @Test func aBusyPoolFailsTheWaitingRequestAndLeavesTheRunningOneAlone() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url(), maxConnections: 1, leaseTimeout: .seconds(1))
        defer { pg.close() }
        try await pg.commit(MaintenanceTests.seedBatch())
        async let long: [String] = pg.leased { conn in
            var out: [String] = []
            for try await s in try await conn.query("SELECT pg_sleep(2.5)::text", logger: Logger(label: "test")).decode(String.self) { out.append(s) }
            return out
        }
        let holding = ContinuousClock.now.advanced(by: .seconds(5))
        while pg.pool.connectionsInUse < 1, ContinuousClock.now < holding { await Task.yield() }
        #expect(pg.pool.connectionsInUse == 1, "the long request holds the pool's one connection")
        do {
            _ = try await pg.runCounts()
            Issue.record("a second request on a pool of one busy connection got one")
        } catch let fault as StoreFault {
            #expect(fault.kind == .transient && fault.message.contains("busy") && fault.message.contains("all 1 in use"), "\(fault)")
        }
        #expect(try await long == [""], "the request holding the connection finished")
        #expect(try await pg.runCounts()[.completed] == 2, "and the pool serves again")
    }

    /// A request that has its connection but no answer (a server killed mid-query can leave one
    /// so) is answered at its deadline, and its connection closed: its transaction rolls back, so
    /// nothing of a request reported failed is written later.
    @Test func aRequestWithNoAnswerIsCutAtItsDeadlineAndWritesNothing() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url(), leaseTimeout: .seconds(1), workTimeout: .seconds(1))
        defer { pg.close() }
        try await server.psql("CREATE TABLE probe (n int)")
        let started = ContinuousClock.now
        do {
            try await pg.transaction(workTimeout: pg.workTimeout) { conn in
                try await conn.query("INSERT INTO probe VALUES (1)", logger: Logger(label: "test"))
                try await conn.query("SELECT pg_sleep(4)", logger: Logger(label: "test"))
            }
            Issue.record("a transaction past its deadline succeeded")
        } catch {
            let fault = PostgresFaultsProbe.fault(error)
            #expect(fault.kind == .transient && fault.message.contains("no answer within 2s"), "\(fault)")
        }
        let took = started.duration(to: .now)
        #expect(took < .seconds(3), "answered at the deadline: \(took)")
        // Until the server has ended that backend (after its sleep): had the transaction gone on,
        // it would have committed by then.
        let ended = ContinuousClock.now.advanced(by: .seconds(15))
        while try await server.psql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'")
            .trimmingCharacters(in: .whitespacesAndNewlines) != "0", ContinuousClock.now < ended {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(try await server.psql("SELECT count(*) FROM probe").trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        #expect(try await pg.runCounts().isEmpty, "the pool serves again")
    }

    @Test func aDatabaseThatIsNotCairnsIsAPermanentFault() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let pg = try await Self.open(server.url())
        defer { pg.close() }
        try await server.psql("DROP TABLE pending_writes")
        var b = MaintenanceTests.seedBatch()
        b.runs = []
        do {
            try await pg.commit(b)
            Issue.record("a commit into a missing table succeeded")
        } catch let fault as StoreFault {
            #expect(fault.kind == .permanent, "\(fault)")
            #expect(fault.message.contains("pending_writes"), "\(fault)")
        }
    }

    @Test func urlsParseAndNeverPrintTheirPassword() throws {
        let u = try PostgresURL("postgresql://cairn:s3cret@db.example:6543/flows?sslmode=require")
        #expect(u.host == "db.example" && u.port == 6543 && u.user == "cairn" && u.password == "s3cret" && u.database == "flows")
        #expect(u.tls == .require)
        #expect(!"\(u)".contains("s3cret") && "\(u)".contains("db.example:6543/flows"))
        let d = try PostgresURL("postgres://me@localhost/x")
        #expect(d.port == 5432 && d.password == nil && d.tls == .prefer)
        #expect(PostgresURL.isPostgres("postgres://a@b/c") && PostgresURL.isPostgres("postgresql://a@b/c") && !PostgresURL.isPostgres("/var/cairn.db"))
        for bad in ["postgres://", "postgres://host/", "postgres://u@h:notaport/d", "postgres://u@h/d?sslmode=sometimes"] {
            #expect(throws: PostgresURL.Invalid.self, "\(bad)") { try PostgresURL(bad) }
        }
    }
}

/// The store's own mapping of a failure, as the engine sees it.
enum PostgresFaultsProbe {
    static func fault(_ error: any Error) -> StoreFault {
        (PostgresFaults.fault(error, doing: "testing") as? StoreFault) ?? StoreFault(.permanent, "not a fault: \(error)")
    }
}
