import CairnCore
import Logging

/// Group commit in front of a store: callers hand in batches and wait; whatever arrives while a
/// transaction is in flight goes into the next one. Under load, many results share a transaction
/// (no per-task transaction); at rest a lone batch is written at once (no timer delay).
public actor StoreWriter {
    public let store: any CheckpointStore
    private let logger: Logger
    private let maxRows: Int
    private var pending: [Durability: StoreBatch] = [:]
    private var waiters: [Durability: [CheckedContinuation<Void, any Error>]] = [:]
    private var flushing = false

    public private(set) var transactions: UInt64 = 0
    public private(set) var rowsWritten: UInt64 = 0

    public init(store: any CheckpointStore, logger: Logger, maxRows: Int = 5_000) {
        self.store = store
        self.logger = logger
        self.maxRows = maxRows
    }

    /// Writes `batch` durably; returns when its transaction has committed. When nothing is in
    /// flight the caller commits at once (no hop to another task); otherwise it joins the group
    /// that commits next.
    public func write(_ batch: StoreBatch, durability: Durability = .sync) async throws {
        if batch.isEmpty { return }
        if flushing {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                pending[durability, default: StoreBatch()].merge(batch)
                waiters[durability, default: []].append(c)
            }
            return
        }
        flushing = true
        do {
            try await store.commit(batch, durability: durability)
            transactions += 1
            rowsWritten += UInt64(batch.rowCount)
        } catch {
            logger.error("store write failed", metadata: ["error": "\(error)", "rows": "\(batch.rowCount)"])
            handOver()
            throw error
        }
        handOver()
    }

    /// Lets the groups that queued up during a commit go next.
    private func handOver() {
        if waiters.isEmpty {
            flushing = false
        } else {
            Task { await self.drain() }
        }
    }

    private func drain() async {
        while let durability = waiters.keys.sorted(by: { $0.rawValue < $1.rawValue }).first {
            let batch = pending.removeValue(forKey: durability) ?? StoreBatch()
            let group = waiters.removeValue(forKey: durability) ?? []
            do {
                try await store.commit(batch, durability: durability)
                transactions += 1
                rowsWritten += UInt64(batch.rowCount)
                group.forEach { $0.resume() }
            } catch {
                logger.error("store write failed", metadata: ["error": "\(error)", "rows": "\(batch.rowCount)"])
                group.forEach { $0.resume(throwing: error) }
            }
        }
        flushing = false
    }
}
