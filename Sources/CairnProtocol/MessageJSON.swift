import CairnCore
import Foundation

/// The JSON forms of protocol messages: what `cairn … --json` prints and the HTTP API answers,
/// one shape for both.
public enum MessageJSON {
    /// A JSON-bytes field: its value, null when empty, the text as a string when it is not JSON.
    public static func json(_ d: Data) -> JSONValue {
        d.isEmpty ? .null : ((try? JSONValue.parse([UInt8](d))) ?? .string(String(decoding: d, as: UTF8.self)))  // not JSON: shown as text
    }


    public static func json(_ r: Cairn_V1_RunInfo) -> JSONValue {
        if !r.damage.isEmpty { return .object(["run_id": .string(r.runID), "status": "damaged", "damage": .string(r.damage)]) }
        var o: [String: JSONValue] = [
            "run_id": .string(r.runID), "graph": .string(r.graphName), "graph_version": .int(Int64(r.graphVersion)),
            "status": .string(r.status), "step": .int(Int64(r.step)), "cost": .double(r.cost),
            "api_calls": .int(Int64(r.apiCalls)), "tokens_in": .int(Int64(clamping: r.tokensIn)),
            "tokens_out": .int(Int64(clamping: r.tokensOut)), "created_at": .double(r.createdAt), "updated_at": .double(r.updatedAt),
            "durability": .string(r.durability), "checkpoint_id": .string(r.checkpointID),
            "next": .array(r.nextNodes.map { .string($0) }),
        ]
        o["error"] = r.error.isEmpty ? .null : .string(r.error)
        o["finished_at"] = r.finishedAt > 0 ? .double(r.finishedAt) : .null
        o["output"] = json(r.outputJson)
        if !r.interruptJson.isEmpty { o["interrupt"] = json(r.interruptJson) }
        if !r.forkedFrom.isEmpty { o["forked_from"] = .string(r.forkedFrom) }
        if r.resumeCount > 0 { o["resume_count"] = .int(Int64(r.resumeCount)) }
        if r.pinned { o["pinned"] = .bool(true) }
        if r.tasksTotal > 0 { o["step_tasks"] = .object(["done": .int(Int64(r.tasksDone)), "total": .int(Int64(r.tasksTotal))]) }
        return .object(o)
    }

    public static func json(_ e: Cairn_V1_RunEvent) -> JSONValue {
        var o: [String: JSONValue] = ["run_id": .string(e.runID), "kind": .string(e.kind), "step": .int(Int64(e.step)), "final": .bool(e.final)]
        if !e.node.isEmpty { o["node"] = .string(e.node) }
        if !e.taskID.isEmpty { o["task_id"] = .string(e.taskID) }
        if !e.worker.isEmpty { o["worker"] = .string(e.worker) }
        if !e.message.isEmpty { o["message"] = .string(e.message) }
        if e.attempt > 0 { o["attempt"] = .int(Int64(e.attempt)) }
        if e.hasRun { o["run"] = json(e.run) }
        return .object(o)
    }

    public static func json(_ h: Cairn_V1_History) -> JSONValue {
        .object(["run_id": .string(h.runID), "forked_from": h.forkedFrom.isEmpty ? .null : .string(h.forkedFrom),
                 "checkpoints": .array(h.checkpoints.map { c in
            .object([
                "run_id": .string(c.runID.isEmpty ? h.runID : c.runID), "metadata": c.metadataJson.isEmpty ? .null : json(c.metadataJson),
                "checkpoint_id": .string(c.checkpointID), "parent_id": c.parentID.isEmpty ? .null : .string(c.parentID),
                "step": .int(Int64(c.step)), "source": .string(c.source), "created_at": .double(c.createdAt),
                "next": .array(c.nextNodes.map { .string($0) }), "updated": .array(c.updatedChannels.map { .string($0) }),
                "tasks": .array(c.tasks.map { t in
                    .object(["task_id": .string(t.taskID), "node": .string(t.node), "attempt": .int(Int64(t.attempt)),
                             "worker": .string(t.worker), "status": .string(t.status), "duration_ms": .int(Int64(t.durationMs)),
                             "error": t.error.isEmpty ? .null : .string(t.error), "cost": .double(t.cost)])
                }),
            ])
        })])
    }

    public static func json(_ w: Cairn_V1_WorkerStatus) -> JSONValue {
        .object(["worker_id": .string(w.workerID), "name": .string(w.name), "slots": .int(Int64(w.slots)),
                 "running": .int(Int64(w.running)), "state": .string(w.state), "kinds": .array(w.kinds.map { .string($0) }),
                 "connected_at": .double(w.connectedAt), "last_heartbeat": .double(w.lastHeartbeat),
                 "tasks_done": .int(Int64(w.tasksDone)), "address": .string(w.address)])
    }

    public static func json(_ s: Cairn_V1_Stats) -> JSONValue {
        .object(["runs_by_status": .object(s.runsByStatus.mapValues { .int(Int64($0)) }),
                 "tasks_dispatched": .int(Int64(s.tasksDispatched)), "tasks_completed": .int(Int64(s.tasksCompleted)),
                 "tasks_failed": .int(Int64(s.tasksFailed)), "tasks_retried": .int(Int64(s.tasksRetried)),
                 "queue_depth": .int(Int64(s.queueDepth)), "workers": .int(Int64(s.workers)),
                 "stale_results": .int(Int64(s.staleResults)), "store_transactions": .int(Int64(s.storeBatches)),
                 "store_rows": .int(Int64(s.storeRows)), "uptime_seconds": .double(s.uptimeSeconds),
                 "wal_bytes": .int(Int64(s.walBytes)), "redis_configured": .bool(s.redisConfigured), "redis_up": .bool(s.redisUp),
                 "redis_failures": .int(Int64(s.redisFailures)), "hot_waiting_batches": .int(Int64(s.hotWaitingBatches)),
                 "hot_oldest_seconds": .double(s.hotOldestSeconds), "hot_batches": .int(Int64(s.hotBatches)),
                 "flushes": .int(Int64(s.flushes)), "tasks_reassigned": .int(Int64(s.tasksReassigned)),
                 "leases_expired": .int(Int64(s.leasesExpired)), "leases_fenced": .int(Int64(s.leasesFenced)),
                 "state_bytes_sent": .int(Int64(s.stateBytesSent)), "state_bytes_kept": .int(Int64(s.stateBytesKept)),
                 "tasks_poisoned": .int(Int64(s.tasksPoisoned)), "auth": .string(s.auth),
                 "role": s.role.isEmpty ? .null : .string(s.role), "leader_epoch": s.role.isEmpty ? .null : .int(Int64(s.leaderEpoch)),
                 "store_error": s.storeError.isEmpty ? .null : .string(s.storeError)])
    }
}
