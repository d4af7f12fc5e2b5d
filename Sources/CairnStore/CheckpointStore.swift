import CairnCore

/// The storage contract between the scheduler and whatever keeps its state.
///
/// Small on purpose, as LangGraph's savers are: one way in (`commit`, a batch written in one
/// transaction, pending writes first-write-wins) and a handful of reads. SQLite, in-memory and
/// (later) the Redis hot tier implement it; `CheckpointStoreConformance` tests them all alike.
public protocol CheckpointStore: Sendable {
    /// Writes a batch atomically. Runs, graphs and workers are upserts; checkpoints, channel
    /// values, pending writes and task executions (keyed by run, step, task, attempt and status)
    /// are insert-or-ignore: writing the same key twice keeps the first.
    func commit(_ batch: StoreBatch) async throws
    /// Writes a batch with the given durability. Stores without a hot tier write every batch
    /// durably (the default implementation).
    func commit(_ batch: StoreBatch, durability: Durability) async throws

    /// A run's record, nil when there is none; a row that fails its checks throws
    /// `StoredBlob.IntegrityError` naming the run and the column.
    func run(_ runID: String) async throws -> RunRecord?
    /// Runs newest first; a damaged row is listed as `.damaged` with its run id.
    func runs(_ filter: RunFilter) async throws -> [RunListing]
    /// Runs whose status is `queued` or `running`: the work to pick up after a restart.
    func unfinishedRuns() async throws -> [RunListing]
    func runCounts() async throws -> [RunStatus: Int]

    func graph(_ hash: String) async throws -> GraphRecord?
    func bundle(_ hash: String) async throws -> [UInt8]?

    /// The checkpoint with this id, or the newest of the run when `checkpointID` is nil.
    func checkpoint(runID: String, namespace: String, checkpointID: String?) async throws -> CheckpointRecord?
    /// A run's checkpoints, newest first.
    func checkpoints(runID: String, namespace: String, limit: Int) async throws -> [CheckpointRecord]
    /// A channel's value at a version, rebuilt from deltas where needed.
    func channelValue(runID: String, namespace: String, channel: String, version: String) async throws -> JSONValue
    func pendingWrites(runID: String, namespace: String, checkpointID: String) async throws -> [PendingWriteRecord]
    func taskExecutions(runID: String) async throws -> [TaskExecutionRecord]
    func workers() async throws -> [WorkerRecord]
    /// Answers an operator's question about stored runs (see `RecordsQuery`). Stores that keep
    /// no SQL tables throw `RecordsUnsupported` (the default implementation).
    func records(_ query: RecordsQuery) async throws -> RecordsTable
}

public enum StoreError: Error, CustomStringConvertible, Equatable {
    case missingValue(runID: String, channel: String, version: String)
    case badDelta(runID: String, channel: String, version: String)
    case unavailable(String)

    public var description: String {
        switch self {
        case .missingValue(let r, let c, let v): return "run \(r): channel '\(c)' has no stored value at version \(v)"
        case .badDelta(let r, let c, let v): return "run \(r): channel '\(c)' version \(v) is a delta over a value that is not a list"
        case .unavailable(let m): return "store unavailable: \(m)"
        }
    }
}

extension CheckpointStore {
    public func commit(_ batch: StoreBatch, durability: Durability) async throws {
        try await commit(batch)
    }

    public func records(_ query: RecordsQuery) async throws -> RecordsTable { throw RecordsUnsupported() }

    /// The whole state at a checkpoint: every channel at the version the checkpoint names.
    public func state(at checkpoint: CheckpointRecord) async throws -> [String: JSONValue] {
        var state: [String: JSONValue] = [:]
        for (channel, version) in checkpoint.channelVersions {
            let ref = ChannelVersion(version, run: checkpoint.runID)
            state[channel] = try await channelValue(runID: ref.runID, namespace: checkpoint.namespace,
                                                    channel: channel, version: ref.version)
        }
        return state
    }
}

/// Where a channel version's value is stored: `VERSION` in the checkpoint's own run, or
/// `RUN/VERSION` in another run (a fork reads its parent's values in place; run ids have no `/`).
public struct ChannelVersion: Sendable, Equatable {
    public var runID: String
    public var version: String

    public init(_ stored: String, run: String) {
        if let slash = stored.firstIndex(of: "/") {
            runID = String(stored[..<slash]); version = String(stored[stored.index(after: slash)...])
        } else {
            runID = run; version = stored
        }
    }

    /// How a checkpoint of run `run` names this version.
    public func stored(in run: String) -> String { run == runID ? version : "\(runID)/\(version)" }
}

