@testable import CairnCoordinator
import CairnCore
import CairnProtocol
import CairnStore
import Foundation
import Testing

/// The event hub alone: who hears which note, held-back windows, watchers that fall behind.
@Suite struct EventHubTests {
    static func note(_ runID: String, _ kind: String, final: Bool = false) -> Scheduler.RunNote {
        let record = RunRecord(runID: runID, graphHash: "g", graphName: "g", graphVersion: 1, status: .running,
                               durability: "sync", input: .object([:]), createdAt: 0)
        return Scheduler.RunNote(runID: runID, kind: kind, step: 1, final: final,
                                 summary: RunSummary(record: record, tasksTotal: 1, tasksDone: 0, nextNodes: [], nodeCount: 1))
    }

    static func drain(_ stream: AsyncStream<Cairn_V1_RunEvent>) async -> [String] {
        var kinds: [String] = []
        for await e in stream { kinds.append(e.kind) }
        return kinds
    }

    @Test func eachWatcherHearsWhatItAskedForAndStreamsEndWithTheRun() async {
        let hub = EventHub { _ in }
        var snapshot = Cairn_V1_RunEvent()
        snapshot.kind = "snapshot"
        let (_, one) = hub.subscribe("r1", finalOnly: false, snapshot: snapshot)
        let (_, finalOnly) = hub.subscribe("r1", finalOnly: true, snapshot: snapshot)
        let (_, other) = hub.subscribe("r2", finalOnly: false, snapshot: snapshot)
        let (everyID, every) = hub.subscribeAll(conflated: false)
        #expect(hub.watches("r1") && hub.watches("r2") && !hub.watches("r3") && hub.watchesEveryRun)
        for kind in ["task_started", "task_finished", "checkpoint"] { _ = hub.publish(Self.note("r1", kind)) }
        _ = hub.publish(Self.note("r1", "finished", final: true))
        hub.runClosed("r1")
        hub.runClosed("r2")
        hub.unsubscribeAll(everyID)
        #expect(await Self.drain(one) == ["snapshot", "task_started", "task_finished", "checkpoint", "finished"])
        #expect(await Self.drain(finalOnly) == ["finished"])
        #expect(await Self.drain(other) == ["snapshot"])
        #expect(await Self.drain(every) == ["task_started", "task_finished", "checkpoint", "finished"])
        #expect(!hub.watches("r1") && !hub.watchesEveryRun)
    }

    @Test func theHeldBackStreamGetsTheNewestOfAWindowAndLifecycleEventsAtOnce() async {
        let hub = EventHub { _ in }
        let (id, held) = hub.subscribeAll(conflated: true)
        #expect(hub.publish(Self.note("r1", "task_started")), "the first held event opens a window")
        #expect(!hub.publish(Self.note("r1", "task_finished")), "one window at a time")
        #expect(!hub.publish(Self.note("r1", "checkpoint")))
        hub.flushHeld()
        #expect(hub.publish(Self.note("r1", "running")))
        _ = hub.publish(Self.note("r1", "finished", final: true))  // goes now, and replaces what was held
        hub.flushHeld()
        hub.unsubscribeAll(id)
        #expect(await Self.drain(held) == ["checkpoint", "finished"])
    }

    @Test func aWatcherThatStopsReadingIsDroppedAndTold() async {
        let dropped = Dropped()
        let hub = EventHub { id in dropped.ids.append(id) }
        var snapshot = Cairn_V1_RunEvent()
        snapshot.kind = "snapshot"
        let (id, stream) = hub.subscribe("r1", finalOnly: false, snapshot: snapshot)
        for _ in 0..<EventHub.buffer { _ = hub.publish(Self.note("r1", "progress")) }
        #expect(dropped.ids == [id], "the snapshot and buffer-1 events fit; the next one does not")
        #expect(!hub.watches("r1"))
        let kinds = await Self.drain(stream)
        #expect(kinds.count == EventHub.buffer && kinds.last == "progress", "what it had stays readable, then the stream ends")
    }

    final class Dropped: @unchecked Sendable { var ids: [UUID] = [] }
}
