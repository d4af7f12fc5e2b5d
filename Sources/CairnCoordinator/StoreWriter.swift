import CairnCore
import CairnStore
import Logging
import NIOCore

/// The one writer in front of a store: batches are queued without waiting, committed strictly in
/// the order they were queued, and whatever queues up while a transaction is in flight goes into
/// the next one (group commit). Each caller learns through its callback when its batch is durable.
///
/// This is what lets the scheduler pipeline: it plans and dispatches the next step at once and
/// only *acknowledges* (worker acks, a run reported finished) once the write is durable. Because
/// commits keep their order, the durable state is always a prefix of what the scheduler did; a
/// crash loses at most tasks that will run again, never a write applied twice.
///
/// A commit that fails is retried (with backoff) at the head of the queue until it succeeds:
/// nothing queued is dropped or reordered. `onFailure` says each time a commit fails (the
/// scheduler holds new work until a commit succeeds again). A failure retrying cannot heal
/// (`StoreFault.permanent`: a damaged file) stops the writer instead: the batches queued and any
/// queued later fail at once with that error, and none is ever committed.
///
/// A `hot` batch that finds the writer idle waits `hotLinger` before its commit starts, so the
/// steps that finish meanwhile share that commit (and its round trip, thread hops and the acks
/// that follow it): a chain of quick steps makes one Redis write per few steps instead of one per
/// step. `sync` batches never wait: whoever asked for `sync` is waiting for SQLite.
///
/// Confined to one event loop: every method must be called on `loop` (the scheduler's executor).
final class StoreWriter {
    public typealias Completion = (Result<Void, any Error>) -> Void

    public let store: any CheckpointStore
    public let loop: any EventLoop
    private let logger: Logger
    private let maxRows: Int
    private let hotLinger: TimeAmount
    /// A linger's kick is scheduled (the head group is hot and waits for company).
    private var lingering = false

    private struct Group {
        var durability: Durability
        var batch = StoreBatch()
        var completions: [Completion] = []
        /// Rows as queued (merging may write fewer: a run's record once per group).
        var rows = 0
    }

    /// Groups waiting to be committed, oldest first (FIFO across durabilities).
    private var queue: [Group] = []
    private var inFlight = false
    private var attempts = 0

    public private(set) var transactions: UInt64 = 0
    public private(set) var rowsWritten: UInt64 = 0
    /// Rows queued and not yet durable (the scheduler holds new work past a limit).
    public private(set) var rowsQueued = 0
    /// Why the head batch cannot be written right now; nil when commits succeed.
    public private(set) var failure: String?
    /// The failure that stopped the writer for good (nothing is written after it).
    public private(set) var stopped: (any Error)?
    /// Called (on the loop) each time a commit fails, with why and whether it is permanent
    /// (then it is not retried).
    public var onFailure: ((String, Bool) -> Void)?
    /// Called (on the loop) once nothing is queued or in flight (`whenIdle`).
    private var idleWaiters: [() -> Void] = []

    public init(store: any CheckpointStore, loop: any EventLoop, logger: Logger, maxRows: Int = 5_000,
                hotLinger: TimeAmount = .microseconds(500)) {
        self.store = store
        self.loop = loop
        self.logger = logger
        self.maxRows = maxRows
        self.hotLinger = hotLinger
    }


    /// Queues `batch`; `done` is called on the loop once it has committed.
    public func enqueue(_ batch: StoreBatch, durability: Durability = .sync, _ done: Completion? = nil) {
        loop.assertInEventLoop()
        if let stopped {
            done?(.failure(stopped))
            return
        }
        if batch.isEmpty && queue.isEmpty {
            done?(.success(()))
            return
        }
        let rows = batch.rowCount
        // Join the newest group unless it is the one being committed right now.
        if let last = queue.indices.last, !(inFlight && last == 0), queue[last].durability == durability,
           queue[last].rows + rows <= maxRows {
            queue[last].batch.merge(batch)
            queue[last].rows += rows
            if let done { queue[last].completions.append(done) }
        } else {
            queue.append(Group(durability: durability, batch: batch, completions: done.map { [$0] } ?? [], rows: rows))
        }
        rowsQueued += rows
        if durability == .hot && !inFlight && queue.count == 1 && hotLinger > .zero {
            guard !lingering else { return }
            lingering = true
            let bound = NIOLoopBound(self, eventLoop: loop)
            loop.scheduleTask(in: hotLinger) {
                bound.value.lingering = false
                bound.value.kick()
            }
            return
        }
        kick()
    }

    /// Calls `done` on the loop once every batch queued so far (and any queued meanwhile) has
    /// committed: at once when nothing waits. A shutdown uses it to leave nothing unwritten.
    public func whenIdle(_ done: @escaping () -> Void) {
        loop.assertInEventLoop()
        if queue.isEmpty && !inFlight { done() } else { idleWaiters.append(done) }
    }

    /// Commits the next group, if none is in flight.
    private func kick() {
        guard !inFlight, let group = queue.first else { return }
        inFlight = true
        let store = self.store
        let bound = NIOLoopBound(self, eventLoop: loop)
        let loop = self.loop
        let batch = group.batch
        let durability = group.durability
        Task {
            let result: Result<Void, any Error>
            do {
                try await store.commit(batch, durability: durability)
                result = .success(())
            } catch {
                result = .failure(error)
            }
            loop.execute { bound.value.committed(result) }
        }
    }

    private func committed(_ result: Result<Void, any Error>) {
        inFlight = false
        switch result {
        case .success:
            let group = queue.removeFirst()
            transactions += 1
            rowsWritten += UInt64(group.batch.rowCount)
            rowsQueued -= group.rows
            attempts = 0
            if failure != nil {
                logger.notice("store writes succeed again; nothing was lost")
                failure = nil
            }
            kick()
            for c in group.completions { c(.success(())) }
            if queue.isEmpty && !inFlight && !idleWaiters.isEmpty {
                let waiters = idleWaiters
                idleWaiters = []
                for w in waiters { w() }
            }
        case .failure(let error) where StoreFault.isPermanent(error):
            failure = "\(error)"
            stopped = error
            let groups = queue
            queue = []
            rowsQueued = 0
            logger.critical("the store is damaged: writes stopped, nothing more is written (restart once the file is repaired)",
                            metadata: ["error": "\(error)", "batches_not_written": "\(groups.count)"])
            onFailure?("\(error)", true)
            for g in groups { for c in g.completions { c(.failure(error)) } }
            let waiters = idleWaiters
            idleWaiters = []
            for w in waiters { w() }
        case .failure(let error):
            attempts += 1
            failure = "\(error)"
            let delay = min(5_000, 50 << min(attempts - 1, 7))
            logger.error("store write failed; retrying the same batch",
                         metadata: ["error": "\(error)", "rows": "\(queue.first?.batch.rowCount ?? 0)",
                                    "attempt": "\(attempts)", "retry_in_ms": "\(delay)"])
            let bound = NIOLoopBound(self, eventLoop: loop)
            loop.scheduleTask(in: .milliseconds(Int64(delay))) { bound.value.kick() }
            onFailure?("\(error)", false)
        }
    }
}
