import CairnProtocol
import CairnTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

/// A real `cairn-worker` process against a scripted coordinator on loopback, for moments a real
/// coordinator does not produce on demand.
@Suite(.serialized) struct WorkerConnectionTests {
    /// The coordinator goes away while the worker waits for a task's bundle: the wait fails at
    /// once, the session ends, and the worker connects again (before, the wait hung the session).
    @Test func losingTheCoordinatorDuringABundleFetchEndsTheWaitAtOnce() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "127.0.0.1", port: 0) { ch in FramedChannel.configure(ch, maxFrameSize: 1 << 20) }
        let port = try #require(server.channel.localAddress?.port)
        let dir = NSTemporaryDirectory() + "cairn-fake-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let worker = Process()
        worker.executableURL = URL(fileURLWithPath: TestCluster.binDirectory + "/cairn-worker")
        worker.arguments = ["--coordinator", "127.0.0.1:\(port)", "--name", "w", "--cache-dir", dir + "/cache", "--log-level", "info"]
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "CAIRN_TOKEN")
        worker.environment = env
        let log = dir + "/worker.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        worker.standardError = FileHandle(forWritingAtPath: log)
        worker.standardOutput = FileHandle.nullDevice
        try worker.run()
        defer {
            if worker.isRunning { kill(worker.processIdentifier, SIGKILL) }
            worker.waitUntilExit()
            try? FileManager.default.removeItem(atPath: dir)
        }

        let codec = WireCodec()
        var bundleRequested: ContinuousClock.Instant?
        var reconnected: ContinuousClock.Instant?
        // The deadline: closing the listener ends `connections`, and the test fails on its #require.
        let watchdog = Task {
            try await Task.sleep(nanoseconds: 20_000_000_000)
            server.channel.close(promise: nil)
        }
        defer { watchdog.cancel() }
        try await server.executeThenClose { inbound in
            var connections = inbound.makeAsyncIterator()
            // First session: welcome, one task with a bundle, then hang up once it asks for the bundle.
            let first = try #require(try await connections.next())
            try await first.executeThenClose { frames, outbound in
                var it = frames.makeAsyncIterator()
                guard case .hello(let hello)? = try await it.next().map(codec.decode) else { Issue.record("no hello"); return }
                #expect(hello.role == .worker)
                var welcome = Cairn_V1_Welcome()
                welcome.protocolVersion = cairnProtocolVersion
                welcome.workerID = "w-1"
                welcome.epoch = 1
                welcome.heartbeatIntervalMs = 1000
                try await outbound.send(.welcome(welcome), codec: codec)
                var a = Cairn_V1_TaskAssignment()
                a.taskID = "t1"; a.lease = "1.1"; a.runID = "r"; a.node = "n"; a.kind = "sleep"; a.attempt = 1
                a.configJson = Data(#"{"duration": "1ms"}"#.utf8)
                a.stateJson = Data("{}".utf8)
                a.bundleHash = String(repeating: "ab", count: 32)
                try await outbound.send(.taskAssignment(a), codec: codec)
                while let frame = try await it.next() {
                    if case .bundleRequest(let r) = try codec.decode(frame) {
                        #expect(r.hash == a.bundleHash)
                        bundleRequested = .now
                        break
                    }
                }
            }
            // The worker comes back without waiting for anything that will never arrive.
            let second = try #require(try await connections.next())
            reconnected = .now
            try await second.executeThenClose { frames, _ in
                var it = frames.makeAsyncIterator()
                guard case .hello? = try await it.next().map(codec.decode) else { Issue.record("no hello on reconnect"); return }
            }
        }
        let asked = try #require(bundleRequested)
        let back = try #require(reconnected)
        #expect(back - asked < .seconds(5), "reconnected \(back - asked) after the bundle request")
        try await group.shutdownGracefully()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("lost the coordinator connection"))
    }
}
