import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// Terminal output: tables that line up, colors only on a terminal, times people read.
enum Output {
    static let isTTY = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        && ProcessInfo.processInfo.environment["TERM"] != "dumb"

    static func color(_ text: String, _ code: String) -> String { isTTY ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
    static func bold(_ t: String) -> String { color(t, "1") }
    static func dim(_ t: String) -> String { color(t, "2") }

    static func status(_ s: String) -> String {
        switch s {
        case "completed": return color(s, "32")
        case "failed": return color(s, "31")
        case "running", "queued": return color(s, "36")
        case "paused": return color(s, "33")
        case "cancelled": return color(s, "35")
        default: return s
        }
    }

    /// Prints rows under a header, each column as wide as its widest cell (ANSI codes not counted).
    static func table(_ header: [String], _ rows: [[String]]) {
        for line in tableLines(header, rows) { print(line) }
    }

    static func tableLines(_ header: [String], _ rows: [[String]]) -> [String] {
        var widths = header.map(visibleWidth)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], visibleWidth(c)) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c + String(repeating: " ", count: max(0, widths[i] - visibleWidth(c)))
            }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
        }
        return [bold(line(header))] + rows.map(line)
    }

    static func visibleWidth(_ s: String) -> Int {
        var n = 0, inEscape = false
        for ch in s.unicodeScalars {
            if inEscape { if ch == "m" { inEscape = false }; continue }
            if ch == "\u{1B}" { inEscape = true; continue }
            n += 1
        }
        return n
    }

    static func time(_ t: Double) -> String {
        guard t > 0 else { return "-" }
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static func ago(_ t: Double, now: Double = Date().timeIntervalSince1970) -> String {
        guard t > 0 else { return "-" }
        let d = max(0, now - t)
        if d < 1 { return "now" }
        if d < 60 { return "\(Int(d))s ago" }
        if d < 3600 { return "\(Int(d / 60))m ago" }
        if d < 86400 { return "\(Int(d / 3600))h ago" }
        return "\(Int(d / 86400))d ago"
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        return Durations.format(millis: Int64(seconds * 1000))
    }

    static func bar(_ done: Int, _ total: Int, width: Int = 24) -> String {
        guard total > 0 else { return "[" + String(repeating: "·", count: width) + "]" }
        let filled = min(width, done * width / total)
        return "[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "]"
    }

    static func printJSON(_ v: JSONValue) {
        print((try? v.jsonString(pretty: true)) ?? v.compactString)
    }

    static func json(_ d: Data) -> JSONValue {
        d.isEmpty ? .null : ((try? JSONValue.parse([UInt8](d))) ?? .string(String(decoding: d, as: UTF8.self)))
    }

    // MARK: JSON forms of protocol messages

    static func json(_ r: Cairn_V1_RunInfo) -> JSONValue {
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
        if r.tasksTotal > 0 { o["step_tasks"] = .object(["done": .int(Int64(r.tasksDone)), "total": .int(Int64(r.tasksTotal))]) }
        return .object(o)
    }

    static func json(_ e: Cairn_V1_RunEvent) -> JSONValue {
        var o: [String: JSONValue] = ["run_id": .string(e.runID), "kind": .string(e.kind), "step": .int(Int64(e.step)), "final": .bool(e.final)]
        if !e.node.isEmpty { o["node"] = .string(e.node) }
        if !e.taskID.isEmpty { o["task_id"] = .string(e.taskID) }
        if !e.worker.isEmpty { o["worker"] = .string(e.worker) }
        if !e.message.isEmpty { o["message"] = .string(e.message) }
        if e.attempt > 0 { o["attempt"] = .int(Int64(e.attempt)) }
        if e.hasRun { o["run"] = json(e.run) }
        return .object(o)
    }

    static func json(_ h: Cairn_V1_History) -> JSONValue {
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

    static func json(_ w: Cairn_V1_WorkerStatus) -> JSONValue {
        .object(["worker_id": .string(w.workerID), "name": .string(w.name), "slots": .int(Int64(w.slots)),
                 "running": .int(Int64(w.running)), "state": .string(w.state), "kinds": .array(w.kinds.map { .string($0) }),
                 "connected_at": .double(w.connectedAt), "last_heartbeat": .double(w.lastHeartbeat),
                 "tasks_done": .int(Int64(w.tasksDone)), "address": .string(w.address)])
    }

    static func json(_ s: Cairn_V1_Stats) -> JSONValue {
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
                 "tasks_poisoned": .int(Int64(s.tasksPoisoned)), "auth": .string(s.auth),
                 "store_error": s.storeError.isEmpty ? .null : .string(s.storeError)])
    }
}
