import CairnCore
import CairnProtocol
import CairnStore
import Foundation

/// The client requests that are queries of the store (a list, a history, the state at a
/// checkpoint), answered here for every door; the rest go to the run commands.
extension ClientDoor {
    /// One request's answer (every request but `watch`, which streams), its grants checked
    /// by the caller: what every door calls.
    func reply(_ body: Cairn_V1_ClientRequest.OneOf_Body) async throws -> Cairn_V1_ClientResponse.OneOf_Body {
        switch body {
        case .submit(let s): return .run(try await commands.runs.submit(s))
        case .status(let q): return .run(try await commands.reads.runInfo(q.runID))
        case .cancel(let q): return .run(try await commands.runs.cancel(q.runID))
        case .list(let l):
            var filter = RunFilter(limit: l.limit == 0 ? 50 : Int(min(l.limit, 10_000)))
            if !l.status.isEmpty {
                guard let s = RunStatus(rawValue: l.status) else {
                    throw EngineError(.errorInvalidArgument, "unknown status '\(l.status)' (one of: \(RunStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                filter.status = s
            }
            if !l.graph.isEmpty { filter.graphName = l.graph }
            if l.sinceMs > 0 { filter.createdAfter = Date().timeIntervalSince1970 - Double(l.sinceMs) / 1000 }
            if !l.cursor.isEmpty {
                guard let c = RunCursor(text: l.cursor) else {
                    throw EngineError(.errorInvalidArgument, "'\(l.cursor)' is not a cursor: pass a list's next_cursor as it was given")
                }
                filter.after = c
            }
            var list = Cairn_V1_RunList()
            let listings = try await store.runs(filter)
            for listing in listings {
                switch listing {
                case .run(let r):
                    do { list.runs.append(try await commands.reads.runInfo(record: r)) } catch where StoreFailure.isDamage(error) {
                        list.runs.append(RunReads.damagedInfo(runID: r.runID, error))
                    }
                case .damaged(let runID, let error):
                    list.runs.append(RunReads.damagedInfo(runID: runID, error))
                }
            }
            // A full page may have a next one. A damaged row has no creation time to go on
            // from; the last readable row's does.
            if listings.count >= filter.limit, let r = listings.lazy.compactMap({ if case .run(let r) = $0 { r } else { nil } }).last {
                list.nextCursor = RunCursor(createdAt: r.createdAt, runID: r.runID).text
            }
            return .runs(list)
        case .history(let q): return .history(try await history(q.runID))
        case .state(let q): return .state(try await stateAt(q.runID, q.checkpointID))
        case .workers: return .workers(await workerList())
        case .stats: return .stats(await stats())
        case .watch: throw EngineError(.errorInvalidArgument, "watch streams its answer: ask for its events")
        case .resume(let r): return .run(try await commands.timeTravel.resume(r))
        case .update(let u): return .run(try await commands.timeTravel.update(u))
        case .fork(let f): return .run(try await commands.timeTravel.fork(f))
        case .records(let q): return .records(try await commands.reads.records(q))
        case .verify(let v): return .verify(try await commands.dataLife.verify(v))
        case .cleanup(let c): return .cleanup(try await commands.dataLife.cleanup(c))
        case .pin(let p): return .run(try await commands.dataLife.pin(p))
        case .exportRun(let e): return .exportRun(try await commands.dataLife.exportRun(e))
        case .importRun(let i): return .importRun(try await commands.dataLife.importRun(i))
        case .debug(let d): return .debug(try await commands.debug.debug(d))
        }
    }

    /// A run's checkpoints, newest first; a fork's go on with its parent's, from the fork point
    /// back (and so on up, for a fork of a fork).
    func history(_ runID: String) async throws -> Cairn_V1_History {
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        var h = try await ownHistory(runID, from: nil)
        h.forkedFrom = rec.forkedFrom ?? ""
        var origin = rec.forkedFrom
        var seen: Set<String> = [runID]
        while let o = origin, let at = o.lastIndex(of: "@") {
            let parent = String(o[..<at]), cp = String(o[o.index(after: at)...])
            guard seen.insert(parent).inserted, let parentRecord = try await store.run(parent) else { break }
            h.checkpoints += try await ownHistory(parent, from: cp).checkpoints
            origin = parentRecord.forkedFrom
        }
        return h
    }

    /// One run's checkpoints, newest first; with `from`, only that checkpoint and its ancestors.
    func ownHistory(_ runID: String, from: String?) async throws -> Cairn_V1_History {
        var cps = try await store.checkpoints(runID: runID, namespace: "", limit: 100_000)
        if let from {
            let byID = Dictionary(cps.map { ($0.checkpointID, $0) }, uniquingKeysWith: { a, _ in a })
            var chain: [CheckpointRecord] = []
            var next: String? = from
            while let id = next, let c = byID[id], chain.count < cps.count {
                chain.append(c)
                next = c.parentID
            }
            cps = chain
        }
        let execs = try await store.taskExecutions(runID: runID)
        // Each attempt is shown under the first checkpoint of its step written after it ended (a
        // step resumed or rewound has several); attempts after the last are the step in progress.
        var byCheckpoint: [String: [TaskExecutionRecord]] = [:]
        var pendingByStep: [Int: [TaskExecutionRecord]] = [:]
        let cpsByStep = Dictionary(grouping: cps, by: \.step).mapValues { $0.sorted { $0.createdAt < $1.createdAt } }
        for e in execs {
            if let cp = cpsByStep[e.step]?.first(where: { $0.createdAt >= e.finishedAt - 0.000_5 }) {
                byCheckpoint[cp.checkpointID, default: []].append(e)
            } else {
                pendingByStep[e.step, default: []].append(e)
            }
        }
        var h = Cairn_V1_History()
        h.runID = runID
        // Attempts of a step that has no checkpoint yet (running, or the step the run failed in).
        if from == nil, let newest = cps.first, let pending = pendingByStep[newest.step + 1], !pending.isEmpty {
            var c = Cairn_V1_CheckpointInfo()
            c.step = UInt32(newest.step + 1)
            c.parentID = newest.checkpointID
            c.source = "pending"
            c.tasks = pending.map(Self.execution)
            c.runID = runID
            h.checkpoints.append(c)
        }
        for cp in cps {
            var c = Cairn_V1_CheckpointInfo()
            c.checkpointID = cp.checkpointID
            c.parentID = cp.parentID ?? ""
            c.step = UInt32(cp.step)
            c.source = cp.source
            c.createdAt = cp.createdAt
            c.nextNodes = (cp.nextTasks.arrayValue ?? []).compactMap { $0["node"]?.stringValue }
            c.updatedChannels = cp.metadata["updated"]?.arrayValue?.compactMap(\.stringValue)
                ?? cp.channelVersions.filter { $0.value == cp.checkpointID }.keys.sorted()
            c.tasks = (byCheckpoint[cp.checkpointID] ?? []).map(Self.execution)
            c.runID = runID
            if case .object(let m) = cp.metadata, !m.isEmpty { c.metadataJson = Data(cp.metadata.jsonBytes()) }
            h.checkpoints.append(c)
        }
        return h
    }

    static func execution(_ e: TaskExecutionRecord) -> Cairn_V1_TaskExecution {
        var t = Cairn_V1_TaskExecution()
        t.taskID = e.taskID
        t.node = e.node
        t.attempt = UInt32(e.attempt)
        t.worker = e.worker
        t.status = e.status
        t.durationMs = UInt64(max(0, e.durationMS))
        t.error = e.error ?? ""
        t.cost = e.cost
        return t
    }

    func stateAt(_ runID: String, _ checkpointID: String) async throws -> Cairn_V1_StateReply {
        guard try await store.run(runID) != nil else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard let cp = try await store.checkpoint(runID: runID, namespace: "", checkpointID: checkpointID.isEmpty ? nil : checkpointID) else {
            throw EngineError(.errorNotFound, "run \(runID) has no checkpoint \(checkpointID)")
        }
        var state = try await commands.reads.initialState(runID: runID)
        for (k, v) in try await store.state(at: cp) { state[k] = v }
        var s = Cairn_V1_StateReply()
        s.runID = runID
        s.checkpointID = cp.checkpointID
        s.step = UInt32(cp.step)
        s.stateJson = Data(JSONValue.object(state).jsonBytes())
        s.nextNodes = (cp.nextTasks.arrayValue ?? []).compactMap { $0["node"]?.stringValue }
        return s
    }
}
