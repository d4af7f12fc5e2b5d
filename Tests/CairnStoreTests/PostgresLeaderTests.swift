import CairnCore
@testable import CairnPostgres
import CairnStore
import CairnTestSupport
import Foundation
import Testing

/// The lead among coordinators on one PostgreSQL database, against a real server: one claim wins
/// while a lease runs, a renewal of an epoch that moved on is refused, and a fenced store's write
/// after another coordinator took over is refused inside its own transaction and writes nothing.
@Suite(.enabled(if: PostgresServer.available, "PostgreSQL: \(PostgresServer.unavailableReason ?? "")"))
struct PostgresLeaderTests {
    static func batch(_ runID: String) -> StoreBatch {
        var b = StoreBatch()
        b.graphs.append(GraphRecord(hash: "g1", name: "demo", version: 1, fileName: "demo.yaml", source: "name: demo", bundleHash: nil, createdAt: 1000))
        var r = RunRecord(runID: runID, graphHash: "g1", graphName: "demo", graphVersion: 1, status: .running, durability: "sync",
                          input: .object(["x": 1]), createdAt: 1000)
        r.updatedAt = 1000
        b.runs.append(r)
        return b
    }

    @Test func oneClaimWinsWhileTheLeaseRunsAndAFencedWriteOfTheDeposedOneWritesNothing() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let a = try await PostgresStoreTests.open(server.url()), b = try await PostgresStoreTests.open(server.url())
        defer { a.close(); b.close() }
        #expect(try await a.leader() == nil, "nobody leads a new database")

        let first = try await a.claimLead(holder: "a", address: "10.0.0.1:7400", http: "", lease: 30)
        #expect(first.epoch == 1)
        let refused = try await b.claimLead(holder: "b", address: "10.0.0.2:7400", http: "10.0.0.2:7480", lease: 30)
        #expect(refused.epoch == nil && refused.leader?.holder == "a" && refused.leader?.address == "10.0.0.1:7400", "\(refused)")
        #expect((refused.leader?.remaining ?? 0) > 25, "the lease runs on the server's clock: \(String(describing: refused.leader))")
        #expect(try await a.renewLead(epoch: 1, lease: 30) == nil)

        let deposed = Deposals()
        try await a.fence(epoch: 1) { deposed.add($0) }
        try await a.commit(Self.batch("before"))

        // a's lease runs out (as when it is frozen or killed): b takes over with epoch 2.
        #expect(try await a.renewLead(epoch: 1, lease: -1) == nil)
        let taken = try await b.claimLead(holder: "b", address: "10.0.0.2:7400", http: "10.0.0.2:7480", lease: 30)
        #expect(taken.epoch == 2, "\(taken)")
        try await b.fence(epoch: 2) { _ in Issue.record("b was deposed") }

        // a wakes and writes: refused inside its transaction, nothing of it stored, told once.
        await #expect(throws: StoreFault.self) { try await a.commit(Self.batch("after")) }
        await #expect(throws: StoreFault.self) { try await a.commit(Self.batch("after-2")) }
        let after = try await b.run("after"), after2 = try await b.run("after-2")
        #expect(after == nil && after2 == nil, "the deposed coordinator's writes are not in the store")
        #expect(try await b.run("before") != nil)
        #expect(deposed.all.map(\.epoch) == [2], "told once, with who leads now: \(deposed.all)")
        let renewal = try await a.renewLead(epoch: 1, lease: 30)
        #expect(renewal?.epoch == 2 && renewal?.holder == "b", "a renewal of an old epoch is refused: \(String(describing: renewal))")
        do {
            try await a.commit(Self.batch("after-3"))
        } catch let fault as StoreFault {
            #expect(fault.kind == .transient && fault.message.contains("no longer leads") && fault.message.contains("10.0.0.2:7400"), "\(fault)")
        }
        try await b.commit(Self.batch("by-b"))
        #expect(try await a.run("by-b") != nil, "the leader writes; the deposed one still reads")

        // A graceful stop gives the lead up at once; a restart at the same address takes it back at once.
        try await b.releaseLead(epoch: 2)
        #expect(try await a.claimLead(holder: "a2", address: "10.0.0.1:7400", http: "", lease: 30).epoch == 3)
        #expect(try await b.claimLead(holder: "b2", address: "10.0.0.2:7400", http: "", lease: 30).epoch == nil)
        #expect(try await a.claimLead(holder: "a3", address: "10.0.0.1:7400", http: "", lease: 30).epoch == 4,
                "the same address again (a restarted coordinator): its old self is gone, it need not wait out the lease")
        try await a.announceLead(epoch: 4, address: "10.0.0.1:7411", http: "10.0.0.1:7480")
        #expect(try await b.leader()?.address == "10.0.0.1:7411")
        #expect(try await server.psql("SELECT count(*) FROM runs").trimmingCharacters(in: .whitespacesAndNewlines) == "2")
    }
}

final class Deposals: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [LeaderRecord] = []
    func add(_ r: LeaderRecord?) { lock.withLock { seen.append(r ?? LeaderRecord(holder: "?", epoch: 0, address: "", http: "", remaining: 0)) } }
    var all: [LeaderRecord] { lock.withLock { seen } }
}
