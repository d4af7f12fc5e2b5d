import CairnCore
import CairnCoordinator
import CairnProtocol
import Foundation
import NIOCore

/// Every run's events for all readers of `GET /api/events`: one subscription to the engine,
/// each event encoded once and appended to each reader's buffer; a reader's next write carries
/// everything that arrived since its last. So 200 readers cost the engine one watcher, and the
/// server one encoding and 200 appends per event, not 200 of each and 200 writes. A reader more
/// than `maxPending` bytes behind is dropped (its memory is bounded, not the engine's concern).
/// The subscription ends when the last reader leaves.
///
/// Conflated (the default stream), the engine holds back a run's task events and checkpoints to
/// the newest per run per 20 ms (`EventConflation`), every other event going out at once: so
/// what a dashboard costs does not grow with how fast runs step. Unconflated (`?every=true`),
/// every event goes out.
actor SSEBroadcast {
    let door: ClientDoor
    let fanout: Fanout
    let conflated: Bool
    private var source: (generation: Int, ready: Task<Void, Never>, pump: Task<Void, Never>)?
    private var generation = 0

    init(door: ClientDoor, maxPending: Int, conflate: Bool = false) {
        self.door = door
        fanout = Fanout(maxPending: maxPending)
        conflated = conflate
    }

    /// A new reader: registered first, then (once the hub is subscribed) handed a snapshot of
    /// every run held now, ahead of anything already delivered to it. Nothing is lost; an event
    /// that raced the snapshot may arrive just after it.
    func join() async -> EventReader {
        let reader = fanout.add()
        if source == nil {
            generation += 1
            let (readyStream, ready) = AsyncStream<Void>.makeStream()
            let gen = generation
            let pump = Task { [door, fanout, conflated] in
                let stream = await door.allEvents(conflated: conflated)
                ready.finish()
                for await e in stream { fanout.broadcast(Self.encode(e)) }
                if !Task.isCancelled {
                    fanout.endAll()  // the coordinator is stopping, or the hub fell behind
                    self.ended(gen)
                }
            }
            source = (gen, Task { for await _ in readyStream {} }, pump)
        }
        await source?.ready.value
        let snapshot = await door.snapshots().flatMap(Self.encode)
        reader.prepend(snapshot)
        return reader
    }

    func leave(_ reader: EventReader) {
        if fanout.remove(reader), let s = source {
            s.pump.cancel()  // no one reads: the engine stops keeping notes for this stream
            source = nil
        }
    }

    private func ended(_ gen: Int) {
        if source?.generation == gen { source = nil }
    }

    static func encode(_ e: Cairn_V1_RunEvent) -> [UInt8] {
        Array("event: \(e.kind)\ndata: \(MessageJSON.json(e).compactString)\n\n".utf8)
    }
}

/// The events not yet written to every reader, kept once: a log of encoded events, and each
/// reader's place in it. The pump appends (O(1) per event, whatever the number of readers, plus
/// waking the readers that wait); a reader takes everything from its place to the end in one
/// piece. Every 256 events the log lets go of what every reader has taken, and a reader more
/// than `maxPending` bytes behind is dropped.
final class Fanout: @unchecked Sendable {
    private let lock = NSLock()
    private var readers: [ObjectIdentifier: EventReader] = [:]
    private var waiting: [EventReader] = []
    private var chunks: [[UInt8]] = []
    private var starts: [Int] = []  // the byte offset (since the hub began) each chunk starts at
    private var base = 0            // the sequence number of chunks[0]
    private var total = 0           // bytes appended since the hub began
    private var sinceTrim = 0
    let maxPending: Int

    init(maxPending: Int) { self.maxPending = maxPending }

    private var closed = false

    func add() -> EventReader { add(ifOpen: false)! }

    /// A new reader, unless the stream has ended (`endAll`).
    func addIfOpen() -> EventReader? { add(ifOpen: true) }

    private func add(ifOpen: Bool) -> EventReader? {
        let r = EventReader(fanout: self)
        return lock.withLock {
            if ifOpen && closed { return nil }
            r.position = base + chunks.count
            readers[ObjectIdentifier(r)] = r
            return r
        }
    }

    /// Removes a reader; true when none is left.
    func remove(_ r: EventReader) -> Bool {
        lock.withLock {
            readers[ObjectIdentifier(r)] = nil
            waiting.removeAll { $0 === r }
            if readers.isEmpty { base += chunks.count; chunks = []; starts = [] }
            return readers.isEmpty
        }
    }

    func broadcast(_ bytes: [UInt8]) {
        let wake: [EventReader] = lock.withLock {
            chunks.append(bytes)
            starts.append(total)
            total += bytes.count
            sinceTrim += 1
            if sinceTrim >= 256 { sinceTrim = 0; trim() }
            defer { waiting = [] }
            return waiting
        }
        for r in wake { r.wake() }
    }

    /// How many readers wait for the next event.
    var waitingReaders: Int { lock.withLock { waiting.count } }

    func endAll() {
        let all: [EventReader] = lock.withLock {
            closed = true
            for r in readers.values where r.state == .open { r.state = .ended }
            waiting = []
            return Array(readers.values)
        }
        for r in all { r.wake() }
    }

    /// Under the lock: drops readers too far behind, and the chunks every reader has taken.
    private func trim() {
        var keepFrom = base + chunks.count
        for r in readers.values where r.state == .open {
            if r.position < base + chunks.count, total - starts[r.position - base] > maxPending {
                r.state = .overflowed
                waiting.append(r)  // woken to learn it
            } else {
                keepFrom = min(keepFrom, r.position)
            }
        }
        let drop = keepFrom - base
        if drop > 0 {
            chunks.removeFirst(drop)
            starts.removeFirst(drop)
            base = keepFrom
        }
    }

