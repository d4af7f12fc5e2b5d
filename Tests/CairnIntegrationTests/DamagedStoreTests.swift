import CairnTestSupport
import Foundation
import GRDB
import Testing

/// A coordinator whose SQLite file was damaged while it was stopped: the damaged runs are
/// reported plainly by name with exit status 5, `list` marks them instead of failing, and the
/// coordinator goes on serving everything else.
@Suite(.serialized) struct DamagedStoreTests {
    @Test func damagedRowsAreNamedAndEverythingElseStillServes() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "d", chainGraph(name: "d", nodes: 3, sleep: 1))
        for id in ["good", "bad-output", "bad-state"] {
            let r = try await cluster.cairn(["submit", graph, "--run-id", id, "--wait"])
            #expect(r.status == 0, "\(id): \(r.stderr)")
        }
        try await cluster.restartCoordinator(signal: SIGTERM) {
            let db = try DatabaseQueue(path: cluster.databasePath)
            try db.write { db in
                // Another valid JSON value in place of the output: it must not read back as that value.
                try db.execute(sql: "UPDATE runs SET output = CAST('{\"log\":[\"forged\"]}' AS BLOB), output_codec = 0 WHERE run_id = 'bad-output'")
                #expect(db.changesCount == 1)
                // One flipped bit in the newest step's inline values.
                let id = try #require(try Int64.fetchOne(db, sql: """
                    SELECT inline_id FROM checkpoints WHERE run_id = 'bad-state' AND inline_id IS NOT NULL ORDER BY checkpoint_id DESC LIMIT 1
                    """))
                var data = [UInt8](try #require(try Data.fetchOne(db, sql: "SELECT data FROM checkpoint_inline WHERE id = ?", arguments: [id])))
                data[data.count - 2] ^= 0x04
                try db.execute(sql: "UPDATE checkpoint_inline SET data = ? WHERE id = ?", arguments: [Data(data), id])
            }
        }
        try await cluster.waitForWorkers(1)

        let status = try await cluster.cairn(["status", "bad-output"])
        #expect(status.status == 5, "exit status for damaged data: \(status.status) \(status.stderr)")
        #expect(status.stderr.contains("stored data is damaged"))
        #expect(status.stderr.contains("run bad-output (runs.output)"))
        #expect(status.stderr.contains("SHA-256 mismatch"))
        #expect(!status.stdout.contains("forged"))
        #expect(!status.stderr.contains("Usage"))

        let state = try await cluster.cairn(["state", "bad-state"])
        #expect(state.status == 5)
        #expect(state.stderr.contains("run bad-state checkpoint"), "\(state.stderr)")

        let list = try await cluster.cairn(["list"])
        #expect(list.status == 0, "\(list.stderr)")
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("bad-output") && $0.contains("damaged") && $0.contains("runs.output") })
        #expect(lines.contains { $0.hasPrefix("good") && $0.contains("completed") })
        let listed = try #require(try await cluster.cairn(["list", "--json"]).json as? [[String: Any]])
        let byID = Dictionary(uniqueKeysWithValues: listed.map { ($0["run_id"] as? String ?? "", $0) })
        #expect(byID["bad-output"]?["status"] as? String == "damaged")
        #expect((byID["bad-output"]?["damage"] as? String)?.contains("runs.output") == true)
        #expect(byID["good"]?["status"] as? String == "completed")

        // The intact run reads as written, and new work still runs.
        let good = try await cluster.cairn(["state", "good", "--json"])
        #expect(good.status == 0)
        #expect((good.object["state"] as? [String: Any])?["log"] as? [String] == ["n1", "n2", "n3"])
        let again = try await cluster.cairn(["submit", graph, "--wait"])
        #expect(again.status == 0, "\(again.stderr)")
    }
}
