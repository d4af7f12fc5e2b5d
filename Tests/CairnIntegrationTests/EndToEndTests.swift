import CairnProtocol
import CairnTestSupport
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// Real coordinator and worker processes on loopback, a real SQLite file (or a real PostgreSQL,
/// where a test takes `TestStore.available`), driven through the CLI.
@Suite(.serialized) struct EndToEndTests {
    @Test(arguments: TestStore.available)
    func theExamplePipelineCompletesOnThreeWorkers(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 3, workerEnvironment: ["CAIRN_DEMO_DELAY": "0.05"], store: store)
        defer { cluster.stop() }
        let graph = repositoryRoot + "/scripts/examples/video/video.yaml"
        let r = try await cluster.cairn(["submit", graph, "--input", #"{"topic": "tides"}"#, "--run-id", "video", "--wait"])
        // The review asks a person to approve the screenplay: the run pauses, showing it.
        #expect(r.status == 4, "submit --wait: \(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("node 'review' asks") && r.stdout.contains("Tides"), "\(r.stdout)")
        // Notes send it back to be rewritten (and reviewed again); an approval lets it go on.
        let notes = try await cluster.cairn(["resume", "video", "--value", #"{"notes": "more gulls"}"#, "--wait"])
        #expect(notes.status == 4 && notes.stdout.contains("more gulls"), "the rewritten draft takes the notes in: \(notes.stdout)")
        let approved = try await cluster.cairn(["resume", "video", "--value", #"{"approved": true}"#, "--wait"])
        #expect(approved.status == 0, "\(approved.stdout) \(approved.stderr)")
        #expect(approved.stdout.contains("completed after 9 steps"), "\(approved.stdout)")
        let runs = try await cluster.cairn(["list", "--json"])
        let run = try #require((runs.json as? [[String: Any]])?.first)
        let runID = try #require(run["run_id"] as? String)
        #expect(run["status"] as? String == "completed")
        #expect(run[path: "output.status"] as? String == "done")
        #expect((run[path: "output.assets"] as? [String: Any])?.count == 5)
        #expect((run[path: "output.shots"] as? [Any])?.count == 4)
        #expect(run[path: "output.video.assets"] as? Int == 5)
        #expect(abs((run["cost"] as? Double ?? 0) - 0.87) < 0.0001, "two screenplays, one of each of the rest")
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let checkpoints = try #require(history["checkpoints"] as? [[String: Any]])
        // initialize, screenplay, review (notes), screenplay, review (approved), assets, renders, shots, finalize
        let steps: [Int] = checkpoints.compactMap { $0["step"] as? Int }
        #expect(steps == [9, 8, 7, 6, 5, 4, 4, 3, 2, 2, 1, 0])
        let sources: [String] = checkpoints.compactMap { $0["source"] as? String }
        #expect(sources.filter { $0 == "resume" }.count == 2)
        #expect(checkpoints.last?["source"] as? String == "input")
        let renders = checkpoints.first { $0["step"] as? Int == 7 }?["tasks"] as? [[String: Any]] ?? []
        #expect(renders.count == 5)
        #expect(renders.allSatisfy { $0["node"] as? String == "render_asset" && $0["status"] as? String == "completed" })
        // The state at an earlier checkpoint is still there: after step 5 the screenplay is approved, no assets yet.
        let step5 = try #require(checkpoints.first { $0["step"] as? Int == 5 }?["checkpoint_id"] as? String)
        let state = try await cluster.cairn(["state", runID, "--checkpoint", step5, "--json"]).object
        #expect(state[path: "state.status"] as? String == "approved")
        #expect(state[path: "state.screenplay.revised_for"] as? String == "more gulls")
        #expect((state[path: "state.assets"] as? [String: Any])?.isEmpty == true)
        #expect(state["next"] as? [String] == ["generate_assets"])
    }

    @Test(arguments: TestStore.available)
    func aFiftyWayFanOutSpreadsOverWorkersAndJoins(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 3, slots: 4, store: store)
        defer { cluster.stop() }
        let items = (1...50).map(String.init).joined(separator: ", ")
        let graph = try writeGraph(cluster, "fan", """
            name: fan
            state:
              items: {}
              count: { reducer: sum }
              seen: { reducer: append }
              done: {}
            nodes:
              seed: { run: echo, writes: { items: [\(items)] } }
              spread: { run: map, over: items, to: work }
              work: { run: sleep, duration: 40ms, writes: { count: 1 } }
              total: { run: echo, writes: { done: true } }
            edges:
              - { from: START, to: seed }
              - { from: seed, to: spread }
              - { from: [work], to: total }
              - { from: total, to: END }
            """)
        let runID = try await cluster.submit(graph)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed")
        #expect(status[path: "output.count"] as? Int == 50)
        #expect(status[path: "output.done"] as? Bool == true)
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let checkpoints = history["checkpoints"] as? [[String: Any]] ?? []
        let work = checkpoints.flatMap { ($0["tasks"] as? [[String: Any]]) ?? [] }.filter { $0["node"] as? String == "work" }
        #expect(work.count == 50)
        let workers = Set(work.compactMap { $0["worker"] as? String })
        #expect(workers.count > 1, "all 50 tasks ran on \(workers)")
        #expect(checkpoints.count == 5)  // input, seed, spread, work×50, total
    }

    @Test func aFailingNodeIsRetriedPerItsPolicyThenFailsTheRun() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "flaky", """
            name: flaky
            state:
              out: {}
            nodes:
              shaky:
                run: flaky
                failures: 5
                message: the upstream API returned 503
                retry: { max_attempts: 3, initial_interval: 50ms, backoff: 2.0 }
              after: { run: echo, writes: { out: reached } }
            edges:
              - { from: START, to: shaky }
              - { from: shaky, to: after }
              - { from: after, to: END }
            """)
        let r = try await cluster.cairn(["submit", graph, "--wait"])
        #expect(r.status == 2, "exit status for a failed run: \(r.stdout)")
        let runID = try #require((try await cluster.cairn(["list", "--json"]).json as? [[String: Any]])?.first?["run_id"] as? String)
        let status = try await cluster.cairn(["status", runID]).stdout
        #expect(status.contains("failed"))
        #expect(status.contains("node 'shaky' failed after 3 attempts"))
        #expect(status.contains("the upstream API returned 503"))
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let attempts = ((history["checkpoints"] as? [[String: Any]]) ?? []).flatMap { ($0["tasks"] as? [[String: Any]]) ?? [] }
        #expect(attempts.map { $0["attempt"] as? Int } == [1, 2, 3])
        #expect(attempts.allSatisfy { $0["status"] as? String == "failed" })

        // The same node recovers when it fails fewer times than it may retry.
        let recovering = try writeGraph(cluster, "recovering", try String(contentsOfFile: graph, encoding: .utf8)
            .replacingOccurrences(of: "failures: 5", with: "failures: 2"))
        let ok = try await cluster.cairn(["submit", recovering, "--wait", "--json"])
        #expect(ok.status == 0, "\(ok.stdout)")
    }

    @Test func maxStepsStopsACycleWithAClearReason() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "cycle", """
            name: cycle
            state:
              laps: { reducer: sum }
              status: {}
            nodes:
              ping: { run: echo, writes: { laps: 1 } }
              pong: { run: echo, writes: { status: again } }
            edges:
              - { from: START, to: ping }
              - { from: ping, to: pong }
              - from: pong
                route: { on: status, cases: { stop: END }, default: ping }
            limits: { max_steps: 7 }
            """)
        let runID = try await cluster.submit(graph)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "failed")
        let error = status["error"] as? String ?? ""
        #expect(error.contains("step limit (limits.max_steps = 7)"), "\(error)")
        #expect(status["step"] as? Int == 7)
    }

    @Test func aMalformedGraphIsRefusedNamingTheProblemAndNothingElseIsDisturbed() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let bad = try writeGraph(cluster, "bad", """
            name: bad
            state:
              x: { reducer: concat }
            nodes:
              a: { run: echo, timeout: soon }
            edges:
              - { from: START, to: a }
              - { from: a, to: b }
            """)
        let r = try await cluster.cairn(["submit", bad])
        #expect(r.status == 1)
        #expect(r.stderr.contains("bad.yaml"))
        #expect(r.stderr.contains("unknown reducer 'concat'"))
        #expect(r.stderr.contains("nodes.a.timeout"))
        #expect(r.stderr.contains("unknown node 'b'"))
        let local = try await cluster.cairn(["graph", bad])
        #expect(local.status == 1 && local.stderr.contains("unknown node 'b'"))
        let badInput = try await cluster.cairn(["submit", try writeGraph(cluster, "ok", chainGraph(name: "ok", nodes: 2, sleep: 1)),
                                                "--input", #"{"nope": 1}"#])
        #expect(badInput.status == 1 && badInput.stderr.contains("'nope'"))
        // The coordinator still serves everyone.
        let good = try await cluster.cairn(["submit", try writeGraph(cluster, "good", chainGraph(name: "good", nodes: 3, sleep: 1)), "--wait"])
        #expect(good.status == 0, "\(good.stderr)")
    }

    @Test func aWrongTokenIsRefused() async throws {
        let cluster = try await TestCluster.start(workers: 1, token: "s3cret-token")
        defer { cluster.stop() }
        let wrong = try await cluster.cairn(["workers"], token: "guess")
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("wrong token"))
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_COORDINATOR"] = cluster.address
        env.removeValue(forKey: "CAIRN_TOKEN")
        let none = try await TestCluster.run(TestCluster.binDirectory + "/cairn", ["workers"], environment: env)
        #expect(none.status == 1 && none.stderr.contains("requires a token"))
        // A worker with the wrong token stops at once with the reason instead of retrying forever.
        env["CAIRN_TOKEN"] = "guess"
        let worker = try await TestCluster.run(TestCluster.binDirectory + "/cairn-worker",
                                               ["--coordinator", cluster.address, "--name", "intruder"], environment: env, timeout: 20)
        #expect(worker.status != 0)
        #expect(worker.stderr.contains("wrong token"))
        #expect(worker.stderr.contains("cairn-worker: ") && !worker.stderr.contains("Usage"), "\(worker.stderr)")
        let right = try await cluster.cairn(["workers", "--json"])
        #expect(right.status == 0 && (right.json as? [Any])?.count == 1)
    }

    /// Protected mode: without a token the coordinator will not listen where other machines can
    /// reach it (whoever reaches the port runs commands on every worker), unless told to.
    @Test func aReachableAddressWithoutATokenIsRefusedUnlessTheOperatorMeansIt() async throws {
        let dir = NSTemporaryDirectory() + "cairn-open-" + UUID().uuidString.prefix(6)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // a temporary folder: nothing to report
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "CAIRN_TOKEN")
        let refused = try await TestCluster.run(TestCluster.binDirectory + "/cairn-coordinator",
                                                ["--listen", "0.0.0.0:0", "--db", dir + "/c.db"], environment: env, timeout: 20)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("refusing to listen on 0.0.0.0 without a token"), "\(refused.stderr)")
        #expect(refused.stderr.contains("--insecure-no-auth") && !refused.stderr.contains("Usage"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/c.db"), "refused before the store was touched")

        let withToken = try await TestCluster.start(workers: 1, token: "s3cret-token", coordinatorArgs: ["--listen", "0.0.0.0:0"])
        defer { withToken.stop() }
        #expect(try await withToken.cairn(["stats", "--json"]).object["auth"] as? String == "token")

        let open = try await TestCluster.start(workers: 1, coordinatorArgs: ["--listen", "0.0.0.0:0", "--insecure-no-auth"])
        defer { open.stop() }
        #expect(open.log("coordinator.log").contains("without a token (--insecure-no-auth)"))
        #expect(try await open.cairn(["stats", "--json"]).object["auth"] as? String == "none")
        let shown = try await open.cairn(["workers"])
        #expect(shown.stdout.contains("auth: none — anyone who reaches"), "cairn workers shows it: \(shown.stdout)")
        #expect(try await withToken.cairn(["workers"]).stdout.contains("auth: token"))
        let runID = try await open.submit(try writeGraph(open, "open", chainGraph(name: "open", nodes: 2, sleep: 1)))
        #expect(try await open.waitForRun(runID)["status"] as? String == "completed")
    }

    @Test func garbageFramesDoNotDisturbARunInProgress() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "steady", chainGraph(name: "steady", nodes: 10, sleep: 80))
        let runID = try await cluster.submit(graph)

        func errorCode(_ bytes: [UInt8]) throws -> Cairn_V1_ErrorCode? {
            guard bytes.count >= 6, bytes[4] == MessageType.error.rawValue else { return nil }
            let len = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
            let frame = Frame(type: bytes[4], payload: ByteBuffer(bytes: bytes[6..<min(bytes.count, 4 + len)]))
            guard case .error(let e) = try WireCodec().decode(frame) else { return nil }
            return e.code
        }
        // Random bytes.
        var s = try RawSocket(port: cluster.port)
        s.send((0..<300).map { _ in UInt8.random(in: 0...255) })
        _ = s.readAll()
        s.close()
        // A frame header announcing 1 GiB: refused on the header alone.
        s = try RawSocket(port: cluster.port)
        s.send([0x40, 0, 0, 0, 1, 0])
        #expect(try errorCode(s.readAll()) == .errorFrameTooLarge)
        s.close()
        // A Hello whose payload is not protobuf.
        s = try RawSocket(port: cluster.port)
        s.send(RawSocket.frame(type: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF]))
        #expect(try errorCode(s.readAll()) == .errorProtocol)
        s.close()
        // A valid Hello from a future protocol version.
        var hello = Cairn_V1_Hello()
        hello.protocolVersion = 99
        hello.role = .client
        s = try RawSocket(port: cluster.port)
        s.send(RawSocket.frame(type: 1, payload: try hello.serializedBytes()))
        #expect(try errorCode(s.readAll()) == .errorVersion)
        s.close()
        // A good client that then sends an unknown message type.
        hello.protocolVersion = 1
        s = try RawSocket(port: cluster.port)
        s.send(RawSocket.frame(type: 1, payload: try hello.serializedBytes()) + RawSocket.frame(type: 200, payload: [1, 2, 3]))
        let reply = s.readAll()
        #expect(reply.count > 6 && reply[4] == MessageType.welcome.rawValue)
        let welcomeLength = reply.count >= 4 ? Int(reply[0]) << 24 | Int(reply[1]) << 16 | Int(reply[2]) << 8 | Int(reply[3]) : 0
        #expect(try errorCode(Array(reply.dropFirst(4 + welcomeLength))) == .errorProtocol)
        s.close()
        // A peer that connects and vanishes mid-frame.
        s = try RawSocket(port: cluster.port)
        s.send([0, 0, 0, 50, 1, 0, 1, 2])
        s.close()

        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed")
        #expect(status[path: "output.count"] as? Int == 10)
        #expect((status[path: "output.log"] as? [String]) == (1...10).map { "n\($0)" })
        #expect(cluster.log("coordinator.log").contains("protocol error"))
    }

    @Test func aSecondSubmitToAnActiveRunIDIsRefused() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "slow", chainGraph(name: "slow", nodes: 3, sleep: 300))
        _ = try await cluster.submit(graph, runID: "nightly-1")
        let again = try await cluster.cairn(["submit", graph, "--run-id", "nightly-1"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("run nightly-1 is still active"))
        let done = try await cluster.waitForRun("nightly-1")
        #expect(done["status"] as? String == "completed")
        let reuse = try await cluster.cairn(["submit", graph, "--run-id", "nightly-1"])
        #expect(reuse.status == 1 && reuse.stderr.contains("already taken"))
    }

    @Test func writesApplyInPlannedOrderWhicheverWorkerFinishesFirst() async throws {
        let cluster = try await TestCluster.start(workers: 3, slots: 4)
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "order", """
            name: order
            state:
              items: {}
              seen: { reducer: append }
              last: {}
            nodes:
              seed: { run: echo, writes: { items: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] } }
              spread: { run: map, over: items, to: work }
              work: { run: exec, command: ["python3", "work.py"] }
            edges:
              - { from: START, to: seed }
              - { from: seed, to: spread }
              - { from: [work], to: END }
            """)
        // Later items finish first: each task sleeps less the larger its input.
        try """
            import json, sys, time
            t = json.load(sys.stdin)
            time.sleep(0.02 * (13 - t["input"]))
            print(json.dumps({"writes": {"seen": t["input"], "last": t["input"]}}))
            """.write(toFile: (graph as NSString).deletingLastPathComponent + "/work.py", atomically: true, encoding: .utf8)
        let runID = try await cluster.submit(graph)
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed")
        #expect(status[path: "output.seen"] as? [Int] == Array(1...12))
        #expect(status[path: "output.last"] as? Int == 12)
    }

    @Test func aHugeFanOutDoesNotStarveASmallRun() async throws {
        let cluster = try await TestCluster.start(workers: 2, slots: 2)
        defer { cluster.stop() }
        let items = (1...400).map(String.init).joined(separator: ", ")
        let big = try writeGraph(cluster, "big", """
            name: big
            state:
              items: {}
              count: { reducer: sum }
            nodes:
              seed: { run: echo, writes: { items: [\(items)] } }
              spread: { run: map, over: items, to: work }
              work: { run: sleep, duration: 20ms, writes: { count: 1 } }
            edges:
              - { from: START, to: seed }
              - { from: seed, to: spread }
              - { from: [work], to: END }
            """)
        let bigID = try await cluster.submit(big)
        // Wait until the fan-out is under way, then submit a short chain.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let s = try await cluster.cairn(["status", bigID, "--json"]).object
            if s["step"] as? Int == 2 { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let small = try writeGraph(cluster, "small", chainGraph(name: "small", nodes: 3, sleep: 1))
        let smallID = try await cluster.submit(small)
        let smallDone = try await cluster.waitForRun(smallID)
        #expect(smallDone["status"] as? String == "completed")
        let bigNow = try await cluster.cairn(["status", bigID, "--json"]).object
        #expect(bigNow["status"] as? String == "running", "the small run finished while the 400-task step was still running")
        let bigDone = try await cluster.waitForRun(bigID, timeout: 60)
        #expect(bigDone[path: "output.count"] as? Int == 400)
    }

    @Test func aLongListReadsBackWholeAtEveryCheckpointThroughItsDeltaChain() async throws {
        // 700 appends: snapshots when the list has doubled (32, 64, …, 512), deltas between, so
        // a read walks chains of up to hundreds of deltas; every checkpoint must read back whole.
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let path = try writeGraph(cluster, "long", chainGraph(name: "long", nodes: 700, sleep: 0))
        let runID = try await cluster.submit(path)
        let done = try await cluster.waitForRun(runID, timeout: 120)
        #expect((done[path: "output.log"] as? [String])?.count == 700)
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let checkpoints = history["checkpoints"] as? [[String: Any]] ?? []
        for step in [1, 31, 32, 33, 64, 200, 511, 512, 513, 699] {
            guard let cp = checkpoints.first(where: { $0["step"] as? Int == step })?["checkpoint_id"] as? String else {
                Issue.record("no checkpoint at step \(step)"); continue
            }
            let state = try await cluster.cairn(["state", runID, "--checkpoint", cp, "--json"]).object
            let log = (state["state"] as? [String: Any])?["log"] as? [String]
            #expect(log == (1...step).map { "n\($0)" }, "step \(step): \(log?.count ?? -1) items")
        }
    }
}
