import CairnTestSupport
import Foundation
import Testing

/// Every Cairn process as a user that is not root (`nobody`, through `setpriv`, on folders it
/// owns), the way a service account or the Docker image's `cairn` user runs them: no socket
/// option, file or folder may need a privilege. A coordinator with mutual TLS and the HTTP API,
/// two workers and the CLI run the example pipeline through its pause to the end, a Python node
/// reports the user it ran as, and curl reads the run over HTTPS.
@Suite(.serialized) struct UnprivilegedProcessTests {
    static let token = "unprivileged-token"

    static let who = """
        name: who
        state:
          uid: {}
        nodes:
          who: { run: exec, command: ["python3", "who.py"], serve: true }
        edges:
          - { from: START, to: who }
          - { from: who, to: END }
        """

    /// A served node with the node library and a few imports of the kind a user's node has.
    static let whoProgram = """
        import os, sqlite3, decimal, xml.etree.ElementTree
        import cairn

        @cairn.node
        def who(state, input, ctx):
            return {"uid": os.getuid()}

        if __name__ == "__main__":
            cairn.run()
        """

    @Test func aClusterOfUnprivilegedProcessesRunsGraphsOverMutualTLSAndHTTPS() async throws {
        let user = try ProcessUser.unprivileged()
        let dir = NSTemporaryDirectory() + "cairn-nobody-" + UUID().uuidString.prefix(8)
        let certs = dir + "/certs"
        try await TLSProcessTests.makeCerts(certs)
        let tls = ["CAIRN_TLS_CA": certs + "/ca.pem", "CAIRN_TLS_CERT": certs + "/client.pem", "CAIRN_TLS_KEY": certs + "/client.key"]
        var workerEnvironment = tls
        workerEnvironment["CAIRN_DEMO_DELAY"] = "0.01"
        let cluster = try await TestCluster.start(
            workers: 2, token: Self.token,
            coordinatorArgs: ["--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key",
                              "--tls-client-ca", certs + "/ca.pem", "--http", "127.0.0.1:0"],
            directory: dir, workerEnvironment: workerEnvironment, clientEnvironment: tls, user: user)
        defer { cluster.stop() }
        try await cluster.waitForLog("coordinator.log", containing: "tls=mutual")

        // They really run as the user: the coordinator and each worker.
        let expected = user?.uid ?? getuid()
        for process in [cluster.coordinator] + cluster.workers {
            let ids = try ProcessUser.ids(of: process.processIdentifier)
            #expect(ids.real == expected && ids.effective == expected && ids.effective != 0, "pid \(process.processIdentifier): \(ids)")
        }
        let workers = try await cluster.cairn(["workers", "--json"])
        #expect(workers.status == 0 && (workers.json as? [Any])?.count == 2, "\(workers.stderr) \(workers.stdout)")

        // The example pipeline (Python nodes importing the node library), through its pause.
        let video = TestCluster.repositoryRoot + "/scripts/examples/video/video.yaml"
        let paused = try await cluster.cairn(["submit", video, "--input", #"{"topic": "tides"}"#, "--run-id", "video", "--wait"])
        #expect(paused.status == 4 && paused.stdout.contains("node 'review' asks"), "\(paused.stdout) \(paused.stderr)")
        let done = try await cluster.cairn(["resume", "video", "--value", #"{"approved": true}"#, "--wait", "--json"])
        #expect(done.status == 0 && done.object["status"] as? String == "completed", "\(done.stdout) \(done.stderr)")
        #expect(done.object[path: "output.status"] as? String == "done", "\(done.stdout)")

        // A node's program runs as the worker's user too.
        let graph = try writeGraph(cluster, "who", Self.who)
        try Self.whoProgram.write(toFile: (graph as NSString).deletingLastPathComponent + "/who.py", atomically: true, encoding: .utf8)
        try user?.own(dir + "/graphs")
        let who = try await cluster.cairn(["submit", graph, "--run-id", "who", "--wait", "--json"])
        #expect(who.status == 0 && who.object[path: "output.uid"] as? Int == Int(expected), "\(who.stdout) \(who.stderr)")

        // The HTTP API over HTTPS with a client certificate, read by an unprivileged curl too.
        let port = try await HTTPAPIProcessTests.httpPort(cluster)
        let https = try await TestCluster.run("/usr/bin/curl", ["-sS", "--cacert", certs + "/ca.pem", "--cert", certs + "/client.pem",
                                                                "--key", certs + "/client.key", "-H", "Authorization: Bearer \(Self.token)",
                                                                "https://localhost:\(port)/api/runs/video"],
                                              environment: user?.environment(ProcessInfo.processInfo.environment, home: dir), user: user)
        #expect(https.status == 0 && https.stdout.contains("\"completed\""), "\(https.stderr) \(https.stdout)")

        // Everything the processes made (the store, the bundle caches) belongs to the user; the
        // test itself made only the logs, the certificates and the graph files.
        if let user {
            let made = try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.hasSuffix(".log") && $0 != "certs" && $0 != "graphs" }
            #expect(made.contains("cairn.db") && made.contains { $0.hasPrefix("bundles-") }, "\(made)")
            for name in made {
                let owner = try FileManager.default.attributesOfItem(atPath: dir + "/" + name)[.ownerAccountID] as? NSNumber
                #expect(owner?.uint32Value == user.uid, "\(name) is owned by \(String(describing: owner))")
            }
        }
    }
}
