import CairnCore
import CairnStore
import Foundation

/// How SQLite keeps a step in few small rows: the small channel values a checkpoint introduces
/// go into one blob with its own SHA-256, in a row of `checkpoint_inline` that the checkpoint's
/// (narrow) row points at, instead of a row each in `channel_values`. (Stores written before
/// the `v6-records` migration also folded a step's completed attempts in, as `"x"`; that
/// migration moves them to `attempts`, and `execution` below reads them for it.)
///
/// Purely a storage layout: the records going in and coming out are the same as for any other
/// store. Only rows written in the same batch as their checkpoint are folded in (a step's last
/// result and its checkpoint always are); large values and anything else keep their own rows.
/// The planned tasks' ids, which are derived from the checkpoint, are left out and derived again.
enum CheckpointInline {
    /// Values whose JSON is larger than this keep a row of their own (and are compressed there),
    /// so an inline row stays within one page.
    static let maxValueBytes = 512

    struct Content {
        var values: [String: JSONValue] = [:]
    }

    struct Plan {
        /// Per checkpoint (index in the batch), what it carries.
        var content: [Int: Content] = [:]
        var inlinedValues = Set<Int>()
    }

    static func plan(_ b: StoreBatch) -> Plan {
        var plan = Plan()
        guard !b.checkpoints.isEmpty else { return plan }
        var byVersion: [String: Int] = [:]
        for (i, c) in b.checkpoints.enumerated() {
            byVersion[c.runID + "\u{1F}" + c.namespace + "\u{1F}" + c.checkpointID] = i
        }
        for (j, v) in b.channelValues.enumerated() {
            guard let i = byVersion[v.runID + "\u{1F}" + v.namespace + "\u{1F}" + v.version],
                  v.value.jsonBytes().count <= maxValueBytes else { continue }
            var entry: [JSONValue] = [v.value]
            if let base = v.baseVersion { entry.append(.string(base == b.checkpoints[i].parentID ? "" : base)) }
            plan.content[i, default: Content()].values[v.channel] = .array(entry)
            plan.inlinedValues.insert(j)
        }
        return plan
    }

    /// `[codec][sha256][data]` of `{"v": values}`.
    static func encode(_ c: Content) -> Data {
        var o: [String: JSONValue] = [:]
        if !c.values.isEmpty { o["v"] = .object(c.values) }
        let blob = StoredBlob(.object(o))
        return Data([blob.codec.rawValue] + blob.sha256 + blob.data)
    }

    static func decode(_ data: Data, context: @autoclosure () -> String) throws -> (values: [String: JSONValue], executions: [[JSONValue]]) {
        let bytes = [UInt8](data)
        guard bytes.count > 33, let codec = StoredBlob.Codec(rawValue: bytes[0]) else {
            throw StoredBlob.IntegrityError(context: context(), reason: "inline rows are truncated")
        }
        let value = try StoredBlob(codec: codec, sha256: Array(bytes[1..<33]), data: Array(bytes[33...])).decode(context: context())
        return (value["v"]?.objectValue ?? [:], (value["x"]?.arrayValue ?? []).compactMap(\.arrayValue))
    }

    /// A channel value stored inline: the value and its base version (nil for a full snapshot).
    static func value(_ entry: JSONValue?, parentID: String?) -> (value: JSONValue, base: String?)? {
        // nil: this channel has no inline value here (the caller then reads channel_values).
        guard let items = entry?.arrayValue, let value = items.first else { return nil }
        guard items.count > 1, let base = items[1].stringValue else { return (value, nil) }
        return (value, base.isEmpty ? parentID : base)
    }

    static func execution(_ e: [JSONValue], runID: String, step: Int, parentID: String?, createdAt: Double) -> TaskExecutionRecord? {
        guard e.count >= 5, let node = e[0].stringValue, let attempt = e[1].intValue, let worker = e[2].stringValue,
              let before = e[3].intValue, let ran = e[4].intValue else { return nil }
        let taskID = e.count > 7 ? e[7].stringValue
            : parentID.map { Identifiers.taskID(checkpointID: $0, namespace: "", step: step, node: node, trigger: "edge") }
        guard let taskID else { return nil }
        let started = createdAt - Double(before) / 1e6
        return TaskExecutionRecord(runID: runID, taskID: taskID, node: node, step: step, attempt: Int(attempt), worker: worker,
                                   status: "completed", startedAt: started, finishedAt: started + Double(ran) / 1e6, error: nil,
                                   cost: e.count > 5 ? e[5].doubleValue ?? 0 : 0, apiCalls: e.count > 6 ? Int(e[6].intValue ?? 0) : 0)
    }

    // MARK: planned tasks

    /// The checkpoint's planned tasks without the ids that follow from the checkpoint itself.
    static func compactNext(_ c: CheckpointRecord) -> JSONValue {
        guard case .array(let tasks) = c.nextTasks else { return c.nextTasks }
        return .array(tasks.map { t in
            // Only edge-triggered tasks (a chain's): a fan-out's sends keep their ids, which is
            // cheaper than hashing a thousand of them again on every write and read.
            guard case .object(var o) = t, o["trigger"] == nil, let id = o["id"]?.stringValue, let node = o["node"]?.stringValue,
                  id == Identifiers.taskID(checkpointID: c.checkpointID, namespace: c.namespace, step: c.step + 1, node: node, trigger: "edge")
            else { return t }
            o["id"] = nil
            return .object(o)
        })
    }

    /// The planned tasks with every id back.
    static func expandNext(_ next: JSONValue, checkpointID: String, namespace: String, step: Int) -> JSONValue {
        guard case .array(let tasks) = next else { return next }
        return .array(tasks.map { t in
            guard case .object(var o) = t, o["id"] == nil, o["trigger"] == nil, let node = o["node"]?.stringValue else { return t }
            o["id"] = .string(Identifiers.taskID(checkpointID: checkpointID, namespace: namespace, step: step + 1, node: node, trigger: "edge"))
            return .object(o)
        })
    }
}
