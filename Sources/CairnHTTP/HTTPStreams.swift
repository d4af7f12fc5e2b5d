import CairnCore
import CairnCoordinator
import CairnGraph
import CairnProtocol
import Foundation
import Hummingbird
import HummingbirdTLS
import NIOSSL
import Logging
import ServiceLifecycle

/// Server-Sent Events: a run's stream and every run's, each reader fed by a shared broadcast
/// (`SSEBroadcast`), a stalled or far-behind reader dropped.
extension HTTPAPI {
    /// `text/event-stream` of the run's events, `event: KIND` and `data: JSON` each, ending with
    /// the final one: a snapshot first, then every event. The run's readers share one
    /// subscription (`RunSSEBroadcasts`); each write carries all since the last (at most one per
    /// 20 ms per reader); a reader more than 4 MiB behind, or that has not taken a write for
    /// `streamStall`, is dropped.
    func events(_ runID: String) async throws -> Response {
        let (hub, reader): (RunSSEBroadcast, EventReader)
        do {
            try Access.checkRead(RequestGrants.current, doing: "watch a run")
            (hub, reader) = try await runHubs.join(runID)
        } catch { throw Self.apiError(error) }
        let hubs = runHubs
        return relay(reader, onEnd: { await hubs.leave(hub, reader) })
    }

    /// Every run's events from the hub: each write carries all that arrived since the last one
    /// (at most one write per 20 ms per reader). A reader more than 4 MiB behind, or that has not
    /// taken a write for `streamStall`, is dropped.
    func allEvents(_ request: Request) async throws -> Response {
        do { try Access.checkRead(RequestGrants.current, doing: "watch runs") } catch { throw Self.apiError(error) }
        let chosen = try Self.flag(request, "every") ? everyHub : self.hub
        let reader = await chosen.join()
        return relay(reader, onEnd: { await chosen.leave(reader) })
    }

    /// Writes what a hub's reader takes until its stream ends.
    func relay(_ reader: EventReader, onEnd: @escaping @Sendable () async -> Void) -> Response {
        eventStream(onEnd: onEnd) { write in try await Self.relay(reader, write) }
    }

    static func relay(_ reader: EventReader, _ write: @Sendable (ByteBuffer) async throws -> Void) async throws {
        while !Task.isCancelled {
            let (bytes, state) = await reader.next()
            if state == .overflowed { throw FellBehind() }
            if !bytes.isEmpty { try await write(ByteBuffer(bytes: bytes)) }
            if state == .ended { break }
            try await Task.sleep(for: .milliseconds(20))  // the next write carries what arrives meanwhile
        }
    }

    /// A `text/event-stream` response whose body `produce` writes. A client that has not taken
    /// a write for `streamStall` is cut off: the write is cancelled and the connection closed. A
    /// coordinator that is stopping ends its streams (the server waits for open requests).
    func eventStream(onEnd: @escaping @Sendable () async -> Void = {},
                     _ produce: @escaping @Sendable (_ write: @Sendable (ByteBuffer) async throws -> Void) async throws -> Void) -> Response {
        let stall = streamStall
        let logger = logger
        let body = ResponseBody { writer in
            let box = WriterBox(writer)
            let since = WriteClock()
            defer { Task { await onEnd() } }
            do { try await cancelWhenGracefulShutdown { try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await produce { buffer in
                        since.began()
                        try await box.writer.write(buffer)
                        since.ended()
                    }
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: .milliseconds(500))
                        if since.pending(longerThan: stall) { throw StalledClient() }
                    }
                }
                // The stream's end (or a stalled client) ends the other task too.
                defer { group.cancelAll() }
                try await group.next()
            } } } catch is CancellationError {
            } catch let e as StalledClient {
                logger.warning("an event stream's reader took nothing for \(stall) and was dropped")
                throw e
            } catch let e as FellBehind {
                logger.warning("an event stream's reader fell more than 4 MiB behind and was dropped")
                throw e
            }
            try await box.writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }
}

/// The response body's writer, handed to the task that writes the events (one task at a time
/// uses it: the writing task, then, once it has ended, the handler that finishes the body).
final class WriterBox: @unchecked Sendable {
    var writer: any ResponseBodyWriter
    init(_ writer: any ResponseBodyWriter) { self.writer = writer }
}

/// When the write in progress began (none: nil).
final class WriteClock: @unchecked Sendable {
    private let lock = NSLock()
    private var since: ContinuousClock.Instant?
    func began() { lock.withLock { since = .now } }
    func ended() { lock.withLock { since = nil } }
    func pending(longerThan d: Duration) -> Bool { lock.withLock { since.map { ContinuousClock.now - $0 > d } ?? false } }
}

struct FellBehind: Error, CustomStringConvertible {
    var description: String { "the client fell too far behind its event stream" }
}

struct StalledClient: Error, CustomStringConvertible {
    var description: String { "the client stopped reading its event stream" }
}
