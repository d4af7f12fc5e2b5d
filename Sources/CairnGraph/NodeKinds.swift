import CairnCore

/// The node kinds built into every worker, named in one place: the keys each accepts besides
/// the common ones (the parser checks them) and what of the run's state a task of the kind is
/// sent (the coordinator). Their handlers are CairnWorker's `BuiltinHandlers`, one per name here.
public enum NodeKinds {
    /// What a task of a kind reads of the run's state, so the coordinator sends only that.
    public enum StateInput: Sendable, Equatable {
        /// Nothing: the kind works from its config alone.
        case none
        /// One channel, named by the node's config (`map`'s `over`).
        case channel(String)
        /// The channels the node declares with `reads:` (exec and Swift handlers).
        case channels([String])
        /// The whole state (`exec`, Swift handlers, anything not built in).
        case whole
    }

    public static let builtin: [String: Set<String>] = [
        "exec": ["command", "env", "serve", "reads"],
        "echo": ["writes"],
        "sleep": ["duration", "writes"],
        "fail": ["message", "non_retryable"],
        "flaky": ["failures", "writes", "message"],
        "map": ["over", "to"],
    ]

    public static func stateInput(kind: String, config: JSONValue) -> StateInput {
        switch kind {
        case "echo", "sleep", "fail", "flaky": return .none
        case "map": return config["over"]?.stringValue.map { .channel($0) } ?? .none
        default:
            if case .array(let names)? = config["reads"] { return .channels(names.compactMap(\.stringValue)) }
            return .whole
        }
    }
}
