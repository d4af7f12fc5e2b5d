@testable import CairnCoordinator
import Testing

/// What the dashboard's stream (`GET /api/events`) holds back: each run's newest task event or
/// checkpoint per window; every other event at once, replacing what is held of its run.
@Suite struct EventConflationTests {
    @Test func taskEventsAreHeldBackToTheNewestPerRunAndLifecycleEventsGoAtOnce() {
        var c = EventConflation<String>()
        func offer(_ run: String, _ kind: String, final: Bool = false) -> EventConflation<String>.Decision {
            c.offer("\(run):\(kind)", runID: run, kind: kind, final: final)
        }
        #expect(offer("a", "started") == .now, "a lifecycle event is not held")
        #expect(offer("a", "task_started") == .held(flushDue: true), "the first held event asks for a flush")
        #expect(offer("a", "task_finished") == .held(flushDue: false))
        #expect(offer("b", "checkpoint") == .held(flushDue: false))
        #expect(offer("a", "checkpoint") == .held(flushDue: false))
        #expect(c.take() == ["a:checkpoint", "b:checkpoint"], "one per run, its newest, oldest run first")
        #expect(c.isEmpty)
        // A run's final event replaces what is held of it and never waits; others stay held.
        #expect(offer("a", "task_started") == .held(flushDue: true))
        #expect(offer("b", "progress") == .held(flushDue: false))
        #expect(offer("a", "finished", final: true) == .now)
        #expect(offer("b", "task_failed", final: true) == .now, "anything final goes at once")
        #expect(c.take() == [], "nothing of a after its end, nor of b")
        #expect(offer("b", "task_started") == .held(flushDue: true), "a flush starts a new window")
    }
}
