@testable import CairnCoordinator
import Testing

/// The ledger of writes not yet durable, alone: no writer, no store.
@Suite struct CommitLedgerTests {
    @Test func effectsWaitForTheirOwnWriteAndRowsCountUntilDurable() {
        var l = CommitLedger<String>(maxQueuedRows: 10)
        let a = l.record(rowCount: 4, then: ["ack a"])
        let b = l.record(rowCount: 7, then: ["ack b", "reply"])
        #expect(a != b && l.queuedRows == 11 && l.holding, "more than 10 rows not yet durable hold new work")
        let afterB = l.committed(b).effects
        #expect(afterB == ["ack b", "reply"])
        #expect(l.queuedRows == 4 && !l.holding)
        let afterA = l.committed(a).effects, again = l.committed(a).effects
        #expect(afterA == ["ack a"])
        #expect(again.isEmpty, "a write's effects are handed out once")
        #expect(l.queuedRows == 0)
    }

    @Test func aFailingStoreHoldsUntilACommitAndADamagedOneRefusesForGood() {
        var l = CommitLedger<String>(maxQueuedRows: 100)
        let id = l.record(rowCount: 1, then: ["reply"])
        let first = l.failed("disk full", permanent: false), second = l.failed("disk full", permanent: false)
        #expect(first, "the first failure of a spell is said")
        #expect(!second, "the next ones are not")
        #expect(l.holding && l.refusal("submitted")?.contains("the store refuses writes (disk full)") == true)
        let (effects, healed) = l.committed(id)
        #expect(effects == ["reply"] && healed && !l.holding && l.refusal("submitted") == nil)

        let lost = l.record(rowCount: 3, then: ["reply 2"])
        _ = l.failed("malformed page", permanent: true)
        #expect(l.refusal("cancelled")?.contains("the store is damaged") == true)
        let refused = l.abandoned(lost)
        #expect(refused == ["reply 2"] && l.queuedRows == 0)
        #expect(l.damaged)
    }
}
