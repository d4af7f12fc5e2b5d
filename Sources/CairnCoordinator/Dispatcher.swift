import CairnStore

/// Which ready task goes to which worker, and nothing else decides that: runs with ready tasks
/// take turns (one task per run per turn, so a long run cannot starve a short one), and a task
/// goes to the worker with the most free slots among those that run its kind (ties: the lower
/// id). It owns the connected workers and the turn order; what a worker holds is the
/// `LeaseTable`'s, asked for free slots. A pure value (`DispatcherTests`).
struct Dispatcher {
    private(set) var workers: [String: Scheduler.WorkerState] = [:]
    /// Runs with ready tasks, in turn order.
    private var turns: [String] = []
    private var index = 0

    mutating func join(_ w: Scheduler.WorkerState) { workers[w.info.id] = w }

    mutating func remove(_ workerID: String) -> Scheduler.WorkerState? { workers.removeValue(forKey: workerID) }

    /// Slots a worker has free for a new task (none while it drains).
    static func free(_ w: Scheduler.WorkerState, _ leases: LeaseTable) -> Int {
        w.draining ? 0 : max(0, w.info.slots - leases.count(heldBy: w.info.id))
    }

    /// A run has ready tasks: it takes turns (once, however often it is told).
    mutating func activate(_ runID: String) {
        if !turns.contains(runID) { turns.append(runID) }
    }

    /// A run left memory: it takes no more turns.
    mutating func forget(_ runID: String) { turns.removeAll { $0 == runID } }

    /// The next ready task to hand out and the worker to take it, taken off its run's queue; nil
    /// when every slot is taken or no worker free runs what is ready. A run with nothing ready
    /// leaves the turns.
    mutating func next(runs: [String: ActiveRun], leases: LeaseTable) -> (ActiveRun, TaskState, Scheduler.WorkerState)? {
        var idleTurns = 0
        while !turns.isEmpty, idleTurns < turns.count {
            if index >= turns.count { index = 0 }
            guard let run = runs[turns[index]], run.record.status.isActive, let t = run.peekReady() else {
                turns.remove(at: index)
                continue
            }
            guard let w = pick(for: t.kind, leases) else {
                // Every slot is taken: stop here, and this run is first in line for the next free slot.
                if workers.values.allSatisfy({ Self.free($0, leases) == 0 }) { return nil }
                // Slots are free, but not on a worker that runs this kind: let the next run try.
                idleTurns += 1
                index += 1
                continue
            }
            _ = run.popReady()
            index += 1
            return (run, t, w)
        }
        return nil
    }

    private func pick(for kind: String, _ leases: LeaseTable) -> Scheduler.WorkerState? {
        var best: Scheduler.WorkerState?
        var bestFree = 0
        for w in workers.values where w.accepts(kind) {
            let f = Self.free(w, leases)
            guard f > 0 else { continue }
            if best == nil || f > bestFree || (f == bestFree && w.info.id < best!.info.id) { (best, bestFree) = (w, f) }
        }
        return best
    }
}
