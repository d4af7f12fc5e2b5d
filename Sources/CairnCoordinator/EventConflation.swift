/// Which of every run's events a dashboard's stream holds back (pure; the engine carries it out
/// for the conflated all-runs subscription, `GET /api/events`).
///
/// A run's task events (`task_started`, `task_finished`, `task_failed`, `progress`), its
/// `checkpoint`s and `running` (its first task is with a worker) are held back, the newest per run replacing the one before, and go out together
/// when the window (20 ms) closes; any other event (`started`, `paused`, `finished`, anything
/// final) goes out at once and replaces what is held of its run, which it is newer than. So a
/// run's events stay in order, and what a dashboard costs the engine does not grow with how fast
/// runs step: a held event is a dictionary entry, built into an event only when it goes out.
struct EventConflation<Item> {
    static var window: Double { 0.020 }
    static var heldKinds: Set<String> { ["task_started", "task_finished", "task_failed", "progress", "checkpoint", "running"] }

    enum Decision: Equatable {
        /// Held back; `flushDue`: the first held since the last flush, so one must be scheduled.
        case held(flushDue: Bool)
        /// Goes out now (what was held of its run is dropped).
        case now
    }

    private var held: [String: Item] = [:]
    private var order: [String] = []
    private var scheduled = false

    var isEmpty: Bool { order.isEmpty }

    mutating func offer(_ item: Item, runID: String, kind: String, final: Bool) -> Decision {
        if !final && Self.heldKinds.contains(kind) {
            if held.updateValue(item, forKey: runID) == nil { order.append(runID) }
            if scheduled { return .held(flushDue: false) }
            scheduled = true
            return .held(flushDue: true)
        }
        if held.removeValue(forKey: runID) != nil { order.removeAll { $0 == runID } }
        return .now
    }

    /// What is held, oldest run first; the window is closed.
    mutating func take() -> [Item] {
        scheduled = false
        defer { held = [:]; order = [] }
        return order.compactMap { held[$0] }
    }
}
