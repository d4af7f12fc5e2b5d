import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation

/// `cairn debug`: everything about one step of a run, as one JSON document a person attaches to
/// a bug report — the state the step started from, each task's input, its attempts (worker,
/// timings, errors with their stderr tails, what it reported), its writes when they are still
/// kept, and the checkpoint the step produced.
struct RunDebug: Sendable {
    let context: CommandContext
    var store: any CheckpointStore & MaintainedStore { context.store }

    func debug(_ r: Cairn_V1_DebugRequest) async throws -> Cairn_V1_DebugReply {
        let runID = r.runID
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        let graph = try await RunReads(context: context).graph(of: rec).graph
        guard let head = try await store.checkpoint(runID: runID, namespace: "", checkpointID: nil) else {
            throw EngineError(.errorNotFound, "run \(runID) has no checkpoint yet")
        }
        // The run's line of checkpoints, newest first (a rewound run's older branches are not on it).
        let all = try await store.checkpoints(runID: runID, namespace: "", limit: 1_000_000)
        let byID = Dictionary(all.map { ($0.checkpointID, $0) }, uniquingKeysWith: { a, _ in a })
        var line: [CheckpointRecord] = []
        var next: String? = head.checkpointID
        while let id = next, let c = byID[id], line.count <= all.count { line.append(c); next = c.parentID }

        // A step is the tasks one checkpoint planned and the checkpoint their results made.
        let step: Int
        var produced: CheckpointRecord?
        if r.stepGiven {
            step = Int(r.step)
            let atStep = line.filter { $0.step == step }
            produced = atStep.first { $0.source == "loop" } ?? atStep.first
            if produced == nil && step != head.step + 1 {
                let steps = line.map(\.step)
                throw EngineError(.errorNotFound, "run \(runID) has no step \(step) (its steps are \(steps.min() ?? 0) to \(head.step + 1))")
            }
        } else if (head.nextTasks.arrayValue ?? []).isEmpty, head.parentID != nil {
            step = head.step; produced = head  // finished: its last step
        } else {
            step = head.step + 1  // the step it stopped in (failed, paused, cancelled) or is running
        }
        var startedFrom: CheckpointRecord?
        if let produced {
            if let p = produced.parentID {
                startedFrom = try await store.checkpoint(runID: runID, namespace: "", checkpointID: p)
                if startedFrom == nil, let origin = rec.forkOrigin?.runID {
                    startedFrom = try await store.checkpoint(runID: origin, namespace: "", checkpointID: p)
                }
            }
        } else {
            startedFrom = head
        }

        var doc: [String: JSONValue] = [:]
        var run: [String: JSONValue] = ["id": .string(runID), "graph": .string(rec.graphName), "graph_version": .int(Int64(rec.graphVersion)),
                                        "graph_hash": .string(rec.graphHash), "status": .string(rec.status.rawValue),
                                        "step": .int(Int64(rec.step)), "created_at": .double(rec.createdAt)]
        if let e = rec.error { run["error"] = .string(e) }
        if let f = rec.forkedFrom { run["forked_from"] = .string(f) }
        if let cp = rec.checkpointID { run["checkpoint"] = .string(cp) }
        doc["run"] = .object(run)
        doc["step"] = .int(Int64(step))

        var state: [String: JSONValue] = graph.initialState
        var planned: [JSONValue] = []
        if let s = startedFrom {
            for (k, v) in try await store.state(at: s) { state[k] = v }
            planned = s.nextTasks.arrayValue ?? []
            doc["started_from"] = .object(["checkpoint_id": .string(s.checkpointID), "run": .string(s.runID), "step": .int(Int64(s.step)),
                                           "source": .string(s.source), "created_at": .double(s.createdAt), "state": .object(state)])
        } else {
            doc["started_from"] = .null
        }

        let attempts = try await store.taskExecutions(runID: runID).filter { $0.step == step }
        var writes: [PendingWriteRecord] = []
        if produced == nil, let s = startedFrom { writes = try await store.pendingWrites(runID: s.runID, namespace: "", checkpointID: s.checkpointID) }
        var tasks: [JSONValue] = []
        var seen = Set<String>()
        for t in planned {
            guard let id = t["id"]?.stringValue, let node = t["node"]?.stringValue else { continue }
            seen.insert(id)
            let spec = graph.nodes[node]
            var task: [String: JSONValue] = ["task_id": .string(id), "node": .string(node), "trigger": t["trigger"] ?? .string("edge")]
            if let spec {
                task["kind"] = .string(spec.kind)
                switch NodeKinds.stateInput(kind: spec.kind, config: spec.config) {
                case .whole: task["reads"] = .string("all")
                case .none: task["reads"] = .array([])
                case .channel(let c): task["reads"] = .array([.string(c)])
                case .channels(let names): task["reads"] = .array(names.map { .string($0) })
                }
            }
            task["input"] = t["input"] ?? .null
            task["attempts"] = .array(attempts.filter { $0.taskID == id }.sorted { $0.attempt < $1.attempt }.map(Self.attemptJSON))
            let own = writes.filter { $0.taskID == id }
            // A finished step's writes live on as the channel values of the checkpoint it made
            // (`produced.updated`); they are kept per task only while the step is unfinished.
            task["writes"] = produced == nil ? .array(own.map(Self.writeJSON)) : .null
            tasks.append(.object(task))
        }
        // Attempts of tasks the checkpoint no longer plans (a rewound step): shown, not lost.
        for a in attempts where !seen.contains(a.taskID) {
            seen.insert(a.taskID)
            tasks.append(.object(["task_id": .string(a.taskID), "node": .string(a.node), "input": .null, "writes": .null,
                                  "attempts": .array(attempts.filter { $0.taskID == a.taskID }.sorted { $0.attempt < $1.attempt }.map(Self.attemptJSON))]))
        }
        doc["tasks"] = .array(tasks)

        if let c = produced {
            var updated: [String: JSONValue] = [:]
            let after = try await store.state(at: c)
            for (channel, version) in c.channelVersions where version == c.checkpointID { updated[channel] = after[channel] ?? .null }
            doc["produced"] = .object(["checkpoint_id": .string(c.checkpointID), "source": .string(c.source), "created_at": .double(c.createdAt),
                                       "updated": .object(updated), "next_tasks": c.nextTasks, "metadata": c.metadata])
        } else {
            doc["produced"] = .null
        }
        if !attempts.isEmpty {
            let start = attempts.map { $0.queuedAt ?? $0.startedAt }.min() ?? 0
            let end = attempts.map(\.finishedAt).max() ?? 0
            var timing: [String: JSONValue] = ["first_ready_at": .double(start), "last_finished_at": .double(end),
                                               "attempts": .int(Int64(attempts.count)), "wall_ms": .double(((end - start) * 1e6).rounded() / 1000)]
            if let c = produced { timing["checkpoint_at"] = .double(c.createdAt) }
            doc["timing"] = .object(timing)
        }
        var reply = Cairn_V1_DebugReply()
        reply.json = Data(JSONValue.object(doc).jsonBytes())
        return reply
    }

    static func attemptJSON(_ a: TaskExecutionRecord) -> JSONValue {
        var o: [String: JSONValue] = ["attempt": .int(Int64(a.attempt)), "worker": .string(a.worker), "status": .string(a.status),
                                      "started_at": .double(a.startedAt), "finished_at": .double(a.finishedAt),
                                      "duration_ms": .double(a.durationMilliseconds)]
        if let q = a.queuedAt { o["queued_at"] = .double(q); o["queue_ms"] = .int(a.queueMS ?? 0) }
        if let e = a.error { o["error"] = .string(e) }
        if let k = a.errorKind { o["error_kind"] = .string(k) }
        if a.records.hasDetail || a.records.cost != 0 || a.records.apiCalls != 0 { o["records"] = a.records.json() }
        return .object(o)
    }

    static func writeJSON(_ w: PendingWriteRecord) -> JSONValue {
        var o: [String: JSONValue] = ["channel": .string(w.channel), "value": w.value]
        switch w.idx {
        case PendingWriteRecord.resultIdx: o["kind"] = .string("result")
        case PendingWriteRecord.errorIdx: o["kind"] = .string("error")
        default: o["kind"] = .string(w.idx < 0 ? "control" : "write")
        }
        return .object(o)
    }
}
