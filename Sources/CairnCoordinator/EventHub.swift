import CairnProtocol
import Foundation

/// Every watcher of run events, and the one way an event reaches them: a run's watchers (the
/// TCP `watch` and `GET /api/runs/{id}/events`), those that want only its final event, watchers
/// of every run (`GET /api/events?every=true`) and the dashboard's stream with task events held
/// back (`EventConflation`). It decides nothing about runs: the engine owns it, uses it on its
/// executor, and publishes the scheduler's notes through it.
///
/// A watcher that falls `buffer` events behind is dropped: its stream ends without a final
/// event (the door then says why), so a client that stops reading costs bounded memory.
final class EventHub {
    typealias Continuation = AsyncStream<Cairn_V1_RunEvent>.Continuation

    /// How many events a watcher may fall behind before it is dropped.
    static let buffer = 10_000

    private var perRun: [String: [UUID: Continuation]] = [:]
    private var finalOnly: [String: [UUID: Continuation]] = [:]
    private var everyRun: [UUID: Continuation] = [:]
    private var heldBack: [UUID: Continuation] = [:]
    private var conflation = EventConflation<Scheduler.RunNote>()
    /// Told of each watcher dropped for falling behind (a metric and a log line).
    private let dropped: (UUID) -> Void

    init(dropped: @escaping (UUID) -> Void) { self.dropped = dropped }

    /// Whether anyone watches this run (or every run): the scheduler builds notes only then.
    func watches(_ runID: String) -> Bool { perRun[runID] != nil || finalOnly[runID] != nil }
    var watchesEveryRun: Bool { !everyRun.isEmpty || !heldBack.isEmpty }

    /// A watcher of one run; `snapshot` is its first event (a watcher of the final event alone
    /// gets none, and it is not built for one).
    func subscribe(_ runID: String, finalOnly wantsFinalOnly: Bool,
                   snapshot: @autoclosure () -> Cairn_V1_RunEvent) -> (UUID, AsyncStream<Cairn_V1_RunEvent>) {
        let id = UUID()
        let (stream, continuation) = AsyncStream<Cairn_V1_RunEvent>.makeStream(bufferingPolicy: .bufferingOldest(Self.buffer))
        if wantsFinalOnly {
            finalOnly[runID, default: [:]][id] = continuation
        } else {
            perRun[runID, default: [:]][id] = continuation
            continuation.yield(snapshot())
        }
        return (id, stream)
    }

    /// A watcher of every run from now on; `conflated`: with task events held back.
    func subscribeAll(conflated: Bool) -> (UUID, AsyncStream<Cairn_V1_RunEvent>) {
        let id = UUID()
        let (stream, continuation) = AsyncStream<Cairn_V1_RunEvent>.makeStream(bufferingPolicy: .bufferingOldest(Self.buffer))
        if conflated { heldBack[id] = continuation } else { everyRun[id] = continuation }
        return (id, stream)
    }

    func unsubscribe(_ runID: String, _ id: UUID) {
        perRun[runID]?.removeValue(forKey: id)?.finish()
        if perRun[runID]?.isEmpty == true { perRun[runID] = nil }
        finalOnly[runID]?.removeValue(forKey: id)?.finish()
        if finalOnly[runID]?.isEmpty == true { finalOnly[runID] = nil }
    }

    func unsubscribeAll(_ id: UUID) {
        everyRun.removeValue(forKey: id)?.finish()
        heldBack.removeValue(forKey: id)?.finish()
        if heldBack.isEmpty { _ = conflation.take() }
    }

    /// A run left memory (ended or paused, its final event sent): its watchers' streams end.
    func runClosed(_ runID: String) {
        perRun.removeValue(forKey: runID)?.values.forEach { $0.finish() }
        finalOnly.removeValue(forKey: runID)?.values.forEach { $0.finish() }
    }

    /// A note to its watchers (final-only watchers hear only the end). Returns true when a held
    /// event opened a window: `flushHeld` is due `EventConflation.window` seconds from now.
    func publish(_ note: Scheduler.RunNote) -> Bool {
        let finals = note.final ? finalOnly[note.runID] ?? [:] : [:]
        let subs = perRun[note.runID] ?? [:]
        var heldNow = false
        var flushDue = false
        if !heldBack.isEmpty {
            switch conflation.offer(note, runID: note.runID, kind: note.kind, final: note.final) {
            case .held(let due): flushDue = due
            case .now: heldNow = true
            }
        }
        guard !subs.isEmpty || !finals.isEmpty || !everyRun.isEmpty || heldNow else { return flushDue }
        let e = Self.event(note)
        for (id, c) in subs where Self.full(c.yield(e)) { drop(id, c); perRun[note.runID]?[id] = nil }
        for (id, c) in finals where Self.full(c.yield(e)) { drop(id, c); finalOnly[note.runID]?[id] = nil }
        for (id, c) in everyRun where Self.full(c.yield(e)) { drop(id, c); everyRun[id] = nil }
        if heldNow { yieldHeldBack(e) }
        if perRun[note.runID]?.isEmpty == true { perRun[note.runID] = nil }
        if finalOnly[note.runID]?.isEmpty == true { finalOnly[note.runID] = nil }
        return flushDue
    }

    /// The held-back events of the window that closed, built now.
    func flushHeld() {
        for note in conflation.take() { yieldHeldBack(Self.event(note)) }
    }

    private func yieldHeldBack(_ e: Cairn_V1_RunEvent) {
        for (id, c) in heldBack where Self.full(c.yield(e)) { drop(id, c); heldBack[id] = nil }
    }

    private func drop(_ id: UUID, _ c: Continuation) {
        c.finish()
        dropped(id)
    }

    static func event(_ note: Scheduler.RunNote) -> Cairn_V1_RunEvent {
        var e = Cairn_V1_RunEvent()
        e.runID = note.runID
        e.kind = note.kind
        e.step = UInt32(note.step)
        e.node = note.node
        e.taskID = note.taskID
        e.worker = note.worker
        e.message = note.message
        e.attempt = UInt32(note.attempt)
        e.final = note.final
        e.run = RunReads.info(note.summary)
        return e
    }

    private static func full(_ r: Continuation.YieldResult) -> Bool {
        if case .dropped = r { return true }
        return false
    }
}
