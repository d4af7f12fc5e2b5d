@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnStore
import Testing

/// A finished task's stored form reads back as the outcome it was.
@Suite struct StoredOutcomeTests {
    @Test func anOutcomeReadsBackAsWrittenAndAPlainOneNeedsNoControlRecord() {
        let plain = TaskOutcome(taskID: "t1", node: "a", writes: [("log", .string("x")), ("n", .int(2))])
        let rows = StoredOutcome.rows(plain, runID: "r", checkpointID: "c", cost: 0, apiCalls: 0)
        #expect(rows.map(\.idx) == [0, 1], "writes alone: the node is the planned one")
        #expect(StoredOutcome.outcome(taskID: "t1", node: "a", records: rows.reversed()) == plain)

        var routed = TaskOutcome(taskID: "t2", node: "b", writes: [], goto: ["c"], sends: [(node: "d", input: .int(1))],
                                 interrupt: .string("ok?"))
        routed.interruptID = "i-1"
        let stored = StoredOutcome.rows(routed, runID: "r", checkpointID: "c", cost: 0.5, apiCalls: 2)
        #expect(stored.count == 1 && stored[0].idx == PendingWriteRecord.resultIdx && stored[0].channel == "__result__")
        #expect(stored[0].value["cost"] == .double(0.5) && stored[0].value["api_calls"] == .int(2))
        #expect(StoredOutcome.outcome(taskID: "t2", node: "planned", records: stored) == routed, "the control record's node wins")
        #expect(StoredOutcome.outcome(taskID: "t3", node: "a", records: []) == nil, "nothing stored: not finished")
    }
}
