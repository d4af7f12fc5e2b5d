import CairnCore
import CairnGraph
import CairnStore

/// A question a paused run waits on, as its record lists it (`runs.interrupt`):
///
/// ```
/// {"checkpoint": "<id>", "pending": [
///    {"id": "i-3f9a1c2e", "reason": "node", "node": "approve", "task_id": "…", "value": <the node's payload>},
///    {"id": "i-77b0d412", "reason": "interrupt_before", "node": "publish"}]}
/// ```
/// `reason` is `node` (the node returned `interrupt`), `interrupt_before`, `interrupt_after`; a
/// run paused by `cairn update` has no pending question and `"reason": "update"`. An id is fixed
/// when the question is asked and stays while it waits, so a person can answer it by name.
struct PendingInterrupt: Sendable, Equatable {
    var id: String
    var reason: String
    var node: String
    var taskID: String?
    var value: JSONValue?
    /// When the pause stops waiting (seconds since the epoch), and what happens then: `"fail"`
    /// or `{"resume": VALUE}` (the graph's `interrupt_before: [{node, timeout, on_timeout}]`).
    var deadline: Double?
    var onTimeout: JSONValue?

    var json: JSONValue {
        var o: [String: JSONValue] = ["id": .string(id), "reason": .string(reason), "node": .string(node)]
        if let taskID { o["task_id"] = .string(taskID) }
        if let value { o["value"] = value }
        if let deadline { o["deadline"] = .double(deadline) }
        if let onTimeout { o["on_timeout"] = onTimeout }
        return .object(o)
    }

    init(id: String, reason: String, node: String, taskID: String? = nil, value: JSONValue? = nil,
         deadline: Double? = nil, onTimeout: JSONValue? = nil) {
        self.id = id; self.reason = reason; self.node = node; self.taskID = taskID; self.value = value
        self.deadline = deadline; self.onTimeout = onTimeout
    }

    init?(json: JSONValue) {
        guard let id = json["id"]?.stringValue, let reason = json["reason"]?.stringValue, let node = json["node"]?.stringValue else { return nil }
        self.init(id: id, reason: reason, node: node, taskID: json["task_id"]?.stringValue, value: json["value"],
                  deadline: json["deadline"]?.doubleValue, onTimeout: json["on_timeout"])
    }

    /// The pause `interrupt_before` / `interrupt_after` (`reason`) of `node` makes at `now`,
    /// with the deadline the graph gives it, if any.
    static func pause(_ reason: String, node: String, checkpointID: String, graph: Graph, now: Double) -> PendingInterrupt {
        let d = graph.interruptDeadlines["\(reason):\(node)"]
        return PendingInterrupt(id: id(checkpointID: checkpointID, key: reason + ":" + node), reason: reason, node: node,
                                deadline: d.map { now + Double($0.timeoutMS) / 1000 }, onTimeout: d?.onTimeoutJSON)
    }

    /// A question's id: `i-` and 8 hex digits of the SHA-256 of where it was asked.
    static func id(checkpointID: String, key: String) -> String {
        "i-" + Hashing.sha256Hex(Array((checkpointID + "\u{1F}" + key).utf8)).prefix(8)
    }

    /// What a paused run's record holds.
    static func record(checkpointID: String, pending: [PendingInterrupt], reason: String? = nil) -> JSONValue {
        var o: [String: JSONValue] = ["checkpoint": .string(checkpointID), "pending": .array(pending.map(\.json))]
        if let reason { o["reason"] = .string(reason) }
        return .object(o)
    }

    /// The questions a paused run's record lists. A record written before ids existed
    /// (`{"reason", "node", "value"}`: its step was already complete) reads as one question
    /// whose answer lets the run go on.
    static func pending(in interrupt: JSONValue?, checkpointID: String) -> [PendingInterrupt] {
        guard let interrupt else { return [] }
        if let list = interrupt["pending"]?.arrayValue { return list.compactMap(PendingInterrupt.init(json:)) }
        guard let reason = interrupt["reason"]?.stringValue, let node = interrupt["node"]?.stringValue else { return [] }
        return [PendingInterrupt(id: id(checkpointID: checkpointID, key: reason + ":" + node),
                                 reason: reason == "node" ? "interrupt_after" : reason, node: node, value: interrupt["value"])]
    }
}

/// What a person answers with `cairn resume`.
enum ResumeAnswers: Sendable, Equatable {
    /// No value: every pending question is answered, with nothing (`null` for a node that asked).
    case none
    /// A value: the answer to the one pending question, or an object of id → answer.
    case value(JSONValue)
    /// An answer to the question with this id.
    case one(id: String, value: JSONValue?)
}
