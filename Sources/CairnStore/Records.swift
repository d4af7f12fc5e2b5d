import Foundation
import CairnCore

/// A run's lifecycle state, as stored (a CHECK constraint in SQLite keeps it to these).
public enum RunStatus: String, Sendable, CaseIterable, Codable {
    case queued, running, paused, completed, failed, cancelled

    public var isFinished: Bool { self == .completed || self == .failed || self == .cancelled }
    public var isActive: Bool { self == .queued || self == .running }
}

public struct RunRecord: Sendable, Equatable {
    public var runID: String
    public var graphHash: String
    public var graphName: String
    public var graphVersion: Int
    public var status: RunStatus
    public var durability: String
    public var input: JSONValue?
    public var output: JSONValue?
    public var error: String?
    public var interrupt: JSONValue?
    public var cost: Double
    public var apiCalls: Int
    public var tokensIn: Int = 0
    public var tokensOut: Int = 0
    public var resumeCount: Int
    public var step: Int
    public var checkpointID: String?
    /// `RUN@CHECKPOINT` for a run started by a fork: where its history goes on.
    public var forkedFrom: String?
    /// Kept by every cleanup (`cairn pin`); set by the store's `setPinned`, never by a run's own writes.
    public var pinned = false
    public var createdAt: Double
    public var updatedAt: Double
    public var finishedAt: Double?

    public init(runID: String, graphHash: String, graphName: String, graphVersion: Int, status: RunStatus,
                durability: String, input: JSONValue?, createdAt: Double) {
        self.runID = runID; self.graphHash = graphHash; self.graphName = graphName; self.graphVersion = graphVersion
        self.status = status; self.durability = durability; self.input = input; self.output = nil; self.error = nil
        self.interrupt = nil; self.cost = 0; self.apiCalls = 0; self.resumeCount = 0; self.step = 0
        self.checkpointID = nil; self.forkedFrom = nil; self.createdAt = createdAt; self.updatedAt = createdAt; self.finishedAt = nil
    }
}

extension RunRecord {
    /// For a run started by a fork, the run and checkpoint it started from (`forkedFrom` split).
    public var forkOrigin: (runID: String, checkpointID: String)? {
        guard let f = forkedFrom, let at = f.lastIndex(of: "@") else { return nil }
        return (String(f[..<at]), String(f[f.index(after: at)...]))
    }

    /// Adds what one attempt reported to the run's totals.
    public mutating func add(_ r: TaskRecords) {
        cost += r.cost
        apiCalls += r.apiCalls
        tokensIn += r.tokensIn
        tokensOut += r.tokensOut
    }
}

/// A run as a listing reads it: its record, or why its stored row cannot be read. A damaged row
/// is reported by its run id instead of failing the whole list (or a restart's recovery).
public enum RunListing: Sendable, Equatable {
    case run(RunRecord)
    case damaged(runID: String, error: StoredBlob.IntegrityError)

    public var runID: String {
        switch self {
        case .run(let r): return r.runID
        case .damaged(let id, _): return id
        }
    }

    public var record: RunRecord? {
        if case .run(let r) = self { return r }
        return nil
    }
}

/// The graph file a run used, kept verbatim so the run can be re-planned after a restart.
public struct GraphRecord: Sendable, Equatable {
    public var hash: String
    public var name: String
    public var version: Int
    public var fileName: String
    public var source: String
    public var bundleHash: String?
    public var createdAt: Double

    public init(hash: String, name: String, version: Int, fileName: String, source: String, bundleHash: String?, createdAt: Double) {
        self.hash = hash; self.name = name; self.version = version; self.fileName = fileName; self.source = source
        self.bundleHash = bundleHash; self.createdAt = createdAt
    }
}

/// A packed graph folder, addressed by the SHA-256 (hex) of its bytes; reads check it.
public struct BundleRecord: Sendable, Equatable {
    public var hash: String
    public var data: [UInt8]
    public init(hash: String, data: [UInt8]) { self.hash = hash; self.data = data }
}

