import Foundation

/// Where a test cluster's coordinator keeps its store: a SQLite file in the cluster's folder, or a
/// throwaway PostgreSQL server the cluster starts and stops with itself.
public enum TestStore: String, Sendable, CaseIterable {
    case sqlite, postgres

    /// The stores this machine can run: PostgreSQL where its server binaries are (scripts/setup
    /// installs them), so a test given these runs on both wherever it can.
    public static var available: [TestStore] { PostgresServer.available ? [.sqlite, .postgres] : [.sqlite] }
}

/// A real Cairn cluster for integration tests: a `cairn-coordinator` process on a free loopback
/// port with its own SQLite file (or its own PostgreSQL), N `cairn-worker` processes, and the
/// `cairn` CLI to talk to it.
public final class TestCluster: @unchecked Sendable {
    public let directory: String
    public let port: Int
    public let token: String?
    /// Who every process of the cluster runs as: `nil` for the test runner itself.
    public let user: ProcessUser?
    public private(set) var coordinator: Process
    /// The PostgreSQL server the store is in (`store: .postgres`), stopped with the cluster.
    public let postgres: PostgresServer?
    /// `--db` for the coordinator, given again at every restart.
    let storeArgs: [String]
    public private(set) var workers: [Process] = []
    private var workersByName: [String: Process] = [:]
    private let lock = NSLock()
    /// Extra environment for worker processes (e.g. CAIRN_DEMO_DELAY for the example's programs).
    public var workerEnvironment: [String: String] = [:]
    /// Extra environment for `cairn` commands (e.g. CAIRN_TLS_CA).
    public var clientEnvironment: [String: String] = [:]

    /// Where the built executables are: CAIRN_BIN_DIR, else this package's `.build/debug`.
    public static var binDirectory: String {
        if let d = ProcessInfo.processInfo.environment["CAIRN_BIN_DIR"] { return d }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }

    /// This package's folder.
    public static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Where workers and the CLI reach the coordinator: with standbys, every coordinator's address,
    /// comma-separated (the first coordinator's first).
    public var address: String { (["127.0.0.1:\(port)"] + standbyPorts.map { "127.0.0.1:\($0)" }).joined(separator: ",") }
    /// Ports of the standby coordinators (`standbys:`), on the same store.
    public private(set) var standbyPorts: [Int] = []
    /// The standby coordinators' processes, in the order of `standbyPorts`.
    public private(set) var standbys: [Process] = []
    public var databasePath: String { directory + "/cairn.db" }

    /// Starts a coordinator (port 0, so tests never collide) and `workers` workers.
    public static func start(workers: Int = 3, slots: Int = 4, token: String? = nil,
                             coordinatorArgs: [String] = [], directory: String? = nil,
                             workerEnvironment: [String: String] = [:],
                             clientEnvironment: [String: String] = [:],
                             user: ProcessUser? = nil, store: TestStore = .sqlite, standbys: Int = 0,
                             standbyArgs: ((Int) -> [String])? = nil) async throws -> TestCluster {
        let dir = directory ?? NSTemporaryDirectory() + "cairn-test-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try user?.own(dir)
        let postgres = store == .postgres ? try await PostgresServer() : nil
        let storeArgs = postgres.map { ["--db", $0.url()] } ?? []
        let process: Process, port: Int
        do {
            (process, port) = try await startCoordinator(directory: dir, port: 0, token: token, args: storeArgs + coordinatorArgs, user: user)
        } catch {
            postgres?.stop()
            throw error
        }
        let cluster = TestCluster(directory: dir, port: port, token: token, user: user, coordinator: process,
                                  postgres: postgres, storeArgs: storeArgs)
        cluster.workerEnvironment = workerEnvironment
        cluster.clientEnvironment = clientEnvironment
        for i in 0..<standbys {
            do {
                try cluster.startStandby(index: i + 1, port: try RedisServer.freePort(), args: standbyArgs?(i + 1) ?? coordinatorArgs)
            } catch {
                cluster.stop(removeFiles: false)
                throw error
            }
        }
        for i in 0..<workers { cluster.startWorker(name: "w\(i + 1)", slots: slots) }
        do {
            try await cluster.waitForWorkers(workers)
        } catch {
            // A cluster that did not come up leaves no process behind; its logs stay to be read.
            cluster.stop(removeFiles: false)
            throw error
        }
        return cluster
    }

