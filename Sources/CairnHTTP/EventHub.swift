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
actor EventHub {
    let door: ClientDoor
    let fanout: Fanout
    private var source: (generation: Int, ready: Task<Void, Never>, pump: Task<Void, Never>)?
    private var generation = 0

    init(door: ClientDoor, maxPending: Int) {
        self.door = door
        fanout = Fanout(maxPending: maxPending)
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
            let pump = Task { [door, fanout] in
                let stream = await door.allEvents()
                ready.finish()
                for await e in stream { fanout.broadcast(Self.encode(e)) }
                if !Task.isCancelled {
                    fanout.endAll()  // the coordinator is stopping, or the hub fell behind
                    await self.ended(gen)
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

    func add() -> EventReader {
        let r = EventReader(fanout: self)
        lock.withLock {
            r.position = base + chunks.count
            readers[ObjectIdentifier(r)] = r
        }
        return r
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
