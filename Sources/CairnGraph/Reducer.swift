import CairnCore

/// How a channel combines the writes a step makes to it.
public enum Reducer: String, Sendable, CaseIterable {
    /// The last write in task order wins.
    case replace
    /// Lists grow: a list write appends its items, any other value is appended as one item.
    case append
    /// Objects merge key by key (shallow); later writes win per key.
    case merge
    /// Numbers add up; integers stay integers.
    case sum

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case typeMismatch(reducer: Reducer, expected: String, got: String)
        public var description: String {
            switch self {
            case .typeMismatch(let r, let expected, let got):
                return "reducer '\(r.rawValue)' needs \(expected), got \(got)"
            }
        }
    }

    /// Applies one write to the current value.
    public func apply(current: JSONValue?, write: JSONValue) throws -> JSONValue {
        var value = current
        try apply(&value, write: write)
        return value ?? .null
    }

    /// Applies one write in place. When `value` holds the only reference to its list or object
    /// (the caller moved it out of the state), `append` is amortised O(1) and `merge` costs the
    /// keys written: nothing already there is copied. On a type mismatch `value` is unchanged.
    public func apply(_ value: inout JSONValue?, write: JSONValue) throws {
        switch self {
        case .replace:
            value = write
        case .append:
            var list: [JSONValue]
            switch value {
            case .none, .some(.null): list = []
            case .some(.array(let a)): list = a
            case .some(let other): throw Failure.typeMismatch(reducer: self, expected: "a list", got: other.kindName)
            }
            value = nil  // `list` is now the only reference: appending does not copy it
            if case .array(let items) = write { list.append(contentsOf: items) } else { list.append(write) }
            value = .array(list)
        case .merge:
            var object: [String: JSONValue]
            switch value {
            case .none, .some(.null): object = [:]
            case .some(.object(let o)): object = o
            case .some(let other): throw Failure.typeMismatch(reducer: self, expected: "an object", got: other.kindName)
            }
            guard case .object(let update) = write else {
                throw Failure.typeMismatch(reducer: self, expected: "an object", got: write.kindName)
            }
            value = nil
            for (k, v) in update { object[k] = v }
            value = .object(object)
        case .sum:
            let base = value ?? .int(0)
            switch (base, write) {
            case (.null, .int(let b)): value = .int(b)
            case (.null, .double(let b)): value = .double(b)
            case (.int(let a), .int(let b)):
                let (r, overflow) = a.addingReportingOverflow(b)
                value = overflow ? .double(Double(a) + Double(b)) : .int(r)
            case (.int, .double), (.double, .int), (.double, .double):
                value = .double(base.doubleValue! + write.doubleValue!)
            default:
                let bad = write.doubleValue == nil ? write : base
                throw Failure.typeMismatch(reducer: self, expected: "a number", got: bad.kindName)
            }
        }
    }
}
