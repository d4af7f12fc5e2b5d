import Foundation
import Logging
import PostgresNIO

/// How a request gets a connection and is answered in bounded time, whatever the server does.
///
/// ```
///  request ──► lease from the pool ──(within leaseTimeout)──► work on the connection ──► answer
///                  │ deadline first: LeaseTimeout            │ past workTimeout: WorkTimeout,
///                  │ (a late connection goes back unused)    │ the connection closed (its
///                  ▼                                         ▼ transaction rolls back)
///               transient StoreFault: the writer retries the batch, the coordinator holds
/// ```
///
/// Writes are idempotent (insert-or-ignore, upserts of the newest row) and a batch is retried
/// before the next is written, so a request reported failed that did reach the server is
/// harmless: its retry finds its rows, and PostgreSQL's row locks keep a retry behind it.
extension PostgresStore {
    /// Runs `work` on a pooled connection. Fails with `LeaseTimeout` when no connection is had
    /// within `leaseTimeout` (whichever comes first, the connection or the deadline, decides),
    /// and with `WorkTimeout` when `workTimeout` is given and the work has not ended that long
    /// after the lease deadline: its connection is closed so that nothing of it commits later.
    /// The caller is answered at the deadline even if the pool or the connection never answers.
    func leased<T: Sendable>(workTimeout: Duration? = nil, _ work: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let client = pool.current, pool = self.pool, timeout = leaseTimeout
        let gate = LeaseGate(pool: pool)
        let attempt = Task {
            try await client.withConnection { conn in
                guard gate.enter(conn) else { throw CancellationError() }
                defer { gate.finish() }
                return try await work(conn)
            }
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            if gate.abandon(LeaseTimeout(after: timeout, inUse: pool.connectionsInUse, limit: pool.maxConnections)) {
                attempt.cancel()
                return
            }
            guard let workTimeout else { return }
            try await Task.sleep(for: workTimeout)
            if let conn = gate.expire(WorkTimeout(after: timeout + workTimeout)) {
                attempt.cancel()
                try? await conn.close()
            }
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await gate.outcome(of: attempt)
        } onCancel: {
            attempt.cancel()
        }
    }

    /// `work` in one transaction on a leased connection; once this store is fenced (it leads
    /// among standby coordinators), the transaction first checks the leader row's epoch is still
    /// its own, holding the row `FOR SHARE` so that no claim can commit before it does.
    func transaction<T: Sendable>(workTimeout: Duration? = nil, _ work: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let fencing = self.fencing
        return try await leased(workTimeout: workTimeout) { conn in
            try await conn.withTransaction(logger: self.logger) { conn in
                if let epoch = fencing.epoch { try await self.checkFence(conn, epoch: epoch) }
                return try await work(conn)
            }
        }
    }
}

/// One request's race between its connection, its work and its deadlines, decided once under a
/// lock: the caller is answered by whichever ends first. A connection counts as in use from
/// `enter` until the work ends or is cut (a cut one that never returns is not counted forever).
final class LeaseGate: @unchecked Sendable {
    private enum State { case waiting, working(PostgresConnection), finished, failed }
    private let pool: PoolHolder
    private let lock = NSLock()
    private var state = State.waiting
    private var answer: (@Sendable (Result<any Sendable, any Error>) -> Void)?
    private var early: (any Error)?

    init(pool: PoolHolder) { self.pool = pool }

    /// The connection came: true when the work may run on it (the lease deadline has not passed).
    func enter(_ conn: PostgresConnection) -> Bool {
        let entered = lock.withLock { () -> Bool in
            guard case .waiting = state else { return false }
            state = .working(conn)
            return true
        }
        if entered { pool.inUse(+1) }
        return entered
    }

    /// The work ended (its result is on its way to the caller).
    func finish() {
        let ended = lock.withLock { () -> Bool in
            guard case .working = state else { return false }
            state = .finished
            return true
        }
        if ended { pool.inUse(-1) }
    }

    /// The lease deadline passed: true when no connection came first (the caller gets `error`).
    func abandon(_ error: any Error) -> Bool {
        let won = lock.withLock { () -> Bool in
            guard case .waiting = state else { return false }
            state = .failed
            return true
        }
        if won { fail(error) }
        return won
    }

