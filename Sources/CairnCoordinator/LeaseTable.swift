/// Every running attempt's lease, and nothing else keeps one: which task of which run a worker
/// holds, under which token, until when. A pure value with no clock of its own (`now` is passed
/// in), tested alone (`LeaseTableTests`); the `Scheduler` asks it and carries out the rest.
///
///     grant ──► held ──► end(.completed)   a result under the current token
///                  ├──► end(.fenced)      its worker was lost (connection ended, or silent)
///                  ├──► end(.expired)     past its deadline (`overdue(at:)`)
///                  └──► end(.revoked)     its run ended first (cancelled, failed)
///
/// A token is `<epoch>.<n>`: a token from another coordinator's term is never current here, and
/// an ended token is remembered with how it ended, so a late result can be told why it is stale.
struct LeaseTable {
    struct Lease: Equatable {
        let token: String
        let runID: String
        let taskID: String
        let workerID: String
        /// When the attempt is over its node's timeout (and grace); nil: no timeout.
        let deadline: Double?
    }

    /// How a lease that is no longer current ended.
    enum End: String { case fenced, expired, revoked, completed }

    struct TaskKey: Hashable {
        let runID: String
        let taskID: String
    }

    let epoch: UInt64
    private var issued: UInt64 = 0
    private var byToken: [String: Lease] = [:]
    private var byTask: [TaskKey: String] = [:]
    private var byWorker: [String: Set<String>] = [:]
    private var ended: [String: End] = [:]
    /// How many ended tokens are remembered (a late result older than that is only "unknown").
    let rememberEnded: Int

    init(epoch: UInt64, rememberEnded: Int = 100_000) {
        self.epoch = epoch
        self.rememberEnded = rememberEnded
    }

    /// A new lease for a task on a worker. A task holds at most one: granting again ends the
    /// previous one as revoked (the scheduler never does; the table stays consistent if it did).
    mutating func grant(runID: String, taskID: String, to workerID: String, deadline: Double?) -> Lease {
        if let old = byTask[TaskKey(runID: runID, taskID: taskID)] { end(old, .revoked) }
        issued += 1
        let lease = Lease(token: "\(epoch).\(issued)", runID: runID, taskID: taskID, workerID: workerID, deadline: deadline)
        byToken[lease.token] = lease
        byTask[TaskKey(runID: runID, taskID: taskID)] = lease.token
        byWorker[workerID, default: []].insert(lease.token)
        return lease
    }

    /// The current lease under `token`, if it is current.
    func lease(_ token: String) -> Lease? { byToken[token] }

    /// The current lease of a task, if it is running.
    func lease(runID: String, taskID: String) -> Lease? {
        byTask[TaskKey(runID: runID, taskID: taskID)].flatMap { byToken[$0] }
    }

    /// The leases a worker holds, in the order they were granted.
    func held(by workerID: String) -> [Lease] {
        (byWorker[workerID] ?? []).compactMap { byToken[$0] }.sorted { Self.order($0.token, $1.token) }
    }

    func count(heldBy workerID: String) -> Int { byWorker[workerID]?.count ?? 0 }

    /// Current leases (running attempts).
    var count: Int { byToken.count }

    /// Leases past their deadline at `now`, in the order they were granted.
    func overdue(at now: Double) -> [Lease] {
        byToken.values.filter { ($0.deadline ?? .infinity) < now }.sorted { Self.order($0.token, $1.token) }
    }

    /// Ends a lease: no task or worker holds it from now. Returns it, or nil when it was not current.
    @discardableResult
    mutating func end(_ token: String, _ how: End) -> Lease? {
        guard let lease = byToken.removeValue(forKey: token) else { return nil }
        byTask[TaskKey(runID: lease.runID, taskID: lease.taskID)] = nil
        byWorker[lease.workerID]?.remove(token)
        if byWorker[lease.workerID]?.isEmpty == true { byWorker[lease.workerID] = nil }
        if how != .completed {
            if ended.count >= rememberEnded { ended.removeAll(keepingCapacity: true) }
            ended[token] = how
        }
        return lease
    }

    /// How a token that is not current ended: nil when it was never issued here (another
    /// coordinator's term), completed, or is too old to be remembered.
    func howEnded(_ token: String) -> End? { ended[token] }

    /// Tokens in the order they were granted (`7.9` before `7.10`).
    static func order(_ a: String, _ b: String) -> Bool {
        let (x, y) = (a.split(separator: "."), b.split(separator: "."))
        guard x.count == 2, y.count == 2, let xe = UInt64(x[0]), let ye = UInt64(y[0]), let xn = UInt64(x[1]), let yn = UInt64(y[1]) else { return a < b }
        return (xe, xn) < (ye, yn)
    }
}
