import CairnCore
import CairnStore
import Foundation

/// A `CheckpointStore` decorator whose writes fail while `failing` is set, as a full disk or a
/// read-only file would make SQLite fail. Reads pass through.
public final class FaultyStore: CheckpointStore, @unchecked Sendable {
    public let inner: any CheckpointStore & MaintainedStore
    private let lock = NSLock()
    private var _failing = false
    private var _failedCommits = 0

    public init(_ inner: any CheckpointStore & MaintainedStore) { self.inner = inner }

    public var failing: Bool {
        get { lock.withLock { _failing } }
        set { lock.withLock { _failing = newValue } }
    }

    public var failedCommits: Int { lock.withLock { _failedCommits } }

    private var _damaged = false
    /// Writes fail as on a damaged file: a `StoreFault.permanent`, which no retry heals.
    public var damaged: Bool {
        get { lock.withLock { _damaged } }
        set { lock.withLock { _damaged = newValue } }
    }

    public struct DiskFull: Error, CustomStringConvertible {
        public var description: String { "database or disk is full (injected)" }
    }

    public func commit(_ batch: StoreBatch) async throws {
        let (fail, damaged): (Bool, Bool) = lock.withLock {
            if _failing || _damaged { _failedCommits += 1 }
            return (_failing, _damaged)
        }
        if damaged { throw StoreFault(.permanent, "database disk image is malformed (injected)") }
        if fail { throw DiskFull() }
        try await inner.commit(batch)
    }

    public func run(_ runID: String) async throws -> RunRecord? { try await inner.run(runID) }
    public func runs(_ filter: RunFilter) async throws -> [RunListing] { try await inner.runs(filter) }
    public func unfinishedRuns() async throws -> [RunListing] { try await inner.unfinishedRuns() }
    public func runCounts() async throws -> [RunStatus: Int] { try await inner.runCounts() }
    public func graph(_ hash: String) async throws -> GraphRecord? { try await inner.graph(hash) }
    public func bundle(_ hash: String) async throws -> [UInt8]? { try await inner.bundle(hash) }
    public func checkpoint(runID: String, namespace: String, checkpointID: String?) async throws -> CheckpointRecord? {
        try await inner.checkpoint(runID: runID, namespace: namespace, checkpointID: checkpointID)
    }
    public func checkpoints(runID: String, namespace: String, limit: Int) async throws -> [CheckpointRecord] {
        try await inner.checkpoints(runID: runID, namespace: namespace, limit: limit)
    }
    public func channelValue(runID: String, namespace: String, channel: String, version: String) async throws -> JSONValue {
        try await inner.channelValue(runID: runID, namespace: namespace, channel: channel, version: version)
    }
    public func pendingWrites(runID: String, namespace: String, checkpointID: String) async throws -> [PendingWriteRecord] {
        try await inner.pendingWrites(runID: runID, namespace: namespace, checkpointID: checkpointID)
    }
    public func taskExecutions(runID: String) async throws -> [TaskExecutionRecord] { try await inner.taskExecutions(runID: runID) }
    public func workers() async throws -> [WorkerRecord] { try await inner.workers() }
    public func records(_ query: RecordsQuery) async throws -> RecordsTable { try await inner.records(query) }
}

extension FaultyStore: MaintainedStore {
    public func verify(runIDs: [String]?) async throws -> VerifyReport { try await inner.verify(runIDs: runIDs) }
    public func exportRun(_ runID: String) async throws -> StoreBatch? { try await inner.exportRun(runID) }
    public func deleteRuns(_ runIDs: [String]) async throws -> DeletionReport { try await inner.deleteRuns(runIDs) }
    public func setPinned(_ runID: String, _ pinned: Bool) async throws -> Bool { try await inner.setPinned(runID, pinned) }
}
