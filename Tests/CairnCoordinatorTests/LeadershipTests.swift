@testable import CairnCoordinator
import CairnStore
import Testing

/// The leadership decider with plain numbers for time: no database, no sleep.
struct LeadershipTests {
    let other = Leadership.Leader(holder: "b", epoch: 7, address: "10.0.0.2:7400")

    @Test func aStandbyClaimsAtOnceThenEveryClaimIntervalUntilItWins() {
        var l = Leadership(timing: .init(lease: 3), now: 0)
        #expect(l.due(now: 0) == .claim)
        #expect(l.due(now: 0.1) == nil, "one request at a time")
        #expect(l.record(.claimRefused(leader: other), now: 0.2) == nil)
        #expect(l.role == .standby(leader: other))
        #expect(l.due(now: 0.5) == nil)
        #expect(l.due(now: 0.7) == .claim)
        #expect(l.record(.claimed(epoch: 8), now: 0.8) == .becomeActive(epoch: 8))
        #expect(l.role == .active(epoch: 8) && l.isActive)
    }

    @Test func anActiveOneRenewsEveryThirdOfTheLeaseAndStepsDownWhenTheDatabaseGaveTheLeadAway() {
        var l = Leadership(timing: .init(lease: 3), now: 0)
        _ = l.due(now: 0)
        _ = l.record(.claimed(epoch: 1), now: 0)
        #expect(l.due(now: 0.9) == nil)
        #expect(l.due(now: 1.0) == .renew(epoch: 1))
        #expect(l.record(.renewed, now: 1.01) == nil)
        #expect(abs((l.sinceRenewal(now: 1.5) ?? 0) - 0.49) < 1e-9)
        #expect(l.due(now: 2.01) == .renew(epoch: 1))
        let action = l.record(.renewRefused(leader: other), now: 2.05)
        guard case .stepDown(let why) = action else { Issue.record("no step down: \(String(describing: action))"); return }
        #expect(why.contains("epoch 7") && why.contains("10.0.0.2:7400"), "\(why)")
        #expect(l.due(now: 10) == nil, "a stepped-down coordinator asks nothing more")
        #expect(l.record(.renewed, now: 10) == nil, "a late answer changes nothing")
    }

    @Test func aFencedWriteStepsDownEvenWithARenewalOutAndOnlyOnce() {
        var l = Leadership(timing: .init(lease: 3), now: 0)
        _ = l.due(now: 0)
        _ = l.record(.claimed(epoch: 4), now: 0)
        #expect(l.due(now: 1) == .renew(epoch: 4))
        #expect(l.record(.fenced(leader: other), now: 1.1) != nil)
        #expect(l.record(.fenced(leader: other), now: 1.2) == nil)
        #expect(l.record(.renewed, now: 1.3) == nil)
        if case .steppedDown = l.role {} else { Issue.record("\(l.role)") }
    }

    @Test func anUnreachableDatabaseKeepsTheRoleAndRetriesSooner() {
        var l = Leadership(timing: .init(lease: 3), now: 0)
        _ = l.due(now: 0)
        _ = l.record(.claimed(epoch: 2), now: 0)
        #expect(l.due(now: 1) == .renew(epoch: 2))
        #expect(l.record(.databaseFailed("connection refused"), now: 1.2) == nil)
        #expect(l.role == .active(epoch: 2), "nobody can take over without the database either; the fence finds out if one did")
        #expect(l.lastFailure == "connection refused")
        #expect(l.due(now: 1.6) == nil && l.due(now: 1.7) == .renew(epoch: 2))
        #expect(l.record(.renewed, now: 1.8) == nil && l.lastFailure == nil)

        var s = Leadership(timing: .init(lease: 3), now: 0)
        #expect(s.due(now: 0) == .claim)
        #expect(s.record(.databaseFailed("down"), now: 0.1) == nil)
        #expect(s.isStandby && s.due(now: 0.6) == .claim)
    }

    @Test func timingFollowsTheLease() {
        let t = Leadership.Timing(lease: 6)
        #expect(t.renewEvery == 2 && t.claimEvery == 0.5)
        #expect(abs(Leadership.Timing(lease: 1.2).claimEvery - 0.2) < 1e-9)
    }
}
