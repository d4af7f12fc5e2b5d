import CairnProtocol
import Logging
import NIOCore

/// A worker's connection: where its assignments and acks are written.
final class WorkerConnection {
    let channel: any Channel
    private var flushScheduled = false
    private let logger: Logger
    private static let codec = WireCodec()

    init(channel: any Channel, logger: Logger) {
        self.channel = channel
        self.logger = logger
    }

    /// Writes a message to the worker (called on the engine's event loop, which is the channel's).
    /// Messages written in one turn of the loop go out with one flush.
    func send(_ message: WireMessage) {
        let frame: Frame
        do { frame = try Self.codec.encode(message, allocator: channel.allocator) } catch {
            // Protobuf encoding does not fail for messages built here; were zstd to fail, the task
            // this message carried is not lost: its lease expires and it is handed out again.
            logger.error("could not encode a message to a worker", metadata: ["type": "\(message.type)", "error": "\(error)"])
            return
        }
        channel.write(frame, promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        channel.eventLoop.execute {
            bound.value.flushScheduled = false
            bound.value.channel.flush()
        }
    }
}

/// Resumes a continuation the first time it is asked (confined to the engine's loop).
final class ResumeOnce {
    private var continuation: CheckedContinuation<Void, Never>?
    init(_ c: CheckedContinuation<Void, Never>) { continuation = c }
    func resume() {
        continuation?.resume()
        continuation = nil
    }
}