    init(directory: String, port: Int, token: String?, user: ProcessUser?, coordinator: Process,
         postgres: PostgresServer? = nil, storeArgs: [String] = []) {
        self.postgres = postgres
        self.storeArgs = storeArgs
        self.directory = directory
        self.port = port
        self.token = token
        self.user = user
        self.coordinator = coordinator
    }

    static func startCoordinator(directory: String, port: Int, token: String?, args: [String],
                                 user: ProcessUser?) async throws -> (Process, Int) {
        let p = Process()
        ProcessUser.launch(p, as: user, binDirectory + "/cairn-coordinator",
                           ["--listen", "127.0.0.1:\(port)", "--db", directory + "/cairn.db", "--log-level", "info"] + args)
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_TOKEN"] = token
        if token == nil { env.removeValue(forKey: "CAIRN_TOKEN") }
        p.environment = user?.environment(env, home: directory) ?? env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = logFile(directory, "coordinator.log")
        try p.run()
        let line = try await readLine(out.fileHandleForReading, timeout: 20)
        guard let range = line.range(of: "listening on "), let bound = Int(line[range.upperBound...].split(separator: ":").last ?? "") else {
            p.terminate()
            throw ClusterError("coordinator did not start: \(line)")
        }
        return (p, bound)
    }

    /// Starts one more coordinator on the same store, on `port`: it stands by while another leads
    /// (its log `coordinator-N.log`, its stdout `coordinator-N.out`).
    public func startStandby(index: Int, port: Int, args: [String] = []) throws {
        let p = Process()
        ProcessUser.launch(p, as: user, Self.binDirectory + "/cairn-coordinator",
                           ["--listen", "127.0.0.1:\(port)", "--log-level", "info"] + storeArgs + args)
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_TOKEN"] = token
        if token == nil { env.removeValue(forKey: "CAIRN_TOKEN") }
        p.environment = user?.environment(env, home: directory) ?? env
        p.standardOutput = Self.logFile(directory, "coordinator-\(index).out")
        p.standardError = Self.logFile(directory, "coordinator-\(index).log")
        try p.run()
        lock.withLock {
            standbyPorts.append(port)
            standbys.append(p)
        }
    }

    /// A handle that appends to the log file `name` in `dir` (created if new): a restarted
    /// process's log follows its predecessor's instead of overwriting it.
    static func logFile(_ dir: String, _ name: String) -> FileHandle? {
        let path = dir + "/" + name
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let h = FileHandle(forWritingAtPath: path)
        h?.seekToEndOfFile()
        return h
    }

