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
        switch self {
        case .replace:
            return write
        case .append:
            var list: [JSONValue]
            switch current {
            case .none, .some(.null): list = []
            case .some(.array(let a)): list = a
            case .some(let other): throw Failure.typeMismatch(reducer: self, expected: "a list", got: other.kindName)
            }
            if case .array(let items) = write { list.append(contentsOf: items) } else { list.append(write) }
            return .array(list)
        case .merge:
            var object: [String: JSONValue]
            switch current {
            case .none, .some(.null): object = [:]
            case .some(.object(let o)): object = o
            case .some(let other): throw Failure.typeMismatch(reducer: self, expected: "an object", got: other.kindName)
            }
            guard case .object(let update) = write else {
                throw Failure.typeMismatch(reducer: self, expected: "an object", got: write.kindName)
            }
            for (k, v) in update { object[k] = v }
            return .object(object)
        case .sum:
            let base = current ?? .int(0)
            switch (base, write) {
            case (.null, .int(let b)): return .int(b)
            case (.null, .double(let b)): return .double(b)
            case (.int(let a), .int(let b)):
                let (r, overflow) = a.addingReportingOverflow(b)
                return overflow ? .double(Double(a) + Double(b)) : .int(r)
            case (.int, .double), (.double, .int), (.double, .double):
                return .double(base.doubleValue! + write.doubleValue!)
            default:
                let bad = write.doubleValue == nil ? write : base
                throw Failure.typeMismatch(reducer: self, expected: "a number", got: bad.kindName)
            }
        }
    }
}
