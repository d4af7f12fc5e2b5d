/// Which run ids a request is working on right now, and nothing else keeps that: a submit
/// between its id check and its first write, or an edit (a resume, update, fork, rewind, a
/// cancel of a stored run, an import, a cleanup's deletes) between its read and its write. A pure
/// value the `Engine` owns, asked together with the runs it holds, so that "is this id free" is
/// one answer: two resumes racing for one question cannot both win, and a submit cannot take an
/// id a fork is writing. Tested alone (`RunClaimsTests`).
struct RunClaims {
    enum Kind: Sendable { case submit, edit }

    private(set) var submitting: Set<String> = []
    private(set) var editing: Set<String> = []

    /// Takes `runID` for `kind`, or says why not. `active`: the engine holds the run (it is
    /// queued, running or paused in memory), which a submit may not reuse; an edit checks
    /// what an active run allows itself (a cancel may, a rewind may not).
    mutating func claim(_ runID: String, _ kind: Kind, active: Bool) -> String? {
        switch kind {
        case .submit:
            if active || submitting.contains(runID) || editing.contains(runID) {
                return "run \(runID) is still active; wait for it, cancel it, or submit with another --run-id"
            }
            submitting.insert(runID)
        case .edit:
            if submitting.contains(runID) || editing.contains(runID) {
                return "run \(runID) is being changed by another request right now (a resume, update, fork or cancel); look again with cairn status \(runID)"
            }
            editing.insert(runID)
        }
        return nil
    }

    /// Takes for an edit every id in `runIDs` no other request holds (a cleanup's deletes: the
    /// retention policy left out busy runs, but one may have been taken since); returns those taken.
    mutating func claimFree(_ runIDs: [String]) -> [String] {
        let free = runIDs.filter { !submitting.contains($0) && !editing.contains($0) }
        editing.formUnion(free)
        return free
    }

    mutating func release(_ runID: String, _ kind: Kind) {
        switch kind {
        case .submit: submitting.remove(runID)
        case .edit: editing.remove(runID)
        }
    }

    mutating func releaseAll(_ runIDs: [String]) { editing.subtract(runIDs) }

    func isClaimed(_ runID: String) -> Bool { submitting.contains(runID) || editing.contains(runID) }

    /// Every claimed id.
    var all: Set<String> { submitting.union(editing) }
}
