@testable import CairnCoordinator
import CairnCore
import CairnProtocol
import CairnStore
@testable import CairnWorker
import Foundation
import Testing

/// The coordinator's mirror of a worker's state cache (StateMirror) against the worker's cache
/// itself (StateCache): each assignment's parts, applied in order, must build exactly the state
/// the task would have been sent whole, while only what changed travels.
@Suite struct StateCacheTests {
    /// exec nodes read the whole state; `log` grows by one item a step, `topic` is set once.
    let loop = """
        name: loop
        state:
          log: { reducer: append }
          topic: {}
        nodes:
          a: { run: exec, command: "true" }
          b: { run: exec, command: "true" }
          c: { run: exec, command: "true" }
          d: { run: exec, command: "true" }
        edges:
          - { from: START, to: a }
          - { from: a, to: b }
          - { from: b, to: c }
          - { from: c, to: d }
          - { from: d, to: END }
        """

    /// Runs the chain on whatever joined, answering every assignment with `writes(step)`; each
    /// state the worker builds (through `caches`) must equal what the run's state is then.
    func drive(_ h: inout Harness, caches: [String: StateCache], runID: String = "r1", skip: Int = 0,
               writes: (Int) -> String, answer: (Cairn_V1_TaskAssignment, Int) -> Cairn_V1_TaskResult? = { _, _ in nil })
        throws -> [Cairn_V1_TaskAssignment] {
        var seen: [Cairn_V1_TaskAssignment] = []
        var step = 0
        while let d = Harness.dispatches(h.log).dropFirst(skip + seen.count).first {
            seen.append(d.task)
            step += 1
            if caches.isEmpty {
                // No worker cache in play: what the mirror sends is checked by the test itself.
            } else if let cache = caches[d.worker], StateCache.uses(d.task) {
                let built = try cache.apply(d.task).get().json
                let run = try #require(h.scheduler.runs[runID])
                #expect(try JSONValue.parse(built) == JSONValue.object(run.state),
                        "step \(step): run at \(run.checkpoint.step) task \(d.task.step) \(d.task.runID) \(JSONValue.object(run.state).compactString.prefix(80)) worker: \(String(decoding: built, as: UTF8.self)) parts \(d.task.stateParts.map { "\($0.channel):\($0.kind):\($0.keep):\(String(decoding: $0.valueJson, as: UTF8.self))" })")
            } else {
                #expect(d.task.stateParts.isEmpty)
            }
            let r = answer(d.task, step) ?? Harness.ok(d.task, writes: writes(step))
            h.send(.result(workerID: d.worker, r))
            h.commitAll()
            if Harness.dispatches(h.log).count == skip + seen.count {
                // A retry waits its backoff.
                h.now += 600
                for w in h.scheduler.workers.keys { h.send(.heartbeat(workerID: w, tasks: [])) }
                h.send(.tick)
            }
        }
        return seen
    }

    @Test func aWorkerThatKeepsTheStateIsSentOnlyWhatChanged() throws {
        var h = Harness()
        h.join("w1", stateCache: 1 << 20)
        try h.submit(loop)
        let big = String(repeating: "x", count: 400)
        let sent = try drive(&h, caches: ["w1": StateCache()], writes: { step in
            step == 1 ? #"{"log": ["\#(big)"], "topic": "cats"}"# : #"{"log": ["\#(big)\#(step)"]}"#
        })
        #expect(sent.count == 4)
        #expect(h.lastRunRecord()?.status == .completed)
        let kinds = sent.map { $0.stateParts.map { "\($0.channel):\($0.kind)" } }
        // Before any write the channels have no version: sent whole and not kept. Then whole and
        // kept; then only the new item of `log`, and `topic` not at all.
        #expect(kinds[0] == ["log:statePartWhole"], "topic has no value yet")
        #expect(sent[0].stateParts.allSatisfy { !$0.keep })
        #expect(kinds[1] == ["log:statePartWhole", "topic:statePartWhole"])
        #expect(sent[1].stateParts.allSatisfy { $0.keep })
        #expect(kinds[2] == ["log:statePartAppend", "topic:statePartKept"])
        #expect(kinds[3] == ["log:statePartAppend", "topic:statePartKept"])
        let appended = try JSONValue.parse([UInt8](sent[3].stateParts[0].valueJson))
        #expect(appended == .array([.string(big + "3")]), "only step 3's item travels to step 4's task")
        #expect(sent[3].stateParts[1].valueJson.isEmpty)
        #expect(h.scheduler.counters.stateBytesKept > 2 * 400)
    }

    @Test func withoutACacheEveryTaskGetsItsStateWhole() throws {
        var h = Harness()
        h.join("w1")
        try h.submit(loop)
        let sent = try drive(&h, caches: [:], writes: { #"{"log": ["item\#($0)"]}"# })
        #expect(sent.count == 4)
        #expect(sent.allSatisfy { $0.stateParts.isEmpty && !$0.stateJson.isEmpty })
        #expect(try JSONValue.parse([UInt8](sent[3].stateJson))["log"] == .array((1...3).map { .string("item\($0)") }))
        #expect(h.scheduler.counters.stateBytesKept == 0)
    }

    @Test func aBudgetTooSmallForAValueKeepsNothingOfIt() throws {
        var h = Harness()
        h.join("w1", stateCache: 300)
        try h.submit(loop)
        let cache = StateCache()
        let sent = try drive(&h, caches: ["w1": cache], writes: { step in
            #"{"log": ["\#(String(repeating: "y", count: 100 * step))"]\#(step == 1 ? #", "topic": "t""# : "")}"#
        })
        // log outgrows 300 bytes at step 3: from then on it goes whole and is not kept; topic stays kept.
        #expect(sent[2].stateParts.map(\.kind) == [.statePartWhole, .statePartKept])
        #expect(!sent[2].stateParts[0].keep)
        #expect(sent[3].stateParts.map(\.kind) == [.statePartWhole, .statePartKept])
        #expect(cache.keptBytes <= 300)
        #expect(h.lastRunRecord()?.status == .completed)
    }

    @Test func runsThatEndOrLoseTheBudgetAreDroppedWithTheNextAssignment() throws {
        var h = Harness()
        h.join("w1", slots: 1, stateCache: 2_000)
        let cache = StateCache()
        try h.submit(loop, runID: "r1")
        let r1 = try drive(&h, caches: ["w1": cache], runID: "r1", writes: { #"{"log": ["\#(String(repeating: "a", count: 300))\#($0)"]}"# })
        #expect(h.scheduler.workers["w1"]?.mirror?.held.holds(run: "r1") == false, "an ended run is forgotten")
        try h.submit(loop, runID: "r2")
        let first = try #require(Harness.dispatches(h.log).last?.task)
        #expect(first.runID == "r2")
        #expect(first.cacheEvict == ["r1"], "the worker drops what it kept of r1 with the next assignment")
        _ = try drive(&h, caches: ["w1": cache], runID: "r2", skip: r1.count, writes: { _ in "{}" })
        #expect(cache.keptBytes <= 2_000)
    }

    @Test func aMismatchFailsOneAttemptAndTheRetryGoesWhole() throws {
        var h = Harness()
        h.join("w1", stateCache: 1 << 20)
        try h.submit(loop)
        let sent = try drive(&h, caches: [:], writes: { #"{"log": ["i\#($0)"]}"# }, answer: { a, step in
            step == 3 ? Harness.failed(a, "state cache: version cp000002 should be kept here and is not", kind: "state_cache") : nil
        })
        // Steps 1, 2, the failed attempt at 3, its retry, step 4.
        #expect(sent.count == 5)
        #expect(sent[2].stateParts.map(\.kind) == [.statePartAppend])
        #expect(sent[3].attempt == 2)
        #expect(sent[3].cacheEvict == ["r1"])
        #expect(sent[3].stateParts.allSatisfy { $0.kind == .statePartWhole && $0.keep })
        #expect(h.lastRunRecord()?.status == .completed)
    }
}