    /// The work deadline passed: the connection to close when the work has not ended (the caller
    /// gets `error`).
    func expire(_ error: any Error) -> PostgresConnection? {
        let conn = lock.withLock { () -> PostgresConnection? in
            guard case .working(let c) = state else { return nil }
            state = .failed
            return c
        }
        if conn != nil {
            pool.inUse(-1)
            fail(error)
        }
        return conn
    }

    private func fail(_ error: any Error) {
        let a = lock.withLock { () -> (@Sendable (Result<any Sendable, any Error>) -> Void)? in
            if answer == nil { early = error }
            return answer
        }
        a?(.failure(error))
    }

    /// The work's result, or the deadline's error as soon as a deadline has won.
    func outcome<T: Sendable>(of attempt: Task<T, any Error>) async throws -> T {
        let any: any Sendable = try await withCheckedThrowingContinuation { (c: CheckedContinuation<any Sendable, any Error>) in
            let once = Once(c)
            let failedAlready = lock.withLock { () -> (any Error)? in
                answer = { once.resume(with: $0) }
                return early
            }
            if let failedAlready { once.resume(with: .failure(failedAlready)) }
            Task { once.resume(with: await attempt.result.map { $0 as any Sendable }) }
        }
        return any as! T  // the only success put in is the attempt's own T
    }

    /// A continuation resumed by whichever comes first.
    private final class Once: @unchecked Sendable {
        private let lock = NSLock()
        private var c: CheckedContinuation<any Sendable, any Error>?
        init(_ c: CheckedContinuation<any Sendable, any Error>) { self.c = c }
        func resume(with r: Result<any Sendable, any Error>) { lock.withLock { defer { c = nil }; return c }?.resume(with: r) }
    }
}

/// No connection within the lease timeout: every connection the pool may open is in use (a busy
/// pool), or the pool could not open one (the server is down, restarting or unreachable).
struct LeaseTimeout: Error, CustomStringConvertible {
    let after: Duration
    let inUse: Int
    let limit: Int

    var busy: Bool { inUse >= limit }

    var description: String {
        let s = after.components.seconds
        return busy
            ? "no free connection within \(s)s: all \(inUse) in use"
            : "no connection within \(s)s: the server is down, restarting or unreachable"
    }
}

/// A request that had its connection but no answer in time: the connection was closed, so its
/// transaction rolls back; the request is retried.
struct WorkTimeout: Error, CustomStringConvertible {
    let after: Duration
    var description: String { "no answer within \(after.components.seconds)s; the connection was closed" }
}

/// postgres-nio's pool, replaced by a fresh one when it cannot reach the server: after failed
/// connects the pool trips a circuit breaker and backs off for up to a minute, while a server
/// that is back (restarted, the network healed) should be used at once. At most one new pool a
/// second; the old one's queries end with it.
final class PoolHolder: @unchecked Sendable {
    private let lock = NSLock()
    private var leased = 0
    private let make: @Sendable () -> PostgresClient
    /// The most connections a pool opens.
    let maxConnections: Int
    private var client: PostgresClient
    private var runner: Task<Void, Never>
    private var madeAt = ContinuousClock.now
    private var closed = false

    init(maxConnections: Int, make: @escaping @Sendable () -> PostgresClient) {
        self.maxConnections = maxConnections
        self.make = make
        let client = make()
        self.client = client
        runner = Task { await client.run() }
    }

    var current: PostgresClient { lock.withLock { client } }

    /// Connections requests hold right now (a lease that times out while some are held means a
    /// busy pool, not a server that is gone).
    var connectionsInUse: Int { lock.withLock { leased } }
    func inUse(_ delta: Int) { lock.withLock { leased += delta } }

    func replace(logger: Logger) {
        lock.withLock {
            guard !closed, madeAt.duration(to: .now) >= .seconds(1) else { return }
            runner.cancel()
            let fresh = make()
            client = fresh
            runner = Task { await fresh.run() }
            madeAt = .now
        }
        logger.info("PostgreSQL unreachable: dialing again with a fresh connection pool")
    }

    func close() {
        lock.withLock {
            closed = true
            runner.cancel()
        }
    }
}
