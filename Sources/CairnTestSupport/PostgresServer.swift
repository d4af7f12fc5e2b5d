import Foundation

/// A throwaway PostgreSQL server for tests: `initdb` into a temporary folder, `postgres` on a free
/// port of 127.0.0.1 with trust authentication, stopped (and its folder removed) by `stop()`.
///
/// PostgreSQL refuses to run as root. When the tests run as root (as CI does), the server runs as
/// the `postgres` system user that Debian's package creates, through `setpriv` (which execs, so
/// `process` is the postmaster itself and `kill(signal:)` reaches it), on a folder that user owns.
///
/// `initdb` runs once per machine and server version, into a template folder in the temporary
/// directory that later test runs reuse (about 40 MB); each server copies it.
public final class PostgresServer: @unchecked Sendable {
    public let port: Int
    public let directory: String
    public private(set) var process: Process
    private let fsync: Bool

    /// Where the server binaries are: CAIRN_PG_BIN, else the newest `/usr/lib/postgresql/N/bin`.
    public static var binDirectory: String? {
        if let d = ProcessInfo.processInfo.environment["CAIRN_PG_BIN"] { return d }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        for v in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(v)/bin/postgres") {
            return "\(root)/\(v)/bin"
        }
        return nil
    }

    /// Whether a server can be started here: the binaries exist and, as root, a `postgres` user does.
    public static var available: Bool { unavailableReason == nil }

    public static var unavailableReason: String? {
        guard binDirectory != nil else { return "no PostgreSQL server binaries (apt install postgresql)" }
        if getuid() == 0 && getpwnam("postgres") == nil { return "running as root and there is no postgres user" }
        return nil
    }

    /// The URL of a database on this server (`createDatabase` makes one).
    public func url(database: String = "cairn") -> String { "postgres://postgres@127.0.0.1:\(port)/\(database)" }

    /// Starts a server with a `cairn` database. `fsync: false` (the default) is safe against the
    /// process kills tests make: the WAL still reaches the kernel before a commit returns.
    public init(fsync: Bool = false) async throws {
        guard let bin = Self.binDirectory else { throw ClusterError(Self.unavailableReason ?? "no PostgreSQL") }
        port = try RedisServer.freePort()
        directory = NSTemporaryDirectory() + "cairn-pg-" + UUID().uuidString.prefix(8)
        self.fsync = fsync
        process = Process()
        let template = try await Self.template(bin: bin)
        let copy = try await TestCluster.run("/bin/cp", ["-a", template, directory], timeout: 60)
        guard copy.status == 0 else { throw ClusterError("copying the PostgreSQL template failed: \(copy.stderr)") }
        try await launch()
        try await createDatabase("cairn")
    }

    private static let templateLock = NSLock()
    nonisolated(unsafe) private static var templatePath: String?

    private static func template(bin: String) async throws -> String {
        if let t = templateLock.withLock({ templatePath }) { return t }
        // One per server version and user, made whole (initdb elsewhere, then renamed into place).
        let version = (bin as NSString).deletingLastPathComponent.split(separator: "/").last.map(String.init) ?? "pg"
        let final = NSTemporaryDirectory() + "cairn-pg-template-\(version)-uid\(getuid())"
        if !FileManager.default.fileExists(atPath: final + "/PG_VERSION") {
            let dir = final + ".making-" + UUID().uuidString.prefix(6)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try giveToPostgres(dir)
            let r = try await TestCluster.run(asPostgres(bin + "/initdb").0, asPostgres(bin + "/initdb").1 + [
                "-D", dir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
            ], timeout: 120)
            guard r.status == 0 else {
                try? FileManager.default.removeItem(atPath: dir)
                throw ClusterError("initdb failed (\(r.status)): \(r.stderr)")
            }
            if rename(dir, final) != 0 { try? FileManager.default.removeItem(atPath: dir) }  // another made it first
        }
        return templateLock.withLock {
            templatePath = templatePath ?? final
            return templatePath!
        }
    }

    /// The command line that runs `path` as the server's user: itself, or through setpriv as root.
    static func asPostgres(_ path: String) -> (String, [String]) {
        guard getuid() == 0, let pw = getpwnam("postgres") else { return (path, []) }
        return ("/usr/bin/setpriv", ["--reuid=\(pw.pointee.pw_uid)", "--regid=\(pw.pointee.pw_gid)", "--init-groups", "--", path])
    }

    static func giveToPostgres(_ path: String) throws {
        guard getuid() == 0, let pw = getpwnam("postgres") else { return }
        guard chown(path, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else { throw ClusterError("chown \(path) failed: errno \(errno)") }
        chmod(path, 0o700)
    }

    private func launch() async throws {
        guard let bin = Self.binDirectory else { throw ClusterError("no PostgreSQL") }
        let (exe, prefix) = Self.asPostgres(bin + "/postgres")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = prefix + ["-D", directory, "-p", String(port), "-k", directory, "-c", "listen_addresses=127.0.0.1",
                                "-c", "fsync=\(fsync ? "on" : "off")", "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
        p.standardOutput = FileHandle.nullDevice
        FileManager.default.createFile(atPath: directory + ".log", contents: nil)
        p.standardError = FileHandle(forWritingAtPath: directory + ".log")
        try p.run()
        process = p
        try await waitUntilReady()
    }

    private func waitUntilReady() async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if !process.isRunning {
                let log = (try? String(contentsOfFile: directory + ".log", encoding: .utf8)) ?? ""
                throw ClusterError("postgres on port \(port) exited: \(log.suffix(1500))")
            }
            let r = try await TestCluster.run("/usr/bin/env", ["pg_isready", "-q", "-h", "127.0.0.1", "-p", String(port)], timeout: 10)
            if r.status == 0 { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw ClusterError("postgres on port \(port) did not start")
    }

    /// Runs SQL through `psql` and returns its unaligned output; throws on an SQL error.
    @discardableResult
    public func psql(_ sql: String, database: String = "cairn") async throws -> String {
        let r = try await TestCluster.run("/usr/bin/env", ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                                                           "-p", String(port), "-U", "postgres", "-d", database, "-c", sql], timeout: 60)
        guard r.status == 0 else { throw ClusterError("psql failed: \(r.stderr)") }
        return r.stdout
    }

    /// Creates an empty database and returns its URL.
    @discardableResult
    public func createDatabase(_ name: String) async throws -> String {
        try await psql("CREATE DATABASE \"\(name)\"", database: "postgres")
        return url(database: name)
    }

    /// A new empty database with a unique name.
    public func freshDatabase() async throws -> String {
        try await createDatabase("t_" + UUID().uuidString.prefix(8).lowercased())
    }

    public func kill(signal: Int32 = SIGKILL) {
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    /// Starts the server again on the same port and folder (after `kill`). Backends of a killed
    /// postmaster exit on their own within moments; until they do, a start fails and is retried.
    public func restart() async throws {
        if process.isRunning { kill(signal: SIGKILL) }
        try await relaunch("postgres", attempts: 30, every: .milliseconds(300)) { try await launch() }
    }

    public func stop() {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGQUIT)  // immediate shutdown, backends included
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
        try? FileManager.default.removeItem(atPath: directory + ".log")
    }
}
