/// Every task handed to a worker holds a lease; a result counts only under the lease its task
/// holds now. A pure state machine: no I/O, time passed in, so it is tested with a test clock.
///
/// ```
///            grant              heartbeat / progress
///   (none) ─────────► assigned ─────────────────────► running
///                        │  │                            │  │
///                        │  └──────── complete ──────────┼──┴──► completed   (result accepted)
///                        │                               │
///                        ├── worker lost / revoke ───────┴─────► fenced      (task handed out again)
///                        └── deadline passed (timeout) ────────► expired     (attempt failed)
/// ```
///
/// A lease is `<epoch>.<n>`: the coordinator's start time in milliseconds and a counter, so a
/// lease from before a restart can never match one issued after it.
struct LeaseTable: Sendable {
    enum State: String, Sendable, Equatable {
        case assigned, running, completed, expired, fenced
    }

    struct Lease: Sendable, Equatable {
        let token: String
        let runID: String
        let taskID: String
        let workerID: String
        let attempt: Int
        let grantedAt: Double
        /// When the attempt is over its time (node timeout plus grace); nil for no timeout.
        let deadline: Double?
        var state: State
        var lastHeartbeat: Double
    }

    /// Why a result was not accepted.
    enum Rejection: Error, Sendable, Equatable {
        case unknown               // never issued, or from an earlier coordinator epoch
        case notCurrent(State)     // fenced, expired or already completed
        case wrongWorker
    }

    let epoch: UInt64
    private var counter: UInt64 = 0
    private(set) var leases: [String: Lease] = [:]
    /// Leases that ended badly, kept so a late result can be told apart from garbage.
    private(set) var ended: [String: State] = [:]
    private(set) var fencedCount = 0
    private(set) var expiredCount = 0

    init(epoch: UInt64) { self.epoch = epoch }

    var active: Int { leases.count }

    mutating func grant(runID: String, taskID: String, workerID: String, attempt: Int, now: Double, timeout: Double?) -> Lease {
        counter += 1
        let lease = Lease(token: "\(epoch).\(counter)", runID: runID, taskID: taskID, workerID: workerID, attempt: attempt,
                          grantedAt: now, deadline: timeout.map { now + $0 }, state: .assigned, lastHeartbeat: now)
        leases[lease.token] = lease
        return lease
    }

    /// A heartbeat naming the lease: the worker is running the task.
    @discardableResult
    mutating func heartbeat(_ token: String, workerID: String, now: Double) -> Bool {
        guard var l = leases[token], l.workerID == workerID else { return false }
        l.state = .running
        l.lastHeartbeat = now
        leases[token] = l
        return true
    }

    /// A result arrived under `token`: accepted if the lease is current and the worker's own.
    mutating func complete(_ token: String, workerID: String) -> Result<Lease, Rejection> {
        guard var l = leases[token] else {
            if let s = ended[token] { return .failure(.notCurrent(s)) }
            return .failure(.unknown)
        }
        guard l.workerID == workerID else { return .failure(.wrongWorker) }
        l.state = .completed
        leases[token] = nil
        return .success(l)
    }

    /// Ends a lease whose task is no longer wanted under it (run cancelled or failed).
    mutating func revoke(_ token: String) {
        if leases.removeValue(forKey: token) != nil {
            ended[token] = .fenced
            fencedCount += 1
        }
    }

    /// The worker is presumed lost: every lease it holds is fenced; a result sent later under
    /// one of them is rejected.
    mutating func fence(workerID: String) -> [Lease] {
        let lost = end(where: { $0.workerID == workerID }, as: .fenced)
        fencedCount += lost.count
        return lost
    }

    /// Leases past their deadline: the attempt is over its time.
    mutating func expire(now: Double) -> [Lease] {
        let due = end(where: { ($0.deadline ?? .infinity) < now }, as: .expired)
        expiredCount += due.count
        return due
    }

    /// Ends every lease that matches, remembering how it ended so a late result can be told why.
    private mutating func end(where matches: (Lease) -> Bool, as state: State) -> [Lease] {
        var gone = leases.values.filter(matches).sorted { $0.grantedAt < $1.grantedAt || ($0.grantedAt == $1.grantedAt && $0.token < $1.token) }
        for i in gone.indices {
            gone[i].state = state
            leases[gone[i].token] = nil
            ended[gone[i].token] = state
        }
        if ended.count > 100_000 { ended.removeAll(keepingCapacity: true) }
        return gone
    }

    func lease(_ token: String) -> Lease? { leases[token] }
}
