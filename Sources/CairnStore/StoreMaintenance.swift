import CairnCore

/// What a store does for the life of its data, beside reading and writing runs: prove it is
/// intact (`verify`), hand a run over whole (`exportRun`, imported back through `commit`), and
/// let go of it (`deleteRuns`, `setPinned`). The decisions — which runs a cleanup takes, whether
/// an import is a no-op — are the engine's (`RetentionPolicy`, `RunExport`); a store only
/// carries them out, each in one transaction.
public protocol MaintainedStore: Sendable {
    /// Checks every stored byte of the runs named (nil: every run, and rows no run owns).
    func verify(runIDs: [String]?) async throws -> VerifyReport
    /// Everything one run owns, as the batch that would write it again: its run, graph and
    /// bundle, every checkpoint, channel value (deltas as stored), pending write and attempt
    /// with its records. Nil when there is no such run.
    func exportRun(_ runID: String) async throws -> StoreBatch?
    /// Deletes the runs and everything they own, and the graphs and bundles no remaining run
    /// uses; each run goes whole or not at all. Then gives the freed pages back to the file system.
    func deleteRuns(_ runIDs: [String]) async throws -> DeletionReport
    /// Pins or unpins a run (cleanup never takes a pinned run); false when there is no such run.
    func setPinned(_ runID: String, _ pinned: Bool) async throws -> Bool
}

/// One thing `verify` found wrong, named as precisely as the store can: the run, and where it
/// applies the checkpoint, channel and version (or the table and key of an orphaned row).
public struct Damage: Sendable, Equatable, CustomStringConvertible {
    public var runID: String?
    public var checkpointID: String?
    public var channel: String?
    public var version: String?
    /// What is wrong, in a sentence: "SHA-256 mismatch: stored data was altered or corrupted".
    public var problem: String

    public init(runID: String?, checkpointID: String? = nil, channel: String? = nil, version: String? = nil, problem: String) {
        self.runID = runID; self.checkpointID = checkpointID; self.channel = channel; self.version = version; self.problem = problem
    }

    public var description: String {
        var parts: [String] = []
        if let runID { parts.append("run \(runID)") }
        if let checkpointID { parts.append("checkpoint \(checkpointID)") }
        if let channel { parts.append("channel '\(channel)'") }
        if let version { parts.append("version \(version)") }
        return (parts.isEmpty ? "" : parts.joined(separator: " ") + ": ") + problem
    }
}

public struct VerifyReport: Sendable, Equatable {
    public var runs = 0
    public var checkpoints = 0
    public var values = 0
    public var writes = 0
    public var attempts = 0
    public var damage: [Damage] = []
    public init() {}
    public var ok: Bool { damage.isEmpty }
}

public struct DeletionReport: Sendable, Equatable {
    public var runs: [String] = []
    public var checkpoints = 0
    public var values = 0
    public var attempts = 0
    public var graphs = 0
    public var bundles = 0
    /// Bytes the store's file shrank by once the freed pages were given back.
    public var bytesFreed: Int64 = 0
    public init() {}
}