    func prepend(_ r: EventReader, _ bytes: [UInt8]) {
        let w: Bool = lock.withLock {
            r.prefix = bytes + r.prefix
            return !bytes.isEmpty
        }
        if w { r.wake() }
    }

    /// Under the lock: whether the reader has something to take (or its stream is over).
    fileprivate func ready(_ r: EventReader) -> Bool {
        !r.prefix.isEmpty || r.state != .open || r.position < base + chunks.count
    }

    fileprivate func wait(_ r: EventReader, _ c: CheckedContinuation<Void, Never>) {
        let now: Bool = lock.withLock {
            if ready(r) || Task.isCancelled { return true }
            r.waiter = c
            waiting.append(r)
            return false
        }
        if now { c.resume() }
    }

    fileprivate func take(_ r: EventReader) -> (bytes: [UInt8], state: EventReader.State) {
        lock.withLock {
            var out = r.prefix
            r.prefix = []
            let end = base + chunks.count
            // An ended stream still hands over what came before its end.
            if r.state != .overflowed, r.position < end {
                if total - starts[r.position - base] > maxPending {
                    r.state = .overflowed
                } else {
                    for i in (r.position - base)..<chunks.count { out += chunks[i] }
                    r.position = end
                }
            }
            return (r.state == .overflowed ? [] : out, r.state)
        }
    }

    fileprivate func takeWaiter(_ r: EventReader) -> CheckedContinuation<Void, Never>? {
        lock.withLock {
            defer { r.waiter = nil }
            return r.waiter
        }
    }
}

/// One reader of the hub: its place in the log; its fields change under the fanout's lock.
final class EventReader: @unchecked Sendable {
    enum State { case open, ended, overflowed }
    unowned let fanout: Fanout
    var position = 0
    var prefix: [UInt8] = []
    var state = State.open
    var waiter: CheckedContinuation<Void, Never>?

    init(fanout: Fanout) { self.fanout = fanout }

    func wake() { fanout.takeWaiter(self)?.resume() }

    func prepend(_ bytes: [UInt8]) { fanout.prepend(self, bytes) }

    /// Waits until there is something to write (or the stream ended, or the task is cancelled),
    /// then takes all of it.
    func next() async -> (bytes: [UInt8], state: State) {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in fanout.wait(self, c) }
        } onCancel: {
            wake()
        }
        return fanout.take(self)
    }
}

/// The readers of one run's events (`GET /api/runs/{id}/events`), one hub per run read: one
/// engine subscription, each event encoded once into one log, each reader's write carrying all
/// since its last; the stream ends after the run's final event. A reader joining later gets the
/// run's snapshot first. So 200 people watching one run cost the engine one watcher.
actor RunSSEBroadcasts {
    let door: ClientDoor
    let maxPending: Int
    private var hubs: [String: RunSSEBroadcast] = [:]

    init(door: ClientDoor, maxPending: Int) {
        self.door = door
        self.maxPending = maxPending
    }

    /// A reader of the run's events; throws what the door throws for a run it does not know.
    func join(_ runID: String) async throws -> (RunSSEBroadcast, EventReader) {
        while true {
            let hub: RunSSEBroadcast
            if let h = hubs[runID] { hub = h } else { hub = RunSSEBroadcast(runID: runID, door: door, maxPending: maxPending); hubs[runID] = hub }
            do {
                if let reader = try await hub.join() { return (hub, reader) }
            } catch {
                if hubs[runID] === hub { hubs[runID] = nil }
                throw error
            }
            // That hub's stream has ended (the run's final event went out): a new one answers.
            if hubs[runID] === hub { hubs[runID] = nil }
        }
    }

    func leave(_ hub: RunSSEBroadcast, _ reader: EventReader) async {
        if await hub.leave(reader), hubs[hub.runID] === hub { hubs[hub.runID] = nil }
    }

    var count: Int { hubs.count }
}

actor RunSSEBroadcast {
    let runID: String
    let door: ClientDoor
    let fanout: Fanout
    private var subscribed: Task<Result<AsyncStream<Cairn_V1_RunEvent>, any Error>, Never>?
    private var pump: Task<Void, Never>?

    init(runID: String, door: ClientDoor, maxPending: Int) {
        self.runID = runID
        self.door = door
        fanout = Fanout(maxPending: maxPending)
    }

    /// Nil when this hub's stream has ended.
    func join() async throws -> EventReader? {
        guard let reader = fanout.addIfOpen() else { return nil }
        if subscribed == nil {
            subscribed = Task { [door, runID] in
                do { return .success(try await door.events(runID)) } catch { return .failure(error) }
            }
        }
        let stream: AsyncStream<Cairn_V1_RunEvent>
        switch await subscribed!.value {
        case .success(let s): stream = s
        case .failure(let error):
            _ = fanout.remove(reader)
            throw error
        }
        if pump == nil {
            pump = Task { [fanout] in
                for await e in stream {
                    // Each reader is handed a snapshot of its own when it joins.
                    if e.kind == "snapshot" && !e.final { continue }
                    fanout.broadcast(SSEBroadcast.encode(e))
                    if e.final { break }
                }
                fanout.endAll()
            }
        }
        let snapshot = await door.snapshots().filter { $0.runID == runID }.flatMap(SSEBroadcast.encode)
        reader.prepend(snapshot)
        return reader
    }

    /// True when no reader is left: the subscription ends.
    func leave(_ reader: EventReader) -> Bool {
        guard fanout.remove(reader) else { return false }
        pump?.cancel()
        fanout.endAll()
        return true
    }
}
