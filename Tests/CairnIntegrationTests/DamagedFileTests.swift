import CairnTestSupport
import Foundation
import GRDB
import Testing

/// Real damaged SQLite files under a real coordinator: a damaged page, a truncated file, a file
/// that is not SQLite.
@Suite(.serialized) struct DamagedFileTests {
    /// Overwrites the root page of `table` with garbage (as a failing disk would).
    static func damage(_ path: String, table: String) throws {
        let db = try DatabaseQueue(path: path)
        let (page, size) = try db.read { db in
            (try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = ?", arguments: [table])!,
             try Int.fetchOne(db, sql: "PRAGMA page_size")!)
        }
        try db.close()
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64((page - 1) * size))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: size))
        try handle.close()
    }

    @Test func aDamagedPageStopsWritesPromptlySaysWhatToDoAndKeepsServingReads() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let first = try writeGraph(cluster, "first", chainGraph(name: "first", nodes: 3, sleep: 1))
        let kept = try await cluster.submit(first, runID: "kept")
        #expect(try await cluster.waitForRun(kept)["status"] as? String == "completed")
        // The coordinator stops cleanly (its WAL folded into the file), the graphs table's page is damaged.
        try await cluster.restartCoordinator(signal: SIGTERM) { try Self.damage(cluster.databasePath, table: "graphs") }
        try await cluster.waitForWorkers(1, timeout: 30)

        // The first write through the damaged page: the submit waiting on it is answered at once.
        let other = try writeGraph(cluster, "other", chainGraph(name: "other", nodes: 2, sleep: 1))
        var started = Date()
        let inFlight = try await cluster.cairn(["submit", other, "--json"], timeout: 20)
        let firstAnswer = Date().timeIntervalSince(started)
        #expect(inFlight.status == 6, "\(inFlight.stderr)")
        #expect(inFlight.stderr.contains("damaged") && inFlight.stderr.contains("malformed") && inFlight.stderr.contains(cluster.databasePath),
                "\(inFlight.stderr)")
        #expect(inFlight.stderr.contains("integrity_check") && inFlight.stderr.contains("nothing was done"), "says what to do: \(inFlight.stderr)")
        // Every later write is refused at once; nothing is retried.
        started = Date()
        let again = try await cluster.cairn(["submit", first, "--json"], timeout: 20)
        let secondAnswer = Date().timeIntervalSince(started)
        #expect(again.status == 6 && again.stderr.contains("damaged"), "\(again.stderr)")
        let cancel = try await cluster.cairn(["resume", kept], timeout: 20)
        #expect(cancel.status == 6, "\(cancel.stderr)")
        print("damaged page: the submit in flight answered in \(String(format: "%.2f", firstAnswer)) s, the next in \(String(format: "%.2f", secondAnswer)) s: \(again.stderr)")
        #expect(firstAnswer < 5 && secondAnswer < 5)
        #expect(!cluster.log("coordinator.log").contains("attempt=3"), "a damaged file is not retried")

        // Reads of what is intact still answer, and the coordinator says it is unhealthy, and why.
        let status = try await cluster.cairn(["status", kept, "--json"]).object
        #expect(status["status"] as? String == "completed" && status[path: "output.count"] as? Int == 3)
        let listed = try await cluster.cairn(["list", "--json"]).json as? [[String: Any]]
        #expect(listed?.compactMap { $0["run_id"] as? String } == ["kept"], "no run half-made by the refused submits")
        let stats = try await cluster.cairn(["stats", "--json"]).object
        #expect((stats["store_error"] as? String ?? "").contains("the store is damaged"), "\(stats)")
    }

    @Test func aTruncatedFileOrOneThatIsNotSQLiteIsRefusedAtStartAndLeftUntouched() async throws {
        let dir = NSTemporaryDirectory() + "cairn-badfile-" + UUID().uuidString.prefix(6)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A real store with a run in it, cut in half.
        let cluster = try await TestCluster.start(workers: 1, directory: dir + "/cluster")
        let g = try writeGraph(cluster, "g", chainGraph(name: "g", nodes: 30, sleep: 1))
        _ = try await cluster.waitForRun(try await cluster.submit(g))
        cluster.stop(removeFiles: false)
        // Fold the WAL in (the coordinator was killed), so the file holds every page, then cut it in half.
        let queue = try DatabaseQueue(path: cluster.databasePath)
        try await queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        try queue.close()
        let truncated = dir + "/truncated.db"
        let whole = try Data(contentsOf: URL(fileURLWithPath: cluster.databasePath))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: truncated))
        let notSQLite = dir + "/notes.db"
        try Data("these are my notes, not a database\n".utf8).write(to: URL(fileURLWithPath: notSQLite))

        for file in [truncated, notSQLite] {
            let before = try Data(contentsOf: URL(fileURLWithPath: file))
            let r = try await TestCluster.run(TestCluster.binDirectory + "/cairn-coordinator",
                                              ["--listen", "127.0.0.1:0", "--db", file], timeout: 15)
            #expect(r.status != 0, "\(file): \(r.stdout)")
            let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("cairn-coordinator:") }
            #expect(lines.count == 1 && lines[0].contains(file), "one line naming the file: \(r.stderr)")
            #expect(!r.stderr.contains("USAGE") && !r.stderr.contains("--help"), "no usage text for a bad file: \(r.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before, "\(file) is left as it was")
            print("refused at start: \(lines.first ?? "")")
        }
    }
}
