import Foundation

/// A real `redis-server` on a free loopback port, for tests. Stop it with `kill(signal:)` or
/// `stop()`; `restart()` brings it back on the same port (with its AOF, if `appendOnly`).
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    public let directory: String
    let extraArgs: [String]
    public private(set) var process: Process

    public var url: String { "redis://127.0.0.1:\(port)" }

    public static var available: Bool { FileManager.default.isExecutableFile(atPath: executable) }

    public static var executable: String {
        for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return "/usr/bin/redis-server"
    }

    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw ClusterError("no free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public init(appendOnly: Bool = false, extraArgs: [String] = [], directory: String? = nil) async throws {
        port = try Self.freePort()
        self.directory = directory ?? NSTemporaryDirectory() + "cairn-redis-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.extraArgs = ["--save", "", "--appendonly", appendOnly ? "yes" : "no"] + extraArgs
        process = Process()
        try await launch()
    }

    private func launch() async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--dir", directory, "--protected-mode", "no"] + extraArgs
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        try await waitUntilReady()
    }

    func waitUntilReady() async throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let r = try await TestCluster.run("/usr/bin/env", ["redis-cli", "-p", String(port), "PING"], timeout: 5)
            if r.stdout.contains("PONG") || r.stdout.contains("NOAUTH") { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw ClusterError("redis-server on port \(port) did not start")
    }

    /// Runs `redis-cli` against this server and returns its output.
    @discardableResult
    public func cli(_ args: String...) async throws -> String {
        try await TestCluster.run("/usr/bin/env", ["redis-cli", "-p", String(port)] + args, timeout: 10).stdout
    }

    public func kill(signal: Int32 = SIGKILL) {
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    public func restart() async throws {
        if process.isRunning { kill(signal: SIGKILL) }
        try await relaunch("redis", attempts: 20, every: .milliseconds(200)) { try await launch() }
    }

    public func stop() {
        if process.isRunning { kill(signal: SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Starts a killed server again: a start can fail while what the old process held (its port,
/// its backends, its files) is let go, so it is tried `attempts` times, `every` apart.
func relaunch(_ what: String, attempts: Int, every: Duration, _ launch: () async throws -> Void) async throws {
    var lastError: (any Error)?
    for _ in 0..<attempts {
        do { try await launch(); return } catch {
            lastError = error
            try await Task.sleep(for: every)
        }
    }
    throw lastError ?? ClusterError("\(what) did not restart")
}
