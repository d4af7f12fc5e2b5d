import CairnTestSupport
import Foundation
import Testing

/// TLS on the protocol's port with real certificates from `scripts/certs` (openssl): workers and
/// the CLI over TLS, mutual TLS, and each way of getting it wrong — plaintext to a TLS port, TLS
/// to a plaintext one, a wrong CA, an expired certificate, a missing client certificate — told
/// in one line on the side that can show it, while the coordinator goes on serving the others.
@Suite(.serialized) struct TLSProcessTests {
    static let token = "tls-test-token"

    static let graph = echoPair(name: "tls")

    static func makeCerts(_ dir: String) async throws {
        let script = TestCluster.repositoryRoot + "/scripts/certs"
        let made = try await TestCluster.run("/bin/bash", [script, dir])
        guard made.status == 0 else { throw ClusterError("scripts/certs failed: \(made.stderr)") }
        let expired = try await TestCluster.run("/bin/bash", [script, dir + "/expired", "--expired", "--ca", dir])
        guard expired.status == 0 else { throw ClusterError("scripts/certs --expired failed: \(expired.stderr)") }
    }

    @Test func workersAndClientsSpeakTLSAndEveryMistakeIsToldInOneLine() async throws {
        let dir = NSTemporaryDirectory() + "cairn-tls-" + UUID().uuidString.prefix(8)
        let certs = dir + "/certs"
        try await Self.makeCerts(certs)
        let cluster = try await TestCluster.start(workers: 0, token: Self.token,
                                                  coordinatorArgs: ["--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key",
                                                                    "--http", "127.0.0.1:0"],
                                                  directory: dir, clientEnvironment: ["CAIRN_TLS_CA": certs + "/ca.pem"])
        defer { cluster.stop() }
        try await cluster.waitForLog("coordinator.log", containing: "tls=on")
        cluster.clientEnvironment["CAIRN_TLS_CA"] = certs + "/ca.pem"
        cluster.startWorker(name: "w1", extraArgs: ["--tls-ca", certs + "/ca.pem"])
        try await cluster.waitForWorkers(1)
        let graph = try writeGraph(cluster, "tls", Self.graph)
        let run = try await cluster.cairn(["submit", graph, "--run-id", "t1", "--wait", "--json"])
        #expect(run.status == 0 && run.object["status"] as? String == "completed", "\(run.stderr)")

        // The HTTP API serves the same certificate: curl trusting the CA reads the run over HTTPS.
        let port = try await HTTPAPIProcessTests.httpPort(cluster)
        let https = try await TestCluster.run("/usr/bin/curl", ["-sS", "--cacert", certs + "/ca.pem", "-H", "Authorization: Bearer \(Self.token)",
                                                                "https://localhost:\(port)/api/runs/t1"])
        #expect(https.status == 0 && https.stdout.contains("\"completed\""), "\(https.stderr) \(https.stdout)")
        let untrusted = try await TestCluster.run("/usr/bin/curl", ["-sS", "https://localhost:\(port)/api/runs/t1"])
        #expect(untrusted.status != 0, "curl without the CA must refuse the certificate")

        // Plaintext to the TLS port: the client is told to use TLS; the coordinator logs why.
        cluster.clientEnvironment["CAIRN_TLS_CA"] = nil
        let plain = try await cluster.cairn(["list"])
        #expect(plain.status != 0 && plain.stderr.contains("TLS"), "\(plain.stderr)")
        #expect(plain.stderr.split(separator: "\n").count == 1, "one line: \(plain.stderr)")
        try await cluster.waitForLog("coordinator.log", containing: "spoke plaintext to the TLS port")
        // A CA that did not sign the coordinator's certificate.
        cluster.clientEnvironment["CAIRN_TLS_CA"] = certs + "/other-ca.pem"
        let wrongCA = try await cluster.cairn(["list"])
        #expect(wrongCA.status != 0 && wrongCA.stderr.contains("certificate was not accepted") && wrongCA.stderr.contains("other-ca.pem"),
                "\(wrongCA.stderr)")
        // A worker with the wrong CA stops, saying so, instead of retrying for ever.
        let lost = cluster.startWorker(name: "w-wrong-ca", extraArgs: ["--tls-ca", certs + "/other-ca.pem"])
        try await cluster.waitUntil("the worker with the wrong CA exits") { !lost.isRunning }
        #expect(cluster.log("worker-w-wrong-ca.log").contains("certificate was not accepted"), "\(cluster.log("worker-w-wrong-ca.log"))")

        // The coordinator went on serving the good ones.
        cluster.clientEnvironment["CAIRN_TLS_CA"] = certs + "/ca.pem"
        let again = try await cluster.cairn(["submit", graph, "--run-id", "t2", "--wait"])
        #expect(again.status == 0, "\(again.stderr)")

