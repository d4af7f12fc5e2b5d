import CairnCore
import Foundation
import Logging
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A program that stays up and takes one task after another (`serve:` on an exec node): a task
/// is one JSON line on its stdin; it answers with zero or more `{"progress": …}` lines and then
/// one result line (any other JSON object). Started and read through swift-subprocess.
final class ServedProcess: @unchecked Sendable {
    enum Reply: Sendable {
        /// The task's result line, and what the task had written on stderr by then (a failure
        /// reports it; output still in the pipe may be missed).
        case result([String: JSONValue], stderr: String)
        /// The program ended (or could not start) before it answered.
        case died(String, stderr: String, timedOut: Bool)
        /// It printed a line longer than `ChildProcess.maxLineBytes`, and was killed.
        case overlong
    }

    /// A task line, its state not yet in: the process that takes it decides how the state goes.
    struct Line: Sendable {
        /// `{…}` with every field but the state.
        var rest: [UInt8]
        /// The state as one JSON object, when the worker has it so.
        var state: [UInt8]?
        /// The state channel by channel, from the worker's cache.
        var view: StateView?
    }

    struct Job: Sendable {
        var bytes: [UInt8]
        var runID: String
        var onProgress: @Sendable (JSONValue) -> Void
        var reply: CheckedContinuation<Reply, Never>
    }

    let key: ProcessPools.Key
    let logger: Logger
    private let lock = NSLock()
    private var pid: pid_t = 0
    private var current: Job?
    private var queued: Job?
    private var waiter: CheckedContinuation<Job?, Never>?
    private var retired = false
    private var ended = false
    private var timedOut = false
    private var stderr = TailBuffer(limit: ChildProcess.stderrTailBytes)
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []
    /// Tasks answered so far.
    private(set) var served = 0
    /// Whether its result lines say it keeps state, and what it keeps (under `lock`).
    private var keepsState = false
    private var mirror: ProcessStateMirror

    /// Budget in bytes of JSON for the state it keeps.
    init(key: ProcessPools.Key, stateBudget: Int, logger: Logger) {
        self.key = key
        self.logger = logger
        self.mirror = ProcessStateMirror(budget: stateBudget)
    }

