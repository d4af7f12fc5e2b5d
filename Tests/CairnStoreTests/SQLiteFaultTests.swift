@testable import CairnSQLite
import CairnCore
import CairnStore
import Foundation
import GRDB
import Logging
import Testing

/// Which SQLite failures a retry can heal (`SQLiteFaults`), one result code at a time, and a
/// real damaged file.
@Suite struct SQLiteFaultTests {
    @Test(arguments: [
        (Int32(13), StoreFault.Kind.transient),    // SQLITE_FULL: disk full
        (5, .transient),                    // SQLITE_BUSY
        (517, .transient),                  // SQLITE_BUSY_SNAPSHOT
        (6, .transient),                    // SQLITE_LOCKED
        (7, .transient),                    // SQLITE_NOMEM
        (8, .transient),                    // SQLITE_READONLY: a file an operator can make writable
        (1032, .transient),                 // SQLITE_READONLY_DBMOVED
        (10, .transient),                   // SQLITE_IOERR
        (778, .transient),                  // SQLITE_IOERR_WRITE
        (1034, .transient),                 // SQLITE_IOERR_FSYNC
        (3338, .transient),                 // SQLITE_IOERR_NOMEM... (an I/O error on the way out)
        (14, .transient),                   // SQLITE_CANTOPEN (a journal that cannot be created)
        (3, .transient),                    // SQLITE_PERM
        (17, .transient),                   // SQLITE_SCHEMA
        (266, .permanent),                  // SQLITE_IOERR_READ: the file cannot be read back
        (522, .permanent),                  // SQLITE_IOERR_SHORT_READ: a truncated file
        (11, .permanent),                   // SQLITE_CORRUPT: database disk image is malformed
        (267, .permanent),                  // SQLITE_CORRUPT_VTAB
        (779, .permanent),                  // SQLITE_CORRUPT_INDEX
        (26, .permanent),                   // SQLITE_NOTADB: file is not a database
        (24, .permanent),                   // SQLITE_FORMAT
        (1, .transient),                    // SQLITE_ERROR: unknown to the list, kept and retried
    ])
    func eachResultCodeIsClassified(code: Int32, kind: StoreFault.Kind) {
        #expect(SQLiteFaults.kind(extendedCode: code) == kind, "SQLite code \(code)")
    }

    @Test func aGRDBErrorBecomesAFaultNamingTheFile() {
        let corrupt = SQLiteFaults.fault(DatabaseError(resultCode: .SQLITE_CORRUPT, message: "database disk image is malformed"), path: "/data/cairn.db")
        #expect(StoreFault.isPermanent(corrupt))
        #expect("\(corrupt)" == "database disk image is malformed (SQLite code 11) writing /data/cairn.db")
        let full = SQLiteFaults.fault(DatabaseError(resultCode: .SQLITE_FULL, message: "database or disk is full"), path: "/data/cairn.db")
        #expect(!StoreFault.isPermanent(full) && "\(full)".contains("database or disk is full"))
        struct Other: Error {}
        #expect(SQLiteFaults.fault(Other(), path: "x") is Other, "other errors pass through")
    }

    /// A real file with a damaged page: a write through it fails as permanent, naming the file;
    /// what is intact still reads.
    @Test func aDamagedPageMakesWritesFailPermanentlyAndIntactRowsStillRead() async throws {
        let path = NSTemporaryDirectory() + "cairn-damaged-\(UUID().uuidString).db"
        try await DamagedFile.make(path)
        let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
        #expect(try await store.run("kept")?.status == .completed, "the runs table is intact")
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g2", name: "n", version: 1, fileName: "f", source: "name: n2", bundleHash: nil, createdAt: 2))
        do {
            try await store.commit(b)
            Issue.record("a write through a damaged page must fail")
        } catch {
            #expect(StoreFault.isPermanent(error), "\(error)")
            #expect("\(error)".contains(path) && "\(error)".contains("SQLite code 11"), "\(error)")
        }
    }
}

/// A SQLite file whose `graphs` table has a damaged root page (the `runs` table is intact).
enum DamagedFile {
    static func make(_ path: String) async throws {
        do {
            let store = try SQLiteStore(path: path, logger: Logger(label: "test"))
            var b = StoreBatch()
            b.graphs.append(GraphRecord(hash: "g", name: "n", version: 1, fileName: "f", source: "name: n", bundleHash: nil, createdAt: 1))
            var r = RunRecord(runID: "kept", graphHash: "g", graphName: "n", graphVersion: 1, status: .completed, durability: "sync",
                              input: .object([:]), createdAt: 1)
            r.output = .object(["x": 1])
            b.runs.append(r)
            try await store.commit(b)
        }
        let db = try DatabaseQueue(path: path)
        let (page, size) = try await db.read { db in
            (try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = 'graphs'")!,
             try Int.fetchOne(db, sql: "PRAGMA page_size")!)
        }
        try db.close()
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64((page - 1) * size))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: size))
        try handle.close()
    }
}
