import CairnCore
import CairnProtocol
import NIOConcurrencyHelpers

/// The channel values a worker keeps between tasks of a run, so that a long list is not sent
/// whole at every step (one per connection; a new connection starts empty, as the coordinator's
/// mirror of it does).
///
/// The coordinator decides everything (`StateMirror`): which runs to drop, which values to keep,
/// what the worker already holds. Assignments are applied here in the order they arrive, on the
/// event loop that reads them, before any task runs; each task gets its state as one JSON object,
/// built once. A part that does not match what is kept (a bug on either side) fails only that
/// task, with the kind `state_cache`: the coordinator then sends that run whole again.
final class StateCache: @unchecked Sendable {
    struct Kept {
        var version: String
        var json: [UInt8]
        /// Changes when the value is replaced, not when items are appended: a served process that
        /// holds an earlier version of the same lineage holds a prefix of this list.
        var lineage: UInt64
    }
    struct Mismatch: Error, CustomStringConvertible {
        var description: String
    }

    /// Touched only on the connection's event loop (the tap), or by the session alone when there is no tap.
    private var runs: [String: [String: Kept]] = [:]
    private var lineages: UInt64 = 0
    /// Built states waiting for the session to take them, by lease.
    private let built = NIOLockedValueBox<[String: Result<StateView, Mismatch>]>([:])

    /// Bytes kept (for tests and logs).
    var keptBytes: Int { runs.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.json.count } } }

    static func uses(_ a: Cairn_V1_TaskAssignment) -> Bool { !a.stateParts.isEmpty || !a.cacheEvict.isEmpty }

    /// Applies the assignment's evictions and parts; the task's state, channel by channel.
    func apply(_ a: Cairn_V1_TaskAssignment) -> Result<StateView, Mismatch> {
        for r in a.cacheEvict { runs[r] = nil }
        // Taken out while it changes, so that each kept list is uniquely referenced and grows in place.
        var kept = runs.removeValue(forKey: a.runID) ?? [:]
        var out: [StateView.Channel] = []
        out.reserveCapacity(a.stateParts.count)
        for p in a.stateParts {
            switch p.kind {
            case .statePartWhole:
                let json = Array(p.valueJson)
                if p.keep {
                    lineages += 1
                    kept[p.channel] = Kept(version: p.version, json: json, lineage: lineages)
                    out.append(.init(name: p.channel, version: p.version, lineage: lineages, json: json))
                } else {
                    kept[p.channel] = nil
                    out.append(.init(name: p.channel, version: p.version, lineage: 0, json: json))
                }
            case .statePartAppend:
                guard var k = kept.removeValue(forKey: p.channel), k.version == p.baseVersion else {
                    return .failure(Mismatch(description: "channel '\(p.channel)' of run \(a.runID): items to append after version \(p.baseVersion), which this worker does not hold"))
                }
                let items = p.valueJson
                guard k.json.last == UInt8(ascii: "]"), items.first == UInt8(ascii: "["), items.last == UInt8(ascii: "]") else {
                    return .failure(Mismatch(description: "channel '\(p.channel)' of run \(a.runID): an append part that is not a list"))
                }
                if items.count > 2 {
                    k.json.removeLast()
                    if k.json.count > 1 { k.json.append(UInt8(ascii: ",")) }
                    k.json += items.dropFirst().dropLast()
                    k.json.append(UInt8(ascii: "]"))
                }
                k.version = p.version
                kept[p.channel] = k
                out.append(.init(name: p.channel, version: p.version, lineage: k.lineage, json: k.json))
            case .statePartKept:
                guard let k = kept[p.channel], k.version == p.version else {
                    return .failure(Mismatch(description: "channel '\(p.channel)' of run \(a.runID): version \(p.version) should be kept here and is not"))
                }
                out.append(.init(name: p.channel, version: p.version, lineage: k.lineage, json: k.json))
            case .UNRECOGNIZED(let n):
                return .failure(Mismatch(description: "channel '\(p.channel)': unknown state part kind \(n)"))
            }
        }
        if !kept.isEmpty { runs[a.runID] = kept }
        return .success(StateView(runID: a.runID, channels: out))
    }

    /// Keeps a built state until the session takes the assignment.
    func stash(_ lease: String, _ state: Result<StateView, Mismatch>) {
        built.withLockedValue { $0[lease] = state }
    }

    func take(_ lease: String) -> Result<StateView, Mismatch>? {
        built.withLockedValue { $0.removeValue(forKey: lease) }
    }
}

/// A task's state as the worker's cache built it: each channel's JSON, with its version and the
/// lineage of the kept value it is (0: not kept). Served processes that keep state are handed
/// what changed from it (`ProcessStateMirror`); everything else gets `json`.
public struct StateView: Sendable {
    public struct Channel: Sendable {
        public var name: String
        public var version: String
        public var lineage: UInt64
        public var json: [UInt8]
    }
    public var runID: String
    public var channels: [Channel]

    /// The state as one JSON object.
    public var json: [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(channels.reduce(2) { $0 + $1.json.count + $1.name.utf8.count + 4 })
        for (i, c) in channels.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += JSONValue.string(c.name).jsonBytes()
            out.append(UInt8(ascii: ":"))
            out += c.json
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
