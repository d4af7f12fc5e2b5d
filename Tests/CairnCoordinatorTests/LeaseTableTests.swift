@testable import CairnCoordinator
import Testing

/// The lease table alone: tokens, holders, ends and deadlines, with time passed in.
@Suite struct LeaseTableTests {
    @Test func aGrantIsFoundByTokenByTaskAndByWorkerUntilItEnds() {
        var t = LeaseTable(epoch: 7)
        let a = t.grant(runID: "r1", taskID: "t1", to: "w1", deadline: nil)
        let b = t.grant(runID: "r1", taskID: "t2", to: "w1", deadline: 50)
        let c = t.grant(runID: "r2", taskID: "t1", to: "w2", deadline: nil)
        #expect([a.token, b.token, c.token] == ["7.1", "7.2", "7.3"])
        #expect(t.lease("7.2") == b && t.lease(runID: "r2", taskID: "t1") == c && t.count == 3)
        #expect(t.held(by: "w1").map(\.token) == ["7.1", "7.2"] && t.count(heldBy: "w1") == 2 && t.count(heldBy: "w3") == 0)

        #expect(t.end("7.1", .completed) == a)
        #expect(t.lease("7.1") == nil && t.lease(runID: "r1", taskID: "t1") == nil)
        #expect(t.held(by: "w1").map(\.token) == ["7.2"] && t.count == 2)
        #expect(t.end("7.1", .fenced) == nil, "a lease ends once")
    }

    @Test func anEndedLeaseSaysHowItEndedAndOneFromAnotherTermNeverIsCurrent() {
        var t = LeaseTable(epoch: 7)
        for (i, how) in [LeaseTable.End.fenced, .expired, .revoked, .completed].enumerated() {
            let l = t.grant(runID: "r", taskID: "t\(i)", to: "w", deadline: nil)
            t.end(l.token, how)
        }
        #expect(t.howEnded("7.1") == .fenced && t.howEnded("7.2") == .expired && t.howEnded("7.3") == .revoked)
        #expect(t.howEnded("7.4") == nil, "a completed lease is not stale for a reason worth keeping")
        // Another coordinator's term (a token like this one's, from epoch 6) is unknown here.
        #expect(t.lease("6.1") == nil && t.howEnded("6.1") == nil && t.count == 0)
    }

    @Test func grantingATaskAgainRevokesItsPreviousLease() {
        var t = LeaseTable(epoch: 1)
        let first = t.grant(runID: "r", taskID: "t", to: "w1", deadline: nil)
        let second = t.grant(runID: "r", taskID: "t", to: "w2", deadline: nil)
        #expect(t.lease(first.token) == nil && t.howEnded(first.token) == .revoked)
        #expect(t.lease(runID: "r", taskID: "t") == second && t.count(heldBy: "w1") == 0 && t.count(heldBy: "w2") == 1)
    }

    @Test func overdueLeasesAreThosePastTheirDeadlineInGrantOrder() {
        var t = LeaseTable(epoch: 7)
        for i in 1...10 { _ = t.grant(runID: "r", taskID: "t\(i)", to: "w", deadline: i == 3 ? nil : Double(i)) }
        #expect(t.overdue(at: 0).isEmpty)
        #expect(t.overdue(at: 9.5).map(\.token) == ["7.1", "7.2", "7.4", "7.5", "7.6", "7.7", "7.8", "7.9"])
        #expect(t.overdue(at: 100).map(\.token).suffix(2) == ["7.9", "7.10"], "7.10 comes after 7.9, not before 7.2")
        #expect(!t.overdue(at: .greatestFiniteMagnitude).contains { $0.token == "7.3" }, "no deadline: never overdue")
    }

    @Test func howManyEndedLeasesAreRememberedIsBounded() {
        var t = LeaseTable(epoch: 1, rememberEnded: 3)
        for i in 1...4 { t.end(t.grant(runID: "r", taskID: "t\(i)", to: "w", deadline: nil).token, .fenced) }
        #expect(t.howEnded("1.4") == .fenced)
        #expect((1...3).allSatisfy { t.howEnded("1.\($0)") == nil }, "forgotten once the bound was reached")
    }
}
