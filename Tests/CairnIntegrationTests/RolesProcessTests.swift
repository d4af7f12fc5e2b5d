import CairnCore
import CairnTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// Tokens with roles on a real coordinator, workers and CLI, over TCP and HTTP: a worker token
/// cannot submit, a submitter token cannot register as a worker, a reader only reads, and the
/// token file is re-read on SIGHUP (rotation with no restart; a bad file changes nothing). No
/// log line or message carries a token.
@Suite(.serialized) struct RolesProcessTests {
    static let worker = "wrk-Jq8ZmT2vYb"
    static let submitter = "sub-Lr5XkP9cWe"
    static let reader = "rdr-Hn3GtQ7sAd"
    static let admin = "adm-Vw6BfN1uKo"
    static let newSubmitter = "sub2-Cy4DpR8zMi"
    static let all = [worker, submitter, reader, admin, newSubmitter]

    static let graph = echoPair(name: "roles")

    static func tokenFile(_ lines: [String]) -> String { lines.joined(separator: "\n") + "\n" }

    @Test func eachRoleDoesWhatItMayAndTheFileIsReReadOnSIGHUP() async throws {
        let dir = NSTemporaryDirectory() + "cairn-roles-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokens = dir + "/cairn.tokens"
        try Self.tokenFile(["# role token", "worker \(Self.worker)", "submitter \(Self.submitter)",
                            "reader \(Self.reader)", "admin \(Self.admin)"]).write(toFile: tokens, atomically: true, encoding: .utf8)
        let graphPath = dir + "/roles.yaml"
        try Self.graph.write(toFile: graphPath, atomically: true, encoding: .utf8)
        let cluster = try await TestCluster.start(workers: 0, token: Self.admin,
                                                  coordinatorArgs: ["--token-file", tokens, "--http", "127.0.0.1:0", "--heartbeat-interval", "200ms"],
                                                  directory: dir)
        defer { cluster.stop() }
        let port = try await HTTPAPIProcessTests.httpPort(cluster)
        try await cluster.waitForLog("coordinator.log", containing: "4 tokens")
        cluster.startWorker(name: "w1", token: Self.worker)
        try await cluster.waitForWorkers(1)

        // A submitter submits and the worker runs it.
        let submitted = try await cluster.cairn(["submit", graphPath, "--run-id", "r1", "--wait", "--json"], token: Self.submitter)
        #expect(submitted.status == 0 && submitted.object["status"] as? String == "completed", "\(submitted.stderr) \(submitted.stdout)")

        // A worker token is no client.
        let asWorker = try await cluster.cairn(["submit", graphPath, "--run-id", "r2"], token: Self.worker)
        #expect(asWorker.status != 0 && asWorker.stderr.contains("may only register as a worker"), "\(asWorker.stderr)")
        // A submitter token is no worker: it is refused and exits, saying why.
        let impostor = cluster.startWorker(name: "impostor", token: Self.submitter)
        try await cluster.waitUntil("the impostor worker exits") { !impostor.isRunning }
        #expect(impostor.terminationStatus != 0)
        #expect(cluster.log("worker-impostor.log").contains("may not register as a worker"), "\(cluster.log("worker-impostor.log"))")
        let workers = try await cluster.cairn(["workers", "--json"], token: Self.reader)
        #expect((workers.json as? [Any])?.count == 1, "\(workers.stdout)")

        // A reader reads, and is refused what changes runs, with the roles that may.
        let listed = try await cluster.cairn(["list", "--json"], token: Self.reader)
        #expect(listed.status == 0 && listed.stdout.contains("r1"), "\(listed.stderr)")
        let readerSubmit = try await cluster.cairn(["submit", graphPath, "--run-id", "r3"], token: Self.reader)
        #expect(readerSubmit.status != 0 && readerSubmit.stderr.contains("may not submit a run: that takes a submitter or admin token"),
                "\(readerSubmit.stderr)")
        let readerCancel = try await cluster.cairn(["cancel", "r1"], token: Self.reader)
        #expect(readerCancel.status != 0 && readerCancel.stderr.contains("may not cancel a run"), "\(readerCancel.stderr)")
        // Deleting runs takes an admin; a dry run only reads.
        let submitterCleanup = try await cluster.cairn(["cleanup", "--older-than", "0s"], token: Self.submitter)
        #expect(submitterCleanup.status != 0 && submitterCleanup.stderr.contains("may not delete runs: that takes an admin token"), "\(submitterCleanup.stderr)")
        let dryRun = try await cluster.cairn(["cleanup", "--older-than", "0s", "--dry-run"], token: Self.reader)
        #expect(dryRun.status == 0, "\(dryRun.stderr)")

