import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation
import Logging

/// Reads of runs every door shares: a run's summary (from the engine while it holds the run,
/// else from its stored row), its graph, a stored run as an edit starts from it, the records
/// reports, and the stats. Decides nothing; writes nothing.
struct RunReads: Sendable {
    let context: CommandContext
    var engine: Engine { context.engine }
    var store: any CheckpointStore & MaintainedStore { context.store }

    /// The graph a run runs, parsed (for pictures of it).
    func runGraph(_ runID: String) async throws -> Graph {
        if let graph = await engine.activeGraph(runID) { return graph }
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        return try await graph(of: rec).graph
    }

    /// A stored run's graph: its row (with its bundle's hash) and the graph parsed (once per
    /// coordinator); a row that names a graph not stored is an error naming the run.
    func graph(of rec: RunRecord) async throws -> (record: GraphRecord, graph: Graph) {
        guard let g = try await store.graph(rec.graphHash) else {
            throw StoredBlob.IntegrityError(context: "run \(rec.runID) (runs.graph_hash)", reason: "names graph \(rec.graphHash), which is not stored")
        }
        return (g, try await context.graphs.stored(g))
    }

    /// The channels' values before any write (defaults), for reading state at a checkpoint.
    func initialState(runID: String) async throws -> [String: JSONValue] {
        try await runGraph(runID).initialState
    }

    /// What an edit of a stored run starts from: its newest checkpoint, or the one named.
    func stored(_ runID: String, checkpointID: String?) async throws -> StoredRun {
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        let (g, graph) = try await graph(of: rec)
        guard let cp = try await store.checkpoint(runID: runID, namespace: "", checkpointID: checkpointID) else {
            if let checkpointID {
                throw EngineError(.errorNotFound, "run \(runID) has no checkpoint \(checkpointID) (a checkpoint of another run cannot be used; cairn history \(runID) lists this run's)")
            }
            throw EngineError(.errorNotFound, "run \(runID) has no checkpoint")
        }
        var state = graph.initialState
        for (k, v) in try await store.state(at: cp) { state[k] = v }
        let writes = try await store.pendingWrites(runID: runID, namespace: "", checkpointID: cp.checkpointID)
        return StoredRun(record: rec, graph: graph, bundleHash: g.bundleHash, checkpoint: cp, state: state, writes: writes)
    }

    // MARK: summaries

    static func info(_ s: RunSummary) -> Cairn_V1_RunInfo {
        var info = Self.info(s.record)
        info.tasksTotal = UInt32(s.tasksTotal)
        info.tasksDone = UInt32(s.tasksDone)
        info.nextNodes = s.nextNodes
        info.nodeCount = UInt32(s.nodeCount)
        return info
    }

    func runInfo(_ runID: String) async throws -> Cairn_V1_RunInfo {
        if let info = await engine.activeInfo(runID) { return info }
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        return try await runInfo(record: rec)
    }

    /// A run's summary from its stored record; only a paused or interrupted run needs its
    /// checkpoint read (for the nodes it will run next).
    func runInfo(record rec: RunRecord) async throws -> Cairn_V1_RunInfo {
        if let info = await engine.activeInfo(rec.runID) { return info }
        var info = Self.info(rec)
        if !rec.status.isFinished, let cp = try await store.checkpoint(runID: rec.runID, namespace: "", checkpointID: nil) {
            info.checkpointID = cp.checkpointID
            info.nextNodes = Array(Set((cp.nextTasks.arrayValue ?? []).compactMap { $0["node"]?.stringValue })).sorted()
        }
        return info
    }

    /// A list entry for a run whose stored row cannot be read: its id and why.
    static func damagedInfo(runID: String, _ error: any Error) -> Cairn_V1_RunInfo {
        var i = Cairn_V1_RunInfo()
        i.runID = runID
        i.status = "damaged"
        i.damage = "\(error)"
        return i
    }

    static func info(_ r: RunRecord) -> Cairn_V1_RunInfo {
        var i = Cairn_V1_RunInfo()
        i.runID = r.runID
        i.graphName = r.graphName
        i.graphVersion = UInt32(clamping: r.graphVersion)
        i.graphHash = r.graphHash
        i.status = r.status.rawValue
        i.step = UInt32(clamping: r.step)
        i.error = r.error ?? ""
        i.cost = r.cost
        i.apiCalls = UInt32(clamping: r.apiCalls)
        i.tokensIn = UInt64(clamping: r.tokensIn)
        i.tokensOut = UInt64(clamping: r.tokensOut)
        i.pinned = r.pinned
        i.createdAt = r.createdAt
        i.updatedAt = r.updatedAt
        i.finishedAt = r.finishedAt ?? 0
        i.durability = r.durability
        if let o = r.output { i.outputJson = Data(o.jsonBytes()) }
        if let x = r.interrupt { i.interruptJson = Data(x.jsonBytes()) }
        i.checkpointID = r.checkpointID ?? ""
        i.forkedFrom = r.forkedFrom ?? ""
        i.resumeCount = UInt32(clamping: r.resumeCount)
        return i
    }

    // MARK: records

    /// An operator's question about stored runs, checked and handed to the store's SQL. The one
    /// rule every door (CLI, HTTP) calls.
    func records(_ r: Cairn_V1_RecordsRequest) async throws -> Cairn_V1_RecordsReply {
        guard let report = RecordsQuery.Report(rawValue: r.report) else {
            throw EngineError(.errorInvalidArgument, "unknown report '\(r.report)' (one of: \(RecordsQuery.Report.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var by = RecordsQuery.Grouping.node
        if !r.by.isEmpty {
            guard let b = RecordsQuery.Grouping(rawValue: r.by) else {
                throw EngineError(.errorInvalidArgument, "unknown grouping '\(r.by)' (one of: \(RecordsQuery.Grouping.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            by = b
        }
        func text(_ s: String) -> String? { s.isEmpty ? nil : s }
        var q = RecordsQuery(report: report, by: by, graph: text(r.graph), runID: text(r.runID), taskID: text(r.taskID),
                             node: text(r.node), uri: text(r.uri), limit: r.limit == 0 ? 1000 : Int(min(r.limit, 100_000)))
        if r.sinceMs > 0 { q.since = Date().timeIntervalSince1970 - Double(r.sinceMs) / 1000 }
        if report == .attempts {
            guard let id = q.runID else { throw EngineError(.errorInvalidArgument, "a run id is needed for its attempts") }
            guard try await store.run(id) != nil else { throw EngineError(.errorNotFound, "no run with id \(id)") }
        }
        if report == .assets, let id = q.runID, try await store.run(id) == nil {
            throw EngineError(.errorNotFound, "no run with id \(id)")
        }
        let table: RecordsTable
        do { table = try await store.records(q) } catch let e as RecordsUnsupported {
            throw EngineError(.errorUnavailable, e.description)
        }
        var reply = Cairn_V1_RecordsReply()
        reply.columns = table.columns
        reply.rowsJson = Data(JSONValue.array(table.rows.map { .array($0) }).jsonBytes())
        return reply
    }
}
