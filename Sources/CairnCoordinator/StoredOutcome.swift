import CairnCore
import CairnGraph
import CairnStore

/// A finished task as it is stored under its step's checkpoint until the step's own checkpoint
/// is written: its writes as pending-write rows (idx 0, 1, …), and a control record (idx
/// `resultIdx`, channel `__result__`) only for what the writes do not say: routing, sends, a
/// question, cost. What a restart, a resume or a fork reads back as the task's outcome.
enum StoredOutcome {
    /// The rows that store `o`.
    static func rows(_ o: TaskOutcome, runID: String, checkpointID: String, cost: Double, apiCalls: Int) -> [PendingWriteRecord] {
        var rows = o.writes.enumerated().map { i, w in
            PendingWriteRecord(runID: runID, checkpointID: checkpointID, taskID: o.taskID, idx: i, channel: w.channel, value: w.value)
        }
        // A task that just wrote is rebuilt from its writes after a restart.
        if o.writes.isEmpty || !o.goto.isEmpty || !o.sends.isEmpty || o.interrupt != nil || cost != 0 || apiCalls != 0 {
            rows.append(PendingWriteRecord(runID: runID, checkpointID: checkpointID, taskID: o.taskID, idx: PendingWriteRecord.resultIdx,
                                           channel: "__result__", value: record(o, cost: cost, apiCalls: apiCalls)))
        }
        return rows
    }

    /// The control record stored beside a task's writes: enough to rebuild its outcome after a restart.
    private static func record(_ o: TaskOutcome, cost: Double, apiCalls: Int) -> JSONValue {
        var rec: [String: JSONValue] = ["node": .string(o.node)]
        if !o.goto.isEmpty { rec["goto"] = .array(o.goto.map { .string($0) }) }
        if !o.sends.isEmpty { rec["sends"] = .array(o.sends.map { .object(["node": .string($0.node), "input": $0.input]) }) }
        if let i = o.interrupt { rec["interrupt"] = i }
        if let i = o.interruptID { rec["interrupt_id"] = .string(i) }
        if cost != 0 { rec["cost"] = .double(cost) }
        if apiCalls != 0 { rec["api_calls"] = .int(Int64(apiCalls)) }
        return .object(rec)
    }

    /// A task's outcome rebuilt from its stored writes (after a restart); nil when the task has
    /// not finished. `node` is the planned task's node, for tasks stored without a control record.
    static func outcome(taskID: String, node plannedNode: String, records: [PendingWriteRecord]) -> TaskOutcome? {
        let writes = records.filter { $0.idx >= 0 }.sorted { $0.idx < $1.idx }.map { (channel: $0.channel, value: $0.value) }
        guard let result = records.first(where: { $0.idx == PendingWriteRecord.resultIdx })?.value else {
            return writes.isEmpty ? nil : TaskOutcome(taskID: taskID, node: plannedNode, writes: writes, goto: [], sends: [], interrupt: nil)
        }
        let node = result["node"]?.stringValue ?? plannedNode
        let sends = (result["sends"]?.arrayValue ?? []).compactMap { s -> (node: String, input: JSONValue)? in
            guard let n = s["node"]?.stringValue else { return nil }
            return (n, s["input"] ?? .null)
        }
        return TaskOutcome(taskID: taskID, node: node, writes: writes,
                           goto: (result["goto"]?.arrayValue ?? []).compactMap(\.stringValue), sends: sends,
                           interrupt: result["interrupt"], interruptID: result["interrupt_id"]?.stringValue)
    }
}
