import CairnProtocol
import CairnTestSupport
import Foundation
import NIOCore
import SwiftProtobuf
import Testing

/// Strangers on the port: a thousand connections that never say Hello are closed after the
/// handshake timeout, a Hello announced too large is refused on its header, a frame trickled a
/// byte at a time is cut off, and through all of it a run goes on, clients are served, and the
/// coordinator's memory comes back to where it was.
@Suite(.serialized) struct NetworkAbuseTests {
    static let token = "abuse-test-token"

    /// The coordinator's resident memory, in bytes.
    static func rss(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw ClusterError("no VmRSS in /proc/\(pid)/status")
        }
        return kb * 1024
    }

    /// What has arrived on `fd` (without waiting), and whether the peer has closed it.
    static func drain(_ fd: Int32, into out: inout [UInt8]) -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, Int32(MSG_DONTWAIT)) }
            if n > 0 { out.append(contentsOf: buf[0..<n]); continue }
            return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        }
    }

    /// The `Error` frame's message at the start of `bytes`, skipping a `Welcome` before it.
    static func errorMessage(_ bytes: [UInt8]) -> (Cairn_V1_ErrorCode, String)? {
        var rest = bytes[...]
        while rest.count >= 6 {
            let len = Int(rest[rest.startIndex]) << 24 | Int(rest[rest.startIndex + 1]) << 16 | Int(rest[rest.startIndex + 2]) << 8 | Int(rest[rest.startIndex + 3])
            guard rest.count >= 4 + len else { return nil }
            let frame = Frame(type: rest[rest.startIndex + 4], payload: ByteBuffer(bytes: rest.dropFirst(6).prefix(len - 2)))
            if case .error(let e)? = try? WireCodec().decode(frame) { return (e.code, e.message) }
            rest = rest.dropFirst(4 + len)
        }
        return nil
    }

    @Test func strangersAreCutOffAndTheCoordinatorKeepsServingInBoundedMemory() async throws {
        let cluster = try await TestCluster.start(workers: 1, token: Self.token,
                                                  coordinatorArgs: ["--handshake-timeout", "2s", "--frame-timeout", "3s"])
        defer { cluster.stop() }
        let pid = cluster.coordinator.processIdentifier
        let graph = try writeGraph(cluster, "steady", chainGraph(name: "steady", nodes: 20, sleep: 150))
        let runID = try await cluster.submit(graph)
        let before = try Self.rss(pid)

        // A thousand connections that say nothing.
        var idle: [RawSocket] = []
        for _ in 0..<1000 { idle.append(try RawSocket(port: cluster.port)) }
        defer { for s in idle { s.close() } }
        let opened = Date()

        // A first frame announcing 16 MiB: a Hello is at most 64 KiB, refused on the header.
        let big = try RawSocket(port: cluster.port)
        defer { big.close() }
        big.send([0x01, 0, 0, 0])
        let refused = Self.errorMessage(big.readAll())
        #expect(refused?.0 == .errorFrameTooLarge && refused?.1.contains("a Hello is at most 65536 bytes") == true, "\(String(describing: refused))")

        // An authenticated client that announces 8 MiB and trickles it a byte every 100 ms.
        var hello = Cairn_V1_Hello()
        hello.protocolVersion = cairnProtocolVersion
        hello.role = .client
        hello.token = Self.token
        let trickler = try RawSocket(port: cluster.port)
        defer { trickler.close() }
        trickler.send(RawSocket.frame(type: MessageType.hello.rawValue, payload: try hello.serializedBytes()) + [0x00, 0x80, 0, 0, MessageType.clientRequest.rawValue, 0])
        let trickleStart = Date()
        let dripping = Task.detached {
            while !Task.isCancelled {
                trickler.send([0x2A])
                try? await Task.sleep(nanoseconds: 100_000_000)
            }
        }
        defer { dripping.cancel() }

        // Meanwhile clients are served as usual.
        let listed = try await cluster.cairn(["list", "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        let during = try Self.rss(pid)

        var trickled: [UInt8] = []
        try await cluster.waitUntil("the trickler cut off", timeout: 15) { Self.drain(trickler.fd, into: &trickled) }
        let trickleCut = Date().timeIntervalSince(trickleStart)
        let cut = Self.errorMessage(trickled)
        #expect(cut?.0 == .errorProtocol && cut?.1.contains("still incomplete") == true, "\(String(describing: cut))")
        #expect(trickleCut >= 2.9 && trickleCut < 8, "cut after \(trickleCut)s")

        var received = [[UInt8]](repeating: [], count: idle.count)
        var closed = Set<Int>()
        try await cluster.waitUntil("all idle connections closed", timeout: 30) {
            for (i, s) in idle.enumerated() where !closed.contains(i) {
                if Self.drain(s.fd, into: &received[i]) { closed.insert(i) }
            }
            return closed.count == idle.count
        }
        let idleCut = Date().timeIntervalSince(opened)
        #expect(idleCut >= 1.9, "closed before the handshake timeout: \(idleCut)s")
        let told = received.filter { Self.errorMessage($0)?.1 == "no Hello within 2.0s of connecting" }.count
        #expect(told == idle.count, "\(told) of \(idle.count) were told why")

        // The run went on undisturbed, and a new client is served.
        let status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "completed")
        #expect((status[path: "output.log"] as? [String]) == (1...20).map { "n\($0)" })
        #expect(try await cluster.cairn(["workers", "--json"]).status == 0)
        let after = try Self.rss(pid)
        print("coordinator RSS: \(before >> 20) MiB before, \(during >> 20) MiB with 1,000 idle connections and a trickler, \(after >> 20) MiB after; idle ones closed \(String(format: "%.1f", idleCut))s after opening, the trickler after \(String(format: "%.1f", trickleCut))s")
        #expect(during - before < 64 << 20, "\(before) → \(during)")
        #expect(after - before < 64 << 20, "\(before) → \(after)")
    }
}