/// Rebuilds a value from a chain of deltas ending in a full snapshot (shared by implementations).
public enum DeltaChain {
    public static func rebuild(runID: String, channel: String, version: String,
                        load: (String) throws -> ChannelValueRecord?) throws -> JSONValue {
        var chain: [ChannelValueRecord] = []
        var v = version
        while true {
            guard let rec = try load(v) else { throw StoreError.missingValue(runID: runID, channel: channel, version: v) }
            chain.append(rec)
            guard let base = rec.baseVersion else { break }
            if chain.count > 100_000 { throw StoreError.badDelta(runID: runID, channel: channel, version: v) }
            v = base
        }
        guard chain.count > 1 else { return chain[0].value }
        guard case .array(var items) = chain.last!.value else {
            throw StoreError.badDelta(runID: runID, channel: channel, version: version)
        }
        for rec in chain.dropLast().reversed() {
            guard case .array(let more) = rec.value else { throw StoreError.badDelta(runID: runID, channel: channel, version: rec.version) }
            items.append(contentsOf: more)
        }
        return .array(items)
    }
}

/// A store write that failed, and whether waiting can heal it.
///
/// `transient` (a full disk, a busy or locked database, a read-only file an operator can fix):
/// the writer holds the batch and retries it. `permanent` (a damaged file, a file that is not a
/// database, a read I/O error): retrying cannot help, so writes stop and every command that writes
/// is refused with what to do. Each store classifies its own errors (SQLite: `SQLiteFaults`).
public struct StoreFault: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable { case transient, permanent }
    public var kind: Kind
    /// What failed, naming the file: "database disk image is malformed (SQLite code 11) writing /data/cairn.db".
    public var message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }

    /// Whether `error` is one that retrying cannot heal.
    public static func isPermanent(_ error: any Error) -> Bool { (error as? StoreFault)?.kind == .permanent }
}

/// What kind of failure a store read ended in.
public enum StoreFailure {
    /// Stored data failed a check: a checksum, its JSON, or a value a checkpoint names is not
    /// there. Reading again gives the same answer; the error names the row.
    public static func isDamage(_ error: any Error) -> Bool {
        if error is StoredBlob.IntegrityError { return true }
        switch error as? StoreError {
        case .missingValue, .badDelta: return true
        case .unavailable, .none: return false
        }
    }
}

/// What a store with a fast tier in front of it reports, for `cairn stats` and `/healthz`.
public protocol HotTierStatus: Sendable {
    func tierReport() async -> HotTierReport
}

public struct HotTierReport: Sendable, Equatable {
    public var redisUp: Bool
    public var waitingBatches: Int
    /// Seconds the oldest unflushed batch has waited.
    public var oldestAge: Double
    public var lastFlushError: String?
    public var redisFailures: UInt64
    public var hotBatches: UInt64
    public var flushes: UInt64

    public init(redisUp: Bool, waitingBatches: Int, oldestAge: Double, lastFlushError: String?,
                redisFailures: UInt64, hotBatches: UInt64, flushes: UInt64) {
        self.redisUp = redisUp; self.waitingBatches = waitingBatches; self.oldestAge = oldestAge
        self.lastFlushError = lastFlushError; self.redisFailures = redisFailures; self.hotBatches = hotBatches; self.flushes = flushes
    }
}

/// What a coordinator does with its stores besides reading and writing them: open them before
/// serving, keep them tidy while it runs, and close them after the last write.
public protocol StoreLifecycle: Sendable {
    /// Before recovery and serving: checks (a Redis that could evict) and replays (batches a
    /// previous coordinator left in the hot tier). Throws to refuse to start.
    func open() async throws
    /// Periodically: keep the log bounded (SQLite's WAL checkpoint).
    func maintain() async throws
    /// After the last write: flush what waits in front of the authoritative store, close its log.
    func close() async throws
    /// Bytes in the authoritative store's write-ahead log.
    func logBytes() -> Int64
}

/// The stores a coordinator runs on, as built from configuration (`CairnStack`): the coordinator
/// knows them only by these protocols.
public struct StoreStack: Sendable {
    /// Where every read and write goes (the hot tier when there is one, which flushes before reads).
    public var store: any CheckpointStore & MaintainedStore
    /// The hot tier's report, when there is one.
    public var hotTier: (any HotTierStatus)?
    public var lifecycle: any StoreLifecycle
    /// What the coordinator logs it runs on, e.g. "SQLite ./data/cairn.db + Redis redis://…".
    public var description: String
    /// A store several coordinators share (PostgreSQL): one leads, the others stand by.
    public var election: (any LeaderElection)?

    public init(store: any CheckpointStore & MaintainedStore, hotTier: (any HotTierStatus)?, lifecycle: any StoreLifecycle, description: String,
                election: (any LeaderElection)? = nil) {
        self.store = store; self.hotTier = hotTier; self.lifecycle = lifecycle; self.description = description
        self.election = election
    }
}