    /// The task line for this process: the state whole, or what changed since what it keeps.
    func bytes(for line: Line) -> [UInt8] {
        var out: [UInt8]
        if let view = line.view, let fields = lock.withLock({ keepsState && mirror.budget > 0 ? mirror.fields(for: view) : nil }) {
            out = [UInt8(ascii: "{")] + fields
        } else if let state = line.state ?? line.view?.json {
            out = Array(#"{"state":"#.utf8) + state
        } else {
            return line.rest + [0x0A]
        }
        out.append(UInt8(ascii: ","))
        out += line.rest.dropFirst()
        out.append(0x0A)
        return out
    }

    /// The runs the worker's cache dropped: the process drops them with its next task.
    func forget(runs: [String]) {
        lock.withLock { for r in runs { mirror.forget(r) } }
    }

    var processID: pid_t { lock.withLock { pid } }
    var isAlive: Bool { lock.withLock { !ended } }

    /// Starts the program; it lives until `retire()` (stdin closed) or it dies.
    func start() {
        Task { await self.live() }
    }

    /// Hands the program one task and waits for its answer. A timeout kills the program.
    func perform(_ line: Line, timeout: Duration?, onProgress: @escaping @Sendable (JSONValue) -> Void) async -> Reply {
        let bytes = self.bytes(for: line)
        let runID = line.view?.runID ?? ""
        let timer = timeout.map { t in
            Task {
                try await Task.sleep(for: t)
                self.killForTimeout()
            }
        }
        defer { timer?.cancel() }
        return await withCheckedContinuation { c in
            let job = Job(bytes: bytes, runID: runID, onProgress: onProgress, reply: c)
            let refused: Bool = lock.withLock {
                if ended || retired { return true }
                if let w = waiter { waiter = nil; current = job; stderr.reset(); w.resume(returning: job) } else { queued = job }
                return false
            }
            if refused { c.resume(returning: .died("the program had already exited", stderr: "", timedOut: false)) }
        }
    }

    /// Closes the program's stdin once its task (if any) is answered: it should exit.
    func retire() {
        let w: CheckedContinuation<Job?, Never>? = lock.withLock {
            retired = true
            defer { waiter = nil }
            return waiter
        }
        w?.resume(returning: nil)
    }

    func kill(_ signal: Int32 = SIGKILL) {
        let p = lock.withLock { ended ? 0 : pid }
        if p > 0 { _ = Foundation.kill(p, signal) }
    }

    func waitExit() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done: Bool = lock.withLock {
                if ended { return true }
                exitWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// The resident memory of the program, from /proc, in bytes (nil where it cannot be read).
    func residentBytes() -> Int? {
        let p = processID
        guard p > 0, let s = try? String(contentsOfFile: "/proc/\(p)/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
            return kb.map { $0 * 1024 }
        }
        return nil
    }

    private func killForTimeout() {
        lock.withLock { if current != nil { timedOut = true } }
        kill()
    }

    private func nextJob() async -> Job? {
        await withCheckedContinuation { c in
            let ready: Job?? = lock.withLock {
                if let q = queued { queued = nil; current = q; stderr.reset(); return .some(q) }
                if retired { return .some(nil) }
                waiter = c
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    private func answer(_ reply: Reply) {
        let job: Job? = lock.withLock {
            defer { current = nil; served += 1 }
            return current
        }
        job?.reply.resume(returning: reply)
    }

    private func live() async {
        var failure: String?
        var status: TerminationStatus?
        do {
            let result = try await Subprocess.run(
                .path(FilePath(key.executable)), arguments: Arguments(key.arguments),
                environment: .custom(ChildProcess.environment(key.environment)),
                workingDirectory: key.directory.map { FilePath($0) },
                input: .inputWriter, output: .sequence, error: .sequence
            ) { execution in
                lock.withLock { pid = execution.processIdentifier.value }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await chunk in execution.standardError {
                            chunk.withUnsafeBytes { b in self.lock.withLock { self.stderr.append(b) } }
                        }
                    }
                    var out = execution.standardOutput.makeAsyncIterator()
                    var splitter = LineSplitter()
                    var lines: [[UInt8]] = []
                    var next = 0
                    jobs: while let job = await nextJob() {
                        do {
                            _ = try await execution.standardInputWriter.write(job.bytes)
                        } catch {
                            break jobs   // the program is gone; answered below with its exit status
                        }
                        while true {
                            if next == lines.count {
                                lines.removeAll(keepingCapacity: true); next = 0
                                guard let chunk = try await out.next() else { break jobs }
                                lines = chunk.withUnsafeBytes { splitter.feed($0) }
                                if lines.isEmpty && splitter.pending > ChildProcess.maxLineBytes {
                                    answer(.overlong)
                                    kill()
                                    break jobs
                                }
                                continue
                            }
                            let line = lines[next]; next += 1
                            guard !line.isEmpty, case .object(let o)? = try? JSONValue.parse(line) else { continue }
                            if o.count == 1, let p = o["progress"] { job.onProgress(p); continue }
                            if o["state_cache"]?.boolValue == true || o["kind"]?.stringValue == "state_cache" {
                                lock.withLock {
                                    keepsState = true
                                    // It could not build the state from what it keeps: it starts that run afresh.
                                    if o["kind"]?.stringValue == "state_cache" { mirror.forget(job.runID) }
                                }
                            }
                            answer(.result(o, stderr: o["error"] == nil ? "" : lock.withLock { stderr.text }))
                            continue jobs
                        }
                    }
                    // Closing stdin tells it to exit; if it is gone already there is nothing to close.
                    try? await execution.standardInputWriter.finish()
                    // Whatever it still prints is nobody's answer; read it so it can exit.
                    while try await out.next() != nil {}
                    try await group.waitForAll()
                }
            }
            status = result.terminationStatus
        } catch let e as SubprocessError {
            failure = "cannot start \(key.executable): \(e)"
        } catch {
            failure = "\(error)"
        }
        let (job, tail, wasTimedOut, waiters, pending): (Job?, String, Bool, [CheckedContinuation<Void, Never>], Job?) = lock.withLock {
            ended = true
            defer { current = nil; queued = nil; exitWaiters = [] }
            let w = waiter
            waiter = nil
            // A waiter is only set while the loop waits, and the loop has ended.
            precondition(w == nil)
            return (current, stderr.text, timedOut, exitWaiters, queued)
        }
        let why: String
        if let failure {
            why = failure
        } else if let status {
            let (code, signaled) = ChildProcess.status(status)
            why = signaled ? "was killed by signal \(code)" : "exited with status \(code)"
        } else {
            why = "ended"
        }
        if job != nil || pending != nil {
            logger.info("served program ended during a task", metadata: ["program": "\(key.executable)", "why": "\(why)"])
        }
        job?.reply.resume(returning: .died(why, stderr: tail, timedOut: wasTimedOut))
        pending?.reply.resume(returning: .died(why, stderr: "", timedOut: false))
        for w in waiters { w.resume() }
    }
}

/// The worker's long-lived programs: one pool per program (command, folder, environment), each
/// up to the worker's slots since a process serves one task at a time. At most `maxIdle` wait
/// idle across all programs: past that, the one idle longest is retired (a worker that has run
/// many graphs does not keep a process of each).
public final class ProcessPools: @unchecked Sendable {
    struct Key: Hashable, Sendable {
        var executable: String
        var arguments: [String]
        var directory: String?
        var environment: [String: String]
    }

    /// How a pool's processes are recycled.
    struct Limits: Sendable, Equatable {
        var maxTasks: Int?
        var maxMemoryBytes: Int?
    }

    let logger: Logger
    let maxIdle: Int
    /// Bytes of state JSON each process may keep (the worker's state cache budget).
    let stateBudget: Int
    private let lock = NSLock()
    private var idle: [Key: [ServedProcess]] = [:]
    /// Idle processes, oldest first (for retiring past `maxIdle`).
    private var idleOrder: [ServedProcess] = []
    private var all: [ObjectIdentifier: ServedProcess] = [:]
    private var closed = false

    public init(maxIdle: Int, stateBudget: Int = 0, logger: Logger) {
        self.maxIdle = max(1, maxIdle)
        self.stateBudget = max(0, stateBudget)
        self.logger = logger
    }

    /// The worker's cache dropped these runs: so does every process, with its next task.
    func forget(runs: [String]) {
        guard !runs.isEmpty else { return }
        for p in lock.withLock({ Array(all.values) }) { p.forget(runs: runs) }
    }

    /// Runs one task on an idle process of the program, or a new one.
    func perform(_ key: Key, limits: Limits, line: ServedProcess.Line, timeout: Duration?,
                 onProgress: @escaping @Sendable (JSONValue) -> Void) async -> ServedProcess.Reply {
        let (process, fresh): (ServedProcess, Bool) = lock.withLock {
            while var list = idle[key], let p = list.popLast() {
                idle[key] = list
                idleOrder.removeAll { $0 === p }
                if p.isAlive { return (p, false) }
            }
            let p = ServedProcess(key: key, stateBudget: stateBudget, logger: logger)
            all[ObjectIdentifier(p)] = p
            return (p, true)
        }
        if fresh { process.start() }
        let reply = await process.perform(line, timeout: timeout, onProgress: onProgress)
        release(process, limits: limits)
        return reply
    }

    private func release(_ p: ServedProcess, limits: Limits) {
        var recycle: String?
        if !p.isAlive {
            recycle = "ended"
        } else if let max = limits.maxTasks, p.served >= max {
            recycle = "served max_tasks (\(max)) tasks"
        } else if let max = limits.maxMemoryBytes, let rss = p.residentBytes(), rss > max {
            recycle = "uses \(rss / 1_048_576) MiB, over max_memory (\(max / 1_048_576) MiB)"
        }
        let (keep, evicted): (Bool, ServedProcess?) = lock.withLock {
            guard recycle == nil && !closed else { return (false, nil) }
            idle[p.key, default: []].append(p)
            idleOrder.append(p)
            guard idleOrder.count > maxIdle else { return (true, nil) }
            let oldest = idleOrder.removeFirst()
            idle[oldest.key]?.removeAll { $0 === oldest }
            return (true, oldest)
        }
        if let evicted {
            logger.info("retiring an idle served program", metadata: ["program": "\(evicted.key.executable)", "pid": "\(evicted.processID)",
                                                                     "why": "more than \(maxIdle) idle"])
            evicted.retire()
            Task { await evicted.waitExit(); self.forget(evicted) }
        }
        if keep { return }
        if let recycle, recycle != "ended" {
            logger.info("recycling a served program", metadata: ["program": "\(p.key.executable)", "pid": "\(p.processID)", "why": "\(recycle)"])
        }
        p.retire()
        Task { await p.waitExit(); self.forget(p) }
    }

    private func forget(_ p: ServedProcess) {
        _ = lock.withLock { all.removeValue(forKey: ObjectIdentifier(p)) }
    }

    /// Stops every program: stdin closed, so each exits once its task is answered; those still up
    /// after `grace` seconds are killed.
    public func shutdown(grace: Double) async {
        let processes: [ServedProcess] = lock.withLock {
            closed = true
            idle = [:]
            idleOrder = []
            return Array(all.values)
        }
        for p in processes { p.retire() }
        await withTaskGroup(of: Void.self) { group in
            for p in processes {
                group.addTask {
                    let exited = Locked(false)
                    let killer = Task {
                        try await Task.sleep(for: .milliseconds(Int64(grace * 1000)))
                        if !exited.withLock({ $0 }) { p.kill() }
                    }
                    await p.waitExit()
                    exited.withLock { $0 = true }
                    killer.cancel()
                }
            }
        }
    }
}