    /// The first line `handle` gives (without its newline), or an error naming `what` was awaited.
    public static func readLine(_ handle: FileHandle, timeout: Double, what: String = "the coordinator to start") async throws -> String {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<String, any Error>) in
            let once = Once()
            DispatchQueue.global().async {
                var buffer = Data()
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    buffer.append(chunk)
                    if let nl = buffer.firstIndex(of: 0x0A) {
                        buffer = buffer[..<nl]
                        break
                    }
                }
                once.run { c.resume(returning: String(decoding: buffer, as: UTF8.self)) }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
                once.run { c.resume(throwing: ClusterError("timed out after \(timeout)s waiting for \(what)")) }
            }
        }
    }

    /// Starts one more worker process.
    @discardableResult
    public func startWorker(name: String, slots: Int = 4, token: String? = nil, extraArgs: [String] = []) -> Process {
        let p = Process()
        ProcessUser.launch(p, as: user, Self.binDirectory + "/cairn-worker",
                           ["--coordinator", address, "--name", name, "--slots", String(slots),
                            "--cache-dir", directory + "/bundles-" + name, "--log-level", "info"] + extraArgs)
        // No PYTHONPATH: the worker gives its exec nodes the Python node library itself.
        var env = ProcessInfo.processInfo.environment
        for (k, v) in workerEnvironment { env[k] = v }
        env["CAIRN_TOKEN"] = token ?? self.token
        if env["CAIRN_TOKEN"] == nil { env.removeValue(forKey: "CAIRN_TOKEN") }
        p.environment = user?.environment(env, home: directory) ?? env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = Self.logFile(directory, "worker-\(name).log")
        try? p.run()
        lock.withLock { workers.append(p); workersByName[name] = p }
        return p
    }

    /// The worker process started under `name`.
    public func worker(named name: String) -> Process? { lock.withLock { workersByName[name] } }

    /// Waits until `count` workers are connected.
    public func waitForWorkers(_ count: Int, timeout: Double = 20) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let r = try await cairn(["workers", "--json"])
            if r.status == 0, let data = r.stdout.data(using: .utf8),
               let list = try? JSONSerialization.jsonObject(with: data) as? [Any], list.count >= count {
                return
            }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw ClusterError("fewer than \(count) workers connected after \(timeout)s\n" + logTails())
    }

    public struct CommandResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String

        /// stdout parsed as JSON.
        public var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8), options: [.fragmentsAllowed]) }
        public var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    /// Runs the `cairn` CLI against this cluster.
    public func cairn(_ args: [String], token: String? = nil, timeout: Double = 120) async throws -> CommandResult {
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_COORDINATOR"] = address
        env["NO_COLOR"] = "1"
        for (k, v) in clientEnvironment { env[k] = v }
        env["CAIRN_TOKEN"] = token ?? self.token
        if env["CAIRN_TOKEN"] == nil { env.removeValue(forKey: "CAIRN_TOKEN") }
        return try await Self.run(Self.binDirectory + "/cairn", args, environment: user?.environment(env, home: directory) ?? env,
                                  timeout: timeout, user: user)
    }

    /// Runs a program to completion, collecting its output.
    public static func run(_ path: String, _ args: [String], environment: [String: String]? = nil,
                           timeout: Double = 120, user: ProcessUser? = nil) async throws -> CommandResult {
        let p = Process()
        ProcessUser.launch(p, as: user, path, args)
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                let group = DispatchGroup()
                let o = DataBox(), e = DataBox()
                group.enter()
                DispatchQueue.global().async { o.set(out.fileHandleForReading.readDataToEndOfFile()); group.leave() }
                group.enter()
                DispatchQueue.global().async { e.set(err.fileHandleForReading.readDataToEndOfFile()); group.leave() }
                if group.wait(timeout: .now() + timeout) == .timedOut {
                    p.terminate()
                    c.resume(throwing: ClusterError("\(path) \(args.joined(separator: " ")) did not finish in \(timeout)s"))
                    return
                }
                p.waitUntilExit()
                c.resume(returning: CommandResult(status: p.terminationStatus, stdout: String(decoding: o.get(), as: UTF8.self),
                                                  stderr: String(decoding: e.get(), as: UTF8.self)))
            }
        }
    }

    /// Submits a graph file and returns the run id.
    public func submit(_ graph: String, input: String? = nil, runID: String? = nil) async throws -> String {
        var args = ["submit", graph, "--json"]
        if let input { args += ["--input", input] }
        if let runID { args += ["--run-id", runID] }
        let r = try await cairn(args)
        guard r.status == 0, let id = r.object["run_id"] as? String else {
            throw ClusterError("submit failed (\(r.status)): \(r.stderr) \(r.stdout)")
        }
        return id
    }

    /// Waits until a run is no longer running and returns its status object (`cairn status --json`).
    public func waitForRun(_ runID: String, timeout: Double = 60) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let r = try await cairn(["status", runID, "--json"])
            let s = r.object
            if let status = s["status"] as? String, status != "running" && status != "queued" { return s }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw ClusterError("run \(runID) still running after \(timeout)s")
    }

    /// Waits until `condition` holds (checked every 20 ms): tests wait on what happened, with a
    /// deadline, never for a fixed time. Throws naming `what` once `timeout` passes.
    public func waitUntil(_ what: String, timeout: Double = 20, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw ClusterError("\(what): not after \(timeout)s")
    }

    /// Waits until a run has recorded at least `step` steps; returns its status object.
    @discardableResult
    public func waitForStep(_ runID: String, atLeast step: Int, timeout: Double = 30) async throws -> [String: Any] {
        var status: [String: Any] = [:]
        try await waitUntil("run \(runID) at step \(step)", timeout: timeout) {
            status = try await cairn(["status", runID, "--json"]).object
            return (status["step"] as? Int ?? -1) >= step
        }
        return status
    }

    /// Waits until the named log file contains `text`.
    public func waitForLog(_ name: String, containing text: String, timeout: Double = 20) async throws {
        try await waitUntil("\(name) saying '\(text)'", timeout: timeout) { log(name).contains(text) }
    }

    /// Stops the coordinator with a signal (SIGKILL for a crash) and starts it again on the same
    /// port and file; `whileStopped` runs in between (to change the file as an operator might).
    public func restartCoordinator(signal: Int32 = SIGKILL, args: [String] = [],
                                   whileStopped: () throws -> Void = {}) async throws {
        kill(coordinator.processIdentifier, signal)
        coordinator.waitUntilExit()
        try whileStopped()
        var lastError: (any Error)?
        for _ in 0..<50 {
            do {
                let (p, _) = try await Self.startCoordinator(directory: directory, port: port, token: token, args: storeArgs + args, user: user)
                coordinator = p
                return
            } catch {
                lastError = error
                try await Task.sleep(nanoseconds: 200_000_000)
            }
        }
        throw lastError ?? ClusterError("coordinator did not restart")
    }

    /// A query's rows as the store's own shell prints them (`sqlite3 -readonly` or `psql -At`):
    /// one line per row, columns joined by `|`, trimmed.
    public func sql(_ query: String) async throws -> String {
        if let postgres { return try await postgres.psql(query).trimmingCharacters(in: .whitespacesAndNewlines) }
        let r = try await Self.run("/usr/bin/env", ["sqlite3", "-readonly", "-separator", "|", databasePath, query], timeout: 30)
        guard r.status == 0 else { throw ClusterError("sqlite3 failed (\(r.status)): \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Text of a log file in the cluster's folder.
    public func log(_ name: String) -> String {
        (try? String(contentsOfFile: directory + "/" + name, encoding: .utf8)) ?? ""
    }

    /// The last `lines` lines of each log in the cluster's folder, headed by its name: what a
    /// failed wait reports, so that a failure seen once in CI says what the processes said.
    public func logTails(lines: Int = 15) -> String {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".log") }.sorted()
        return names.map { name in
            let tail = log(name).split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
            return "--- \(name) (last \(lines) lines)\n\(tail)"
        }.joined(separator: "\n")
    }

    /// Kills every process; keeps the folder (logs, SQLite) unless `removeFiles`.
    public func stop(removeFiles: Bool = true) {
        let all = lock.withLock { workers + standbys } + [coordinator]
        for p in all where p.isRunning { kill(p.processIdentifier, SIGKILL) }
        for p in all { p.waitUntilExit() }
        postgres?.stop()
        if removeFiles { try? FileManager.default.removeItem(atPath: directory) }
    }
}

public struct ClusterError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func run(_ body: () -> Void) {
        let first: Bool = lock.withLock { if done { return false }; done = true; return true }
        if first { body() }
    }
}

private final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data } }
}
