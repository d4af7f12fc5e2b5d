@testable import CairnCoordinator
import Testing

/// The lease state machine with a test clock: times are plain numbers, no I/O, no sleeping.
@Suite struct LeaseTableTests {
    @Test func grantHeartbeatComplete() {
        var table = LeaseTable(epoch: 42)
        let l = table.grant(runID: "r", taskID: "t", workerID: "w1", attempt: 1, now: 0, timeout: nil)
        #expect(l.token == "42.1")
        #expect(l.state == .assigned)
        let beat = table.heartbeat(l.token, workerID: "w1", now: 1)
        #expect(beat)
        #expect(table.lease(l.token)?.state == .running)
        #expect(table.lease(l.token)?.lastHeartbeat == 1)
        guard case .success(let done) = table.complete(l.token, workerID: "w1") else { Issue.record("rejected"); return }
        #expect(done.state == .completed)
        #expect(table.active == 0)
        let r1 = table.complete(l.token, workerID: "w1")
        #expect(r1 == .failure(.unknown))
    }

    @Test func aFencedWorkersLateResultIsRejected() {
        var table = LeaseTable(epoch: 7)
        let a = table.grant(runID: "r", taskID: "t", workerID: "frozen", attempt: 1, now: 0, timeout: nil)
        let other = table.grant(runID: "r", taskID: "u", workerID: "alive", attempt: 1, now: 0, timeout: nil)
        let fenced = table.fence(workerID: "frozen")
        #expect(fenced.map(\.token) == [a.token])
        #expect(fenced.map(\.state) == [.fenced])
        #expect(table.fencedCount == 1)
        // The task is granted again to another worker under a new lease.
        let b = table.grant(runID: "r", taskID: "t", workerID: "alive", attempt: 2, now: 11, timeout: nil)
        #expect(b.token != a.token)
        // The frozen worker wakes and sends its result: rejected, and told why.
        let r2 = table.complete(a.token, workerID: "frozen")
        #expect(r2 == .failure(.notCurrent(.fenced)))
        guard case .success = table.complete(b.token, workerID: "alive") else { Issue.record("current lease rejected"); return }
        guard case .success = table.complete(other.token, workerID: "alive") else { Issue.record("untouched lease rejected"); return }
    }

    @Test func aResultFromAnotherWorkerOrAnotherEpochIsRejected() {
        var table = LeaseTable(epoch: 100)
        let l = table.grant(runID: "r", taskID: "t", workerID: "w1", attempt: 1, now: 0, timeout: nil)
        let r3 = table.complete(l.token, workerID: "w2")
        #expect(r3 == .failure(.wrongWorker))
        let r4 = table.complete("99.1", workerID: "w1")
        #expect(r4 == .failure(.unknown))
        let foreign = table.heartbeat(l.token, workerID: "w2", now: 1)
        #expect(!foreign)
    }

    @Test func deadlinesExpireAttemptsThatOverrunTheirTimeout() {
        var table = LeaseTable(epoch: 1)
        let quick = table.grant(runID: "r", taskID: "a", workerID: "w", attempt: 1, now: 10, timeout: 5)
        let slow = table.grant(runID: "r", taskID: "b", workerID: "w", attempt: 1, now: 10, timeout: 60)
        let none = table.grant(runID: "r", taskID: "c", workerID: "w", attempt: 1, now: 10, timeout: nil)
        let early = table.expire(now: 14.9)
        #expect(early.isEmpty)
        let due = table.expire(now: 15.1)
        #expect(due.map(\.token) == [quick.token])
        #expect(table.expiredCount == 1)
        let r5 = table.complete(quick.token, workerID: "w")
        #expect(r5 == .failure(.notCurrent(.expired)))
        let late = table.expire(now: 1_000)
        #expect(late.map(\.token) == [slow.token])
        #expect(table.lease(none.token) != nil)
    }

    @Test func revokedLeasesAreFenced() {
        var table = LeaseTable(epoch: 1)
        let l = table.grant(runID: "cancelled", taskID: "t", workerID: "w", attempt: 1, now: 0, timeout: nil)
        table.revoke(l.token)
        let r6 = table.complete(l.token, workerID: "w")
        #expect(r6 == .failure(.notCurrent(.fenced)))
    }
}
