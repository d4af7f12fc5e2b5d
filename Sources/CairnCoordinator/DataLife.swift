import CairnCore
import CairnProtocol
import CairnStore
import Foundation
import Logging

/// The life of stored data — verify, cleanup and pins, export and import — as one set of rules
/// every door (CLI, HTTP, the coordinator's own `--retention` schedule) calls. What to delete is
/// `RetentionPolicy`'s decision; what an import may hold is `RunExport`'s; the runs they touch
/// are claimed (`RunClaims`) while they are written.
actor DataLife {
    let context: CommandContext
    var engine: Engine { context.engine }
    var store: any CheckpointStore & MaintainedStore { context.store }
    var logger: Logger { context.logger }
    /// A `--retention` pass is deleting right now.
    private var retentionRunning = false

    init(context: CommandContext) { self.context = context }

    // MARK: verify

    func verify(_ r: Cairn_V1_VerifyRequest) async throws -> Cairn_V1_VerifyReply {
        for id in r.runIds where try await store.run(id) == nil { throw EngineError(.errorNotFound, "no run with id \(id)") }
        await engine.writesCommitted()
        let report = try await store.verify(runIDs: r.runIds.isEmpty ? nil : r.runIds)
        var reply = Cairn_V1_VerifyReply()
        reply.runs = UInt32(clamping: report.runs); reply.checkpoints = UInt32(clamping: report.checkpoints)
        reply.values = UInt32(clamping: report.values); reply.writes = UInt32(clamping: report.writes)
        reply.attempts = UInt32(clamping: report.attempts)
        reply.damage = report.damage.map { d in
            var x = Cairn_V1_Damage()
            x.runID = d.runID ?? ""; x.checkpointID = d.checkpointID ?? ""; x.channel = d.channel ?? ""; x.version = d.version ?? ""
            x.problem = d.problem
            return x
        }
        if !report.ok { logger.warning("verify found damage", metadata: ["problems": "\(report.damage.count)"]) }
        return reply
    }

    // MARK: cleanup and pins

    func cleanup(_ r: Cairn_V1_CleanupRequest) async throws -> Cairn_V1_CleanupReply {
        var statuses = RetentionPolicy.finished
        if !r.statuses.isEmpty {
            statuses = []
            for name in r.statuses {
                guard let s = RunStatus(rawValue: name) else {
                    throw EngineError(.errorInvalidArgument, "unknown status '\(name)' (a cleanup takes: completed, failed, cancelled)")
                }
                guard s.isFinished else {
                    throw EngineError(.errorInvalidArgument, "a cleanup never takes \(name) runs (only completed, failed and cancelled ones)")
                }
                statuses.insert(s)
            }
        }
        let policy = RetentionPolicy(olderThan: Double(r.olderThanMs) / 1000, statuses: statuses,
                                     graph: r.graph.isEmpty ? nil : r.graph, keepLatest: Int(r.keepLatest))
        return try await cleanup(policy, dryRun: r.dryRun)
    }

    func cleanup(_ policy: RetentionPolicy, dryRun: Bool) async throws -> Cairn_V1_CleanupReply {
        if !dryRun, let why = await engine.refusal("cleaned up") { throw EngineError(.errorUnavailable, why) }
        let runs = try await self.store.runs(RunFilter(limit: Int.max)).compactMap(\.record).map(RetentionPolicy.Run.init)
        let decision = policy.decide(runs, active: await engine.busyRuns, now: context.now)
        var reply = Cairn_V1_CleanupReply()
        func row(_ run: RetentionPolicy.Run, _ reason: String = "") -> Cairn_V1_CleanupRun {
            var x = Cairn_V1_CleanupRun()
            x.runID = run.runID; x.graph = run.graph; x.status = run.status.rawValue; x.finishedAt = run.finishedAt; x.reason = reason
            return x
        }
        reply.deleted = decision.delete.map { row($0) }
        reply.kept = decision.kept.map { row($0.run, $0.reason) }
        reply.dryRun = dryRun
        guard !dryRun, !decision.delete.isEmpty else { return reply }
        // Held as edits while they go: a resume, fork or import of one of them is refused, and
        // afterwards finds it gone. One a request took since the policy looked is kept, and said so.
        let ids = await engine.claimFree(decision.delete.map(\.runID))
        let taken = Set(ids)
        reply.kept += decision.delete.filter { !taken.contains($0.runID) }.map { row($0, "the coordinator is working on it") }
        guard !ids.isEmpty else { reply.deleted = []; return reply }
        let report: DeletionReport
        do {
            await engine.writesCommitted()
            report = try await store.deleteRuns(ids)
            await engine.releaseAll(ids)
        } catch {
            await engine.releaseAll(ids)
            throw error
        }
        let gone = Set(report.runs)
        reply.deleted = decision.delete.filter { gone.contains($0.runID) }.map { row($0) }
        reply.checkpoints = UInt32(clamping: report.checkpoints); reply.values = UInt32(clamping: report.values)
        reply.attempts = UInt32(clamping: report.attempts); reply.graphs = UInt32(clamping: report.graphs)
        reply.bundles = UInt32(clamping: report.bundles); reply.bytesFreed = UInt64(report.bytesFreed)
        logger.notice("cleanup deleted runs", metadata: ["runs": "\(report.runs.count)", "checkpoints": "\(report.checkpoints)",
                                                         "bytes_freed": "\(report.bytesFreed)"])
        return reply
    }

    /// `--retention`'s pass: skipped while the previous one is still deleting.
    func scheduledCleanup(olderThan: Double) async {
        guard !retentionRunning else { return }
        retentionRunning = true
        defer { retentionRunning = false }
        do { _ = try await cleanup(RetentionPolicy(olderThan: olderThan), dryRun: false) } catch {
            logger.warning("scheduled cleanup (--retention) failed; it runs again at the next interval", metadata: ["error": "\(error)"])
        }
    }

    func pin(_ r: Cairn_V1_PinRequest) async throws -> Cairn_V1_RunInfo {
        guard try await store.setPinned(r.runID, r.pinned) else { throw EngineError(.errorNotFound, "no run with id \(r.runID)") }
        return try await RunReads(context: context).runInfo(r.runID)
    }

    // MARK: export and import

    func exportRun(_ r: Cairn_V1_ExportRequest) async throws -> Cairn_V1_ExportReply {
        if let status = await engine.activeStatus(r.runID), !status.isFinished, status != .paused {
            throw EngineError(.errorConflict, "run \(r.runID) is \(status.rawValue): export it once it has finished or paused (or cancel it)")
        }
        if await engine.isClaimed(r.runID) { throw EngineError(.errorConflict, "run \(r.runID) is being changed right now; try again") }
        await engine.writesCommitted()
        guard let batch = try await store.exportRun(r.runID), let run = batch.runs.first else {
            throw EngineError(.errorNotFound, "no run with id \(r.runID)")
        }
        guard !run.status.isActive else {
            throw EngineError(.errorConflict, "run \(r.runID) is \(run.status.rawValue): export it once it has finished or paused (or cancel it)")
        }
        let bytes = batch.json.jsonBytes()
        var reply = Cairn_V1_ExportReply()
        reply.runID = run.runID; reply.graphName = run.graphName; reply.status = run.status.rawValue
        reply.forkedFromRun = run.forkOrigin?.runID ?? ""
        reply.partZstd = Data(try Zstd.compress(bytes, level: 3))
        reply.sha256 = Hashing.sha256Hex(bytes)
        reply.bytes = UInt64(bytes.count)
        reply.checkpoints = UInt32(clamping: batch.checkpoints.count)
        return reply
    }

    func importRun(_ r: Cairn_V1_ImportRequest) async throws -> Cairn_V1_ImportReply {
        let bytes: [UInt8]
        do { bytes = try Zstd.decompress([UInt8](r.partZstd), limit: 1 << 30) } catch {
            throw EngineError(.errorInvalidArgument, "the run's part of the export file cannot be decompressed (\(error)): the file is damaged")
        }
        guard Hashing.sha256Hex(bytes) == r.sha256 else {
            throw EngineError(.errorInvalidArgument, "the run's part of the export file does not match its SHA-256: the file is damaged or was altered")
        }
        let batch: StoreBatch
        do { batch = try StoreBatch(json: try JSONValue.parse(bytes)) } catch {
            throw EngineError(.errorInvalidArgument, "the run's part of the export file cannot be read: \(error)")
        }
        let run = try RunExport.check(batch)
        _ = try await context.graphs.stored(batch.graphs[0])  // a graph this coordinator cannot parse cannot be resumed or planned
        var reply = Cairn_V1_ImportReply()
        reply.runID = run.runID
        reply.checkpoints = UInt32(clamping: batch.checkpoints.count); reply.values = UInt32(clamping: batch.channelValues.count)
        reply.attempts = UInt32(clamping: batch.taskExecutions.count)
        if await engine.busyRuns.contains(run.runID) { throw EngineError(.errorConflict, "run \(run.runID) is active here; it cannot be imported over") }
        // A fork's parent is here already, or (while an import is being checked) comes before it in the same file.
        if let parent = run.forkOrigin?.runID, !(r.dryRun && r.before.contains(parent)), try await store.run(parent) == nil {
            throw EngineError(.errorInvalidArgument, "run \(run.runID) was forked from run \(parent), which is not in this store: export and import them together")
        }
        await engine.writesCommitted()
        if let existing = try await store.exportRun(run.runID) {
            guard RunExport.fingerprint(existing) == RunExport.fingerprint(batch) else {
                throw EngineError(.errorConflict, "run \(run.runID) already exists here with other content (status \(existing.runs[0].status.rawValue)); nothing was imported")
            }
            reply.alreadyPresent = true
            return reply
        }
        if r.dryRun { return reply }
        try await context.claimed(run.runID, .edit, doing: "imported") { try await engine.commitDurably(batch) }
        logger.notice("imported run", metadata: ["run": "\(run.runID)", "checkpoints": "\(batch.checkpoints.count)"])
        return reply
    }
}