/// One checkpoint: the channel versions after a step, the tasks planned next, its parent.
public struct CheckpointRecord: Sendable, Equatable {
    public var runID: String
    public var namespace: String
    public var checkpointID: String
    public var parentID: String?
    public var step: Int
    /// `input`, `loop`, `resume`, `update`, `fork` or `rewind`.
    public var source: String
    /// channel → version id (the id of the checkpoint that last wrote it). A fork's checkpoints
    /// name values its parent wrote as `RUN/VERSION` (`ChannelVersion`): a fork copies none.
    public var channelVersions: [String: String]
    /// The planned tasks, as a JSON list of `{id, node, trigger, input?}`.
    public var nextTasks: JSONValue
    /// Join progress, updated channels, interrupts: free-form JSON.
    public var metadata: JSONValue
    public var createdAt: Double

    public init(runID: String, namespace: String = "", checkpointID: String, parentID: String?, step: Int, source: String,
                channelVersions: [String: String], nextTasks: JSONValue, metadata: JSONValue, createdAt: Double) {
        self.runID = runID; self.namespace = namespace; self.checkpointID = checkpointID; self.parentID = parentID
        self.step = step; self.source = source; self.channelVersions = channelVersions; self.nextTasks = nextTasks
        self.metadata = metadata; self.createdAt = createdAt
    }
}

/// A channel's value at one version. A delta (append channels) holds only the items appended
/// since `baseVersion`; reading it walks back to the last full snapshot.
public struct ChannelValueRecord: Sendable, Equatable {
    public var runID: String
    public var namespace: String
    public var channel: String
    public var version: String
    public var baseVersion: String?
    public var value: JSONValue

    public init(runID: String, namespace: String = "", channel: String, version: String, baseVersion: String?, value: JSONValue) {
        self.runID = runID; self.namespace = namespace; self.channel = channel; self.version = version
        self.baseVersion = baseVersion; self.value = value
    }

    public var isDelta: Bool { baseVersion != nil }
}

/// A task's write, stored the moment the task finishes. First write wins: a re-run task can
/// never overwrite the first result. Negative `idx` values are control records.
public struct PendingWriteRecord: Sendable, Equatable {
    public var runID: String
    public var namespace: String
    public var checkpointID: String
    public var taskID: String
    public var idx: Int
    public var channel: String
    public var value: JSONValue

    /// The task's routing and summary (goto, sends, interrupt, node): written with every result.
    public static let resultIdx = -1
    /// A task's final error.
    public static let errorIdx = -2

    public init(runID: String, namespace: String = "", checkpointID: String, taskID: String, idx: Int, channel: String, value: JSONValue) {
        self.runID = runID; self.namespace = namespace; self.checkpointID = checkpointID; self.taskID = taskID
        self.idx = idx; self.channel = channel; self.value = value
    }
}

public struct TaskExecutionRecord: Sendable, Equatable, CarriesTaskRecords {
    public var runID: String
    public var taskID: String
    public var node: String
    public var step: Int
    public var attempt: Int
    public var worker: String
    /// `completed`, `failed`, `lost` or `stale`.
    public var status: String
    public var startedAt: Double
    public var finishedAt: Double
    /// When the attempt became ready to run (planned, or its retry due): the wait for a worker
    /// is `startedAt - queuedAt`. Nil in records written before it was kept.
    public var queuedAt: Double?
    public var error: String?
    /// Why it failed, as the node or the coordinator classified it (`timeout`, `bad_result`, `lost`, …).
    public var errorKind: String?
    /// Cost, API calls, tokens, other metrics and assets the attempt reported.
    public var records: TaskRecords


    public init(runID: String, taskID: String, node: String, step: Int, attempt: Int, worker: String, status: String,
                startedAt: Double, finishedAt: Double, error: String?, cost: Double, apiCalls: Int,
                queuedAt: Double? = nil, errorKind: String? = nil, records: TaskRecords? = nil) {
        self.runID = runID; self.taskID = taskID; self.node = node; self.step = step; self.attempt = attempt
        self.worker = worker; self.status = status; self.startedAt = startedAt; self.finishedAt = finishedAt
        self.queuedAt = queuedAt; self.error = error; self.errorKind = errorKind
        self.records = records ?? TaskRecords()
        if records == nil { self.records.cost = cost; self.records.apiCalls = apiCalls }
    }