        // TLS to a plaintext coordinator.
        let plainCluster = try await TestCluster.start(workers: 0, token: Self.token)
        defer { plainCluster.stop() }
        plainCluster.clientEnvironment["CAIRN_TLS_CA"] = certs + "/ca.pem"
        #expect(try await plainCluster.cairn(["list"], token: Self.token).status != 0)
        let tlsToPlain = try await plainCluster.cairn(["list"])
        #expect(tlsToPlain.status != 0 && tlsToPlain.stderr.contains("did not answer TLS"), "\(tlsToPlain.stderr)")

        // An expired certificate: the coordinator will not start on one, and says so.
        let refused = try await TestCluster.run(TestCluster.binDirectory + "/cairn-coordinator",
                                                ["--listen", "127.0.0.1:0", "--db", dir + "/expired.db",
                                                 "--tls-cert", certs + "/expired/server.pem", "--tls-key", certs + "/expired/server.key"],
                                                timeout: 30)
        #expect(refused.status != 0 && refused.stderr.contains("expired 2020-01-02"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/expired.db"), "a refused start leaves no store behind")
    }

    @Test func mutualTLSAsksEveryPeerForACertificateSignedByItsCA() async throws {
        let dir = NSTemporaryDirectory() + "cairn-mtls-" + UUID().uuidString.prefix(8)
        let certs = dir + "/certs"
        try await Self.makeCerts(certs)
        let cluster = try await TestCluster.start(workers: 0, token: Self.token,
                                                  coordinatorArgs: ["--tls-cert", certs + "/server.pem", "--tls-key", certs + "/server.key",
                                                                    "--tls-client-ca", certs + "/ca.pem"],
                                                  directory: dir,
                                                  clientEnvironment: ["CAIRN_TLS_CA": certs + "/ca.pem", "CAIRN_TLS_CERT": certs + "/client.pem",
                                                                      "CAIRN_TLS_KEY": certs + "/client.key"])
        defer { cluster.stop() }
        try await cluster.waitForLog("coordinator.log", containing: "tls=mutual")
        cluster.clientEnvironment = ["CAIRN_TLS_CA": certs + "/ca.pem", "CAIRN_TLS_CERT": certs + "/client.pem", "CAIRN_TLS_KEY": certs + "/client.key"]
        cluster.startWorker(name: "w1", extraArgs: ["--tls-ca", certs + "/ca.pem", "--tls-cert", certs + "/client.pem", "--tls-key", certs + "/client.key"])
        try await cluster.waitForWorkers(1)
        let graph = try writeGraph(cluster, "mtls", Self.graph)
        let run = try await cluster.cairn(["submit", graph, "--run-id", "m1", "--wait"])
        #expect(run.status == 0, "\(run.stderr)")

        // No client certificate.
        cluster.clientEnvironment = ["CAIRN_TLS_CA": certs + "/ca.pem"]
        let bare = try await cluster.cairn(["list"])
        #expect(bare.status != 0 && bare.stderr.contains("requires a client certificate"), "\(bare.stderr)")
        try await cluster.waitForLog("coordinator.log", containing: "presented no client certificate")
        // An expired client certificate: the client itself says so before it connects …
        cluster.clientEnvironment = ["CAIRN_TLS_CA": certs + "/ca.pem", "CAIRN_TLS_CERT": certs + "/expired/client.pem",
                                     "CAIRN_TLS_KEY": certs + "/expired/client.key"]
        let expired = try await cluster.cairn(["list"])
        #expect(expired.status != 0 && expired.stderr.contains("this client's certificate expired 2020-01-02"), "\(expired.stderr)")
        // … and a peer that presents one anyway (openssl) is refused by the coordinator, which logs why.
        _ = try await TestCluster.run("/usr/bin/openssl", ["s_client", "-connect", cluster.address, "-CAfile", certs + "/ca.pem",
                                                           "-cert", certs + "/expired/client.pem", "-key", certs + "/expired/client.key"],
                                      timeout: 30)
        try await cluster.waitForLog("coordinator.log", containing: "client certificate was not accepted")
        // A client certificate from another CA: made by openssl with a throwaway CA.
        let other = dir + "/other"
        let made = try await TestCluster.run("/bin/bash", [TestCluster.repositoryRoot + "/scripts/certs", other])
        #expect(made.status == 0)
        cluster.clientEnvironment = ["CAIRN_TLS_CA": certs + "/ca.pem", "CAIRN_TLS_CERT": other + "/client.pem", "CAIRN_TLS_KEY": other + "/client.key"]
        let stranger = try await cluster.cairn(["list"])
        #expect(stranger.status != 0 && stranger.stderr.contains("refused this client's certificate"), "\(stranger.stderr)")

        // Still serving the good ones.
        cluster.clientEnvironment = ["CAIRN_TLS_CA": certs + "/ca.pem", "CAIRN_TLS_CERT": certs + "/client.pem", "CAIRN_TLS_KEY": certs + "/client.key"]
        let again = try await cluster.cairn(["submit", graph, "--run-id", "m2", "--wait"])
        #expect(again.status == 0, "\(again.stderr)")
    }
}
