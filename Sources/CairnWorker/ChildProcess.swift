import Foundation

/// A child process with its stdin fed, stdout read line by line, a stderr tail kept, and an
/// optional timeout that kills it. Blocking reads run on Dispatch threads, never on Swift's
/// cooperative pool.
struct ChildProcess {
    struct Outcome {
        var status: Int32
        var signaled: Bool
        var timedOut: Bool
        var lines: [[UInt8]]
        var stderrTail: String
    }

    static let stderrTailBytes = 2_048

    static func run(executable: String, arguments: [String], directory: String?, environment: [String: String],
                    stdin: [UInt8], timeout: Duration?, onLine: @escaping @Sendable ([UInt8]) -> Void) async throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.environment = environment
        let inPipe = Pipe(), outPipe = Pipe(), errPipe = Pipe()
        process.standardInput = inPipe
        process.standardOutput = outPipe
        process.standardError = errPipe
        do {
            try process.run()
        } catch {
            throw NodeFailure("cannot start \(executable): \(error.localizedDescription)", kind: "exec", nonRetryable: true)
        }
        let box = TimeoutBox()
        if let timeout {
            let c = timeout.components
            let seconds = Double(c.seconds) + Double(c.attoseconds) / 1e18
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [process] in
                guard process.isRunning else { return }
                box.fire()
                process.terminate()
                let pid = process.processIdentifier
                DispatchQueue.global().asyncAfter(deadline: .now() + 2) { if process.isRunning { kill(pid, SIGKILL) } }
            }
        }
        return await withCheckedContinuation { continuation in
            let group = DispatchGroup()
            let collected = LineCollector()
            group.enter()
            DispatchQueue.global().async {
                let h = inPipe.fileHandleForWriting
                // A program that exits without reading its stdin closes the pipe (EPIPE): its
                // exit status and stderr, not this write, are what the task reports.
                try? h.write(contentsOf: Data(stdin))
                try? h.close()
                group.leave()
            }
            group.enter()
            DispatchQueue.global().async {
                let h = outPipe.fileHandleForReading
                var buffer: [UInt8] = []
                while true {
                    let chunk = h.availableData
                    if chunk.isEmpty { break }
                    buffer.append(contentsOf: chunk)
                    while let nl = buffer.firstIndex(of: 0x0A) {
                        let line = Array(buffer[..<nl])
                        buffer.removeSubrange(...nl)
                        if !line.isEmpty { collected.add(line); onLine(line) }
                    }
                }
                if !buffer.isEmpty { collected.add(buffer); onLine(buffer) }
                group.leave()
            }
            group.enter()
            DispatchQueue.global().async {
                let h = errPipe.fileHandleForReading
                var tail: [UInt8] = []
                while true {
                    let chunk = h.availableData
                    if chunk.isEmpty { break }
                    tail.append(contentsOf: chunk)
                    if tail.count > stderrTailBytes * 2 { tail.removeFirst(tail.count - stderrTailBytes) }
                }
                collected.setStderr(Array(tail.suffix(stderrTailBytes)))
                group.leave()
            }
            group.notify(queue: .global()) {
                process.waitUntilExit()
                let signaled = process.terminationReason == .uncaughtSignal
                continuation.resume(returning: Outcome(status: process.terminationStatus, signaled: signaled,
                                                       timedOut: box.fired, lines: collected.lines,
                                                       stderrTail: String(decoding: collected.stderr, as: UTF8.self)))
            }
        }
    }
}

private final class TimeoutBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _fired = false
    func fire() { lock.withLock { _fired = true } }
    var fired: Bool { lock.withLock { _fired } }
}

private final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var _lines: [[UInt8]] = []
    private var _stderr: [UInt8] = []
    func add(_ line: [UInt8]) { lock.withLock { _lines.append(line) } }
    func setStderr(_ s: [UInt8]) { lock.withLock { _stderr = s } }
    var lines: [[UInt8]] { lock.withLock { _lines } }
    var stderr: [UInt8] { lock.withLock { _stderr } }
}