        // The HTTP API asks the same door: 401 for an unknown token, 403 for a role that may not.
        let hr = try await HTTPAPIProcessTests.call(port, "GET", "/api/runs", token: Self.reader)
        #expect(hr.status == 200, "\(hr.text)")
        let hs = try await HTTPAPIProcessTests.call(port, "POST", "/api/runs", body: ["graph": Self.graph, "run_id": "h1"], token: Self.reader)
        #expect(hs.status == 403 && hs.object["code"] as? String == "permission_denied", "\(hs.status) \(hs.text)")
        let hw = try await HTTPAPIProcessTests.call(port, "GET", "/api/runs", token: Self.worker)
        #expect(hw.status == 403, "\(hw.text)")
        let hwe = try await HTTPAPIProcessTests.call(port, "GET", "/api/runs/r1/events", token: Self.worker)
        #expect(hwe.status == 403, "\(hwe.text)")
        let hbad = try await HTTPAPIProcessTests.call(port, "GET", "/api/runs", token: "nope")
        #expect(hbad.status == 401, "\(hbad.text)")
        let hsub = try await HTTPAPIProcessTests.call(port, "POST", "/api/runs", body: ["graph": Self.graph, "run_id": "h1"], token: Self.submitter)
        #expect(hsub.status == 201, "\(hsub.text)")

        // Rotation: the new submitter token is added and the old one removed, with a SIGHUP.
        try Self.tokenFile(["worker \(Self.worker)", "submitter \(Self.newSubmitter)", "reader \(Self.reader)", "admin \(Self.admin)"])
            .write(toFile: tokens, atomically: true, encoding: .utf8)
        kill(cluster.coordinator.processIdentifier, SIGHUP)
        try await cluster.waitForLog("coordinator.log", containing: "SIGHUP: re-read the token file")
        let old = try await cluster.cairn(["list"], token: Self.submitter)
        #expect(old.status != 0 && old.stderr.contains("wrong token"), "\(old.stderr)")
        let rotated = try await cluster.cairn(["submit", graphPath, "--run-id", "r4", "--wait"], token: Self.newSubmitter)
        #expect(rotated.status == 0, "\(rotated.stderr)")
        #expect(try await HTTPAPIProcessTests.call(port, "GET", "/api/runs", token: Self.submitter).status == 401)

        // A file that does not parse changes nothing, and says why.
        try "worker \(Self.worker)\nsubmiter \(Self.newSubmitter)\n".write(toFile: tokens, atomically: true, encoding: .utf8)
        kill(cluster.coordinator.processIdentifier, SIGHUP)
        try await cluster.waitForLog("coordinator.log", containing: "the tokens stay as they were")
        let still = try await cluster.cairn(["list"], token: Self.reader)
        #expect(still.status == 0, "\(still.stderr)")

        // The worker's token removed: its open session ends at its next heartbeat, and it exits.
        try Self.tokenFile(["submitter \(Self.newSubmitter)", "reader \(Self.reader)", "admin \(Self.admin)"])
            .write(toFile: tokens, atomically: true, encoding: .utf8)
        kill(cluster.coordinator.processIdentifier, SIGHUP)
        let w1 = try #require(cluster.worker(named: "w1"))
        try await cluster.waitUntil("the worker whose token was removed exits") { !w1.isRunning }
        #expect(cluster.log("coordinator.log").contains("closing a worker whose token was removed"))
        let none = try await cluster.cairn(["workers", "--json"], token: Self.reader)
        #expect((none.json as? [Any])?.count == 0, "\(none.stdout)")
        #expect(cluster.coordinator.isRunning, "SIGHUP never ends the coordinator")

        // No token reached a log.
        for name in ["coordinator.log", "worker-w1.log", "worker-impostor.log"] {
            let text = cluster.log(name)
            for t in Self.all { #expect(!text.contains(t), "\(name) holds a token") }
        }
    }
}
