import CairnCore
import Foundation
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A program started for one task (swift-subprocess): its stdin fed, stdout read line by line as
/// it arrives, a stderr tail kept, and a timeout that kills it. All reads are asynchronous.
struct ChildProcess {
    struct Outcome {
        var status: Int32
        var signaled: Bool
        var timedOut: Bool
        /// Set when the program printed a line longer than `maxLineBytes`; it was killed.
        var overlong: Bool
        var stderrTail: String
    }

    static let stderrTailBytes = 2_048
    /// The longest stdout line read from a node program: a result must fit in a frame anyway,
    /// and a program that prints without newlines must not grow the worker's memory.
    static let maxLineBytes = 16 << 20

    static func run(executable: String, arguments: [String], directory: String?, environment: [String: String],
                    stdin: [UInt8], timeout: Duration?, onLine: @escaping @Sendable ([UInt8]) -> Void) async throws -> Outcome {
        let tail = Locked(TailBuffer(limit: stderrTailBytes))
        let timedOut = Locked(false)
        let overlong = Locked(false)
        let result: ExecutionResult<Void, SequenceOutput, SequenceOutput>
        do {
            result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments),
                environment: .custom(ChildProcess.environment(environment)),
                workingDirectory: directory.map { FilePath($0) },
                input: .inputWriter, output: .sequence, error: .sequence
            ) { execution in
                let pid = execution.processIdentifier.value
                let timer = timeout.map { t in
                    Task {
                        // Cancelled when the program is done first.
                        try await Task.sleep(for: t)
                        timedOut.withLock { $0 = true }
                        kill(pid, SIGKILL)
                    }
                }
                defer { timer?.cancel() }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        // A program that exits without reading its stdin closes the pipe (EPIPE): its
                        // exit status and stderr, not this write, are what the task reports.
                        _ = try? await execution.standardInputWriter.write(stdin)
                        try? await execution.standardInputWriter.finish()
                    }
                    group.addTask {
                        for try await chunk in execution.standardError {
                            chunk.withUnsafeBytes { b in tail.withLock { $0.append(b) } }
                        }
                    }
                    var splitter = LineSplitter()
                    for try await chunk in execution.standardOutput {
                        for line in chunk.withUnsafeBytes({ splitter.feed($0) }) where !line.isEmpty { onLine(line) }
                        if splitter.pending > maxLineBytes, !overlong.withLock({ $0 }) {
                            overlong.withLock { $0 = true }
                            kill(pid, SIGKILL)
                        }
                        if overlong.withLock({ $0 }) { _ = splitter.rest() }
                    }
                    if let last = splitter.rest(), !last.isEmpty, !overlong.withLock({ $0 }) { onLine(last) }
                    // stdout is closed: the program is exiting.
                    try await group.waitForAll()
                }
            }
        } catch let e as SubprocessError {
            throw NodeFailure("cannot start \(executable): \(e)", kind: "exec", nonRetryable: true)
        }
        let (status, signaled) = ChildProcess.status(result.terminationStatus)
        return Outcome(status: status, signaled: signaled, timedOut: timedOut.withLock { $0 },
                       overlong: overlong.withLock { $0 }, stderrTail: tail.withLock { $0.text })
    }

    static func status(_ s: TerminationStatus) -> (Int32, Bool) {
        switch s {
        case .exited(let code): return (code, false)
        case .signaled(let sig): return (sig, true)
        }
    }

    static func environment(_ env: [String: String]) -> [Environment.Key: String] {
        var out: [Environment.Key: String] = [:]
        for (k, v) in env {
            if let key = Environment.Key(rawValue: k) { out[key] = v }
        }
        return out
    }
}

/// Splits a byte stream into lines without their newline.
struct LineSplitter {
    private var buffer: [UInt8] = []

    mutating func feed(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var start = bytes.startIndex
        for i in bytes.indices where bytes[i] == 0x0A {
            if buffer.isEmpty {
                out.append(Array(bytes[start..<i]))
            } else {
                buffer.append(contentsOf: bytes[start..<i])
                out.append(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
            start = i + 1
        }
        if start < bytes.endIndex { buffer.append(contentsOf: bytes[start..<bytes.endIndex]) }
        return out
    }

    /// Bytes read since the last newline.
    var pending: Int { buffer.count }

    /// What is left after the last newline, once the stream has ended.
    mutating func rest() -> [UInt8]? {
        defer { buffer = [] }
        return buffer.isEmpty ? nil : buffer
    }
}

/// The last `limit` bytes written to it.
struct TailBuffer {
    let limit: Int
    private var bytes: [UInt8] = []
    init(limit: Int) { self.limit = limit }

    mutating func append(_ b: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: b)
        if bytes.count > limit * 2 { bytes.removeFirst(bytes.count - limit) }
    }
    mutating func reset() { bytes.removeAll(keepingCapacity: true) }
    var text: String { String(decoding: bytes.suffix(limit), as: UTF8.self) }
}

/// A value behind a lock.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
}
