import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation
import Logging

/// Submit, cancel, and the recovery of unfinished runs at a start: each reads what it needs,
/// decides through pure functions (`Submission`, `CheckpointBuilder`), and hands the engine
/// a run to hold or rows to write.
struct RunCommands: Sendable {
    let context: CommandContext
    var engine: Engine { context.engine }
    var store: any CheckpointStore & MaintainedStore { context.store }
    var logger: Logger { context.logger }
    var reads: RunReads { RunReads(context: context) }

    /// A submit: the graph parsed (once per source), the id claimed against what is active and
    /// stored, then what `Submission` decides written, and the run started.
    func submit(_ req: Cairn_V1_SubmitRequest) async throws -> Cairn_V1_RunInfo {
        let source = String(decoding: req.graphSource, as: UTF8.self)
        let fileName = req.graphFileName.isEmpty ? "graph.yaml" : req.graphFileName
        let graph: Graph
        do {
            graph = try await context.graphs.parse(file: fileName, text: source) { await engine.customKinds }
        } catch {
            throw EngineError(.errorInvalidArgument, "\(error)")
        }
        let input: [String: JSONValue], durability: String
        do {
            input = try Submission.input([UInt8](req.inputJson), for: graph)
            durability = try Submission.durability(req.durability, hotTier: context.hotTier != nil)
        } catch {
            throw EngineError(.errorInvalidArgument, "\(error)")
        }
        let generated = req.runID.isEmpty
        let runID = generated ? "r-" + Identifiers.random(12) : req.runID
        guard Submission.validRunID(runID) else {
            throw EngineError(.errorInvalidArgument, "run id '\(runID)' must be 1-128 letters, digits, '-', '_', '.' or ':'")
        }
        return try await context.claimed(runID, .submit, doing: "submitted") {
            try await submit(runID: runID, generated: generated, graph: graph, source: source, fileName: fileName,
                             input: input, durability: durability, req: req)
        }
    }

    private func submit(runID: String, generated: Bool, graph: Graph, source: String, fileName: String,
                        input: [String: JSONValue], durability: String, req: Cairn_V1_SubmitRequest) async throws -> Cairn_V1_RunInfo {
        // A generated id (62 bits of randomness) is not looked up: a store read per submit would
        // cost more than the whole run of a short graph. A chosen id is checked.
        if !generated, let old = try await store.run(runID) {
            throw EngineError(.errorConflict, "run id \(runID) is already taken (status \(old.status.rawValue)); submit with another --run-id")
        }
        let s: Submission
        do {
            s = try Submission(graph: graph, source: source, fileName: fileName, input: input, bundle: [UInt8](req.bundle),
                               bundleHash: req.bundleHash.isEmpty ? nil : req.bundleHash, runID: runID, durability: durability,
                               checkpointID: Identifiers.sortable(), now: context.now)
        } catch {
            throw EngineError(.errorInvalidArgument, "\(error)")
        }
        let start = RunStart(record: s.record, graph: graph, bundleHash: s.bundleHash, checkpoint: s.checkpoint, state: s.state, joins: [:],
                             step: s.record.status == .queued ? (s.first, [:]) : nil)
        // The run starts once its first rows are durable (the writer retries until they are).
        let info = try await engine.submitted(start, s.batch, unconfirmed: "run \(runID) is submitted")
        logger.info("run submitted", metadata: ["run_id": "\(runID)", "graph": "\(graph.name)", "first": "\(s.first.map(\.node))"])
        return info
    }

    /// Picks up every run that was queued or running when the coordinator last stopped:
    /// from its newest checkpoint, with the tasks whose writes are stored counted as done.
    func recover() async -> Int {
        let unfinished: [RunListing]
        do { unfinished = try await store.unfinishedRuns() } catch {
            logger.error("could not list unfinished runs", metadata: ["error": "\(error)"])
            return 0
        }
        var recovered = 0
        for listing in unfinished {
            guard case .run(let rec) = listing else {
                // Left as it is stored: `cairn list` shows it damaged, and the other runs go on.
                if case .damaged(let runID, let error) = listing {
                    logger.error("run not recovered: its stored row is damaged", metadata: ["run_id": "\(runID)", "error": "\(error)"])
                }
                continue
            }
            do {
                try await load(rec)
                recovered += 1
            } catch {
                logger.error("could not recover run; marking it failed", metadata: ["run_id": "\(rec.runID)", "error": "\(error)"])
                var failed = rec
                failed.status = .failed
                failed.error = "could not be recovered after a restart: \(error)"
                failed.updatedAt = context.now
                failed.finishedAt = context.now
                var b = StoreBatch(); b.runs.append(failed)
                do { try await engine.record(b, unconfirmed: nil, runID: rec.runID) } catch {
                    // The store takes no more writes: the run stays as stored, and is tried again at the next start.
                    logger.error("could not mark the run failed", metadata: ["run_id": "\(rec.runID)", "error": "\(error)"])
                }
            }
        }
        return recovered
    }

    private func load(_ rec: RunRecord) async throws {
        let (g, graph) = try await reads.graph(of: rec)
        guard let cp = try await store.checkpoint(runID: rec.runID, namespace: "", checkpointID: nil) else {
            throw EngineError(.errorNotFound, "no checkpoint")
        }
        let state = try await store.state(at: cp)
        let planned = CheckpointBuilder.next(of: cp)
        let writes = try await store.pendingWrites(runID: rec.runID, namespace: "", checkpointID: cp.checkpointID)
        var done: [String: TaskOutcome] = [:]
        let nodes = Dictionary(planned.map { ($0.id, $0.node) }, uniquingKeysWith: { a, _ in a })
        for (taskID, records) in Dictionary(grouping: writes, by: \.taskID) {
            guard let node = nodes[taskID] else { continue }
            if let o = StoredOutcome.outcome(taskID: taskID, node: node, records: records) { done[taskID] = o }
        }
        var record = rec
        // A run no worker had a task of yet stays queued; any other goes on running.
        record.status = rec.status == .queued ? .queued : .running
        let start = RunStart(record: record, graph: graph, bundleHash: g.bundleHash, checkpoint: cp, state: state,
                             joins: CheckpointBuilder.joins(of: cp), step: nil)  // its chains' lengths are not known: each channel's next write is whole
        logger.notice("run recovered", metadata: ["run_id": "\(rec.runID)", "step": "\(cp.step + 1)",
                                                  "tasks": "\(planned.count)", "already_done": "\(done.count)"])
        await engine.recovered(start, done: done)
    }

    /// A cancel: of a held run, by the scheduler; of a stored one (paused), by writing its row.
    func cancel(_ runID: String) async throws -> Cairn_V1_RunInfo {
        if let why = await engine.refusal("cancelled") { throw EngineError(.errorUnavailable, why) }
        if let info = try await engine.cancelActive(runID) { return info }
        try await context.claimed(runID, .edit, doing: nil) { try await cancelStored(runID) }
        return try await reads.runInfo(runID)
    }

    private func cancelStored(_ runID: String) async throws {
        guard var rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard !rec.status.isFinished else {
            throw EngineError(.errorConflict, "run \(runID) has already \(rec.status.rawValue)")
        }
        rec.status = .cancelled
        rec.error = "cancelled by request"
        rec.updatedAt = context.now
        rec.finishedAt = context.now
        var b = StoreBatch(); b.runs.append(rec)
        try await engine.record(b, unconfirmed: "run \(runID) is cancelled", runID: runID)
    }
}