    public var durationMS: Int64 { Int64(((finishedAt - startedAt) * 1000).rounded()) }
    /// The time it ran in milliseconds, to the microsecond.
    public var durationMilliseconds: Double { ((finishedAt - startedAt) * 1e6).rounded() / 1000 }
    public var queueMS: Int64? { queuedAt.map { Int64((max(0, startedAt - $0) * 1000).rounded()) } }
}

public struct WorkerRecord: Sendable, Equatable {
    public var workerID: String
    public var name: String
    public var slots: Int
    public var kinds: [String]
    public var address: String
    public var connectedAt: Double
    public var lastSeen: Double
    public var disconnectedAt: Double?
    public var tasksDone: Int

    public init(workerID: String, name: String, slots: Int, kinds: [String], address: String, connectedAt: Double,
                lastSeen: Double, disconnectedAt: Double?, tasksDone: Int) {
        self.workerID = workerID; self.name = name; self.slots = slots; self.kinds = kinds; self.address = address
        self.connectedAt = connectedAt; self.lastSeen = lastSeen; self.disconnectedAt = disconnectedAt; self.tasksDone = tasksDone
    }
}

/// Everything written together in one transaction.
public struct StoreBatch: Sendable {
    public var graphs: [GraphRecord] = []
    public var bundles: [BundleRecord] = []
    public var runs: [RunRecord] = []
    public var checkpoints: [CheckpointRecord] = []
    public var channelValues: [ChannelValueRecord] = []
    public var pendingWrites: [PendingWriteRecord] = []
    public var taskExecutions: [TaskExecutionRecord] = []
    public var workers: [WorkerRecord] = []
    /// Checkpoints whose pending writes are no longer needed: the step they belong to has its own
    /// checkpoint now (written in the same batch), so the writes live on in its channel values.
    public var prunedWrites: [CheckpointKey] = []

    public init() {}

    public var isEmpty: Bool { rowCount == 0 }

    public var rowCount: Int {
        graphs.count + bundles.count + runs.count + checkpoints.count + channelValues.count + pendingWrites.count
            + taskExecutions.count + workers.count + prunedWrites.count
    }

    public mutating func merge(_ other: StoreBatch) {
        graphs += other.graphs; bundles += other.bundles; checkpoints += other.checkpoints
        // A run's record is an upsert: only its newest version in a batch needs writing.
        for r in other.runs {
            if let i = runs.lastIndex(where: { $0.runID == r.runID }) { runs[i] = r } else { runs.append(r) }
        }
        channelValues += other.channelValues; pendingWrites += other.pendingWrites
        taskExecutions += other.taskExecutions; workers += other.workers; prunedWrites += other.prunedWrites
    }
}

public struct RunFilter: Sendable, Equatable {
    public var status: RunStatus?
    public var graphName: String?
    public var createdAfter: Double?
    public var limit: Int
    /// Keyset pagination: only runs listed after this one (newest first, by creation time and id).
    public var after: RunCursor?
    public init(status: RunStatus? = nil, graphName: String? = nil, createdAfter: Double? = nil, limit: Int = 50, after: RunCursor? = nil) {
        self.status = status; self.graphName = graphName; self.createdAfter = createdAfter; self.limit = limit; self.after = after
    }
}

/// Where a page of runs ended: the last run's creation time and id. As text (an API's
/// `next_cursor`) it is opaque to callers: `createdAt` printed exactly, a space, the run id,
/// base64url-encoded.
public struct RunCursor: Sendable, Equatable {
    public var createdAt: Double
    public var runID: String
    public init(createdAt: Double, runID: String) { self.createdAt = createdAt; self.runID = runID }

    public var text: String {
        Data("\(createdAt) \(runID)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// nil when `text` is not a cursor this store made.
    public init?(text: String) {
        var b64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), let s = String(data: data, encoding: .utf8),
              let space = s.firstIndex(of: " "), let t = Double(s[..<space]), t.isFinite else { return nil }
        let id = String(s[s.index(after: space)...])
        guard !id.isEmpty else { return nil }
        self.createdAt = t; self.runID = id
    }
}

public struct CheckpointKey: Sendable, Hashable {
    public var runID: String
    public var namespace: String
    public var checkpointID: String
    public init(runID: String, namespace: String = "", checkpointID: String) {
        self.runID = runID; self.namespace = namespace; self.checkpointID = checkpointID
    }
}