/// What an export holds for one run, and the checks an import makes before writing any of it.
enum RunExport {
    static func fingerprint(_ b: StoreBatch) -> String { b.runContentFingerprint }

    /// The run, when the batch is one run, whole and consistent; otherwise why not.
    static func check(_ b: StoreBatch) throws -> RunRecord {
        func bad(_ why: String) -> EngineError { EngineError(.errorInvalidArgument, "the export file's run part is not importable: \(why)") }
        guard b.runs.count == 1, let run = b.runs.first else { throw bad("it holds \(b.runs.count) runs, not one") }
        guard Submission.validRunID(run.runID) else { throw bad("'\(run.runID)' is not a run id") }
        guard !run.status.isActive else { throw bad("run \(run.runID) is \(run.status.rawValue); only finished and paused runs are exported") }
        guard b.graphs.count == 1, let g = b.graphs.first, g.hash == run.graphHash else { throw bad("it does not hold the run's graph") }
        guard Hashing.sha256Hex(Array(g.source.utf8) + [0] + Array((g.bundleHash ?? "").utf8)) == g.hash else {
            throw bad("graph \(g.hash) does not match its content")
        }
        guard b.bundles.map(\.hash) == (g.bundleHash.map { [$0] } ?? []) else { throw bad("it does not hold the graph's bundle") }
        for x in b.bundles where Hashing.sha256Hex(x.data) != x.hash { throw bad("bundle \(x.hash) does not match its content") }
        let id = run.runID
        guard b.checkpoints.allSatisfy({ $0.runID == id }), b.channelValues.allSatisfy({ $0.runID == id }),
              b.pendingWrites.allSatisfy({ $0.runID == id }), b.taskExecutions.allSatisfy({ $0.runID == id }),
              b.workers.isEmpty, b.prunedWrites.isEmpty else {
            throw bad("it holds rows of other runs")
        }
        if let head = run.checkpointID, !b.checkpoints.contains(where: { $0.checkpointID == head }) {
            throw bad("run \(id)'s newest checkpoint \(head) is not in it")
        }
        return run
    }
}
