@testable import CairnCoordinator
import Testing

/// The claims on run ids, alone: no engine, no store, no port.
@Suite struct RunClaimsTests {
    @Test func anIdIsTakenByOneRequestAtATime() {
        var c = RunClaims()
        #expect(c.claim("r", .edit, active: false) == nil)
        #expect(c.claim("r", .edit, active: false)?.contains("being changed by another request") == true, "a second resume loses")
        #expect(c.claim("r", .submit, active: false)?.contains("still active") == true, "a submit cannot take an id being edited")
        c.release("r", .edit)
        #expect(c.claim("r", .edit, active: false) == nil, "free again once released")
    }

    @Test func aSubmitRefusesAnActiveRunAndAnEditLeavesThatToItsOwnRule() {
        var c = RunClaims()
        #expect(c.claim("a", .submit, active: true)?.contains("still active") == true)
        #expect(!c.isClaimed("a"), "a refused claim takes nothing")
        #expect(c.claim("a", .edit, active: true) == nil, "a cancel of an active run is the edit's own decision")
        #expect(c.claim("b", .submit, active: false) == nil)
        #expect(c.claim("b", .edit, active: false) != nil, "an edit waits for a submit of the same id")
        #expect(c.all == ["a", "b"])
        c.release("b", .submit)
        #expect(c.all == ["a"])
    }

    @Test func aCleanupTakesWhatIsFreeAndLeavesWhatAnotherRequestHolds() {
        var c = RunClaims()
        _ = c.claim("busy", .edit, active: false)
        _ = c.claim("new", .submit, active: false)
        #expect(c.claimFree(["x", "busy", "new", "y"]) == ["x", "y"])
        #expect(c.all == ["busy", "new", "x", "y"])
        #expect(c.claim("x", .edit, active: false) != nil, "a resume of a run being deleted is refused")
        c.releaseAll(["x", "y"])
        #expect(c.all == ["busy", "new"])
    }
}
