import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation

/// What one worker's state cache holds, decided here: the coordinator mirrors the cache and its
/// budget, and each assignment tells the worker what to drop, what to keep and what it already
/// has. The worker never evicts on its own, so the two agree with no round trip and no miss.
///
/// Per run and channel the worker holds one value at one version (a checkpoint id, which names
/// one value for good). A task is then sent, per channel it reads:
/// - `kept` when the worker holds the current version: nothing travels;
/// - `append` when the channel is an `append` list the worker holds an earlier version of, from
///   this same stay of the run in memory (where such a list only grows): only the new items;
/// - `whole` otherwise, kept if it fits the budget once the least recently used other runs go.
///
/// A run that leaves memory (ended, paused) or whose lineage changed is dropped with the next
/// assignment to that worker. A worker that reconnects starts empty on both sides.
struct StateMirror {
    struct Held {
        var version: String
        /// Items, for a list (what an `append` part extends).
        var items: Int?
        var bytes: Int
    }
    struct RunHeld {
        var incarnation: UInt64
        var channels: [String: Held] = [:]
        var bytes = 0
        var lastUse: UInt64 = 0
    }

    let budget: Int
    private(set) var used = 0
    private(set) var runs: [String: RunHeld] = [:]
    private var tick: UInt64 = 0
    private var pendingEvict: [String] = []

    init(budget: Int) { self.budget = budget }

    /// The run is gone from memory, or its cache is in doubt: the worker drops it with the next assignment.
    mutating func forget(_ runID: String) {
        guard let r = runs.removeValue(forKey: runID) else { return }
        used -= r.bytes
        pendingEvict.append(runID)
    }

    /// The state parts of a task of `run` that reads `channels`, and the runs the worker drops
    /// first; the mirror is left as the worker's cache will be once it has read them.
    mutating func parts(for run: ActiveRun, channels: [String]) -> (parts: [Cairn_V1_StatePart], evict: [String], sent: Int, kept: Int) {
        let runID = run.record.runID
        tick += 1
        if let r = runs[runID], r.incarnation != run.incarnation { forget(runID) }
        if runs[runID] == nil { runs[runID] = RunHeld(incarnation: run.incarnation) }
        runs[runID]!.lastUse = tick
        var parts: [Cairn_V1_StatePart] = []
        parts.reserveCapacity(channels.count)
        var sent = 0, kept = 0
        for name in channels {
            var p = Cairn_V1_StatePart()
            p.channel = name
            let version = run.checkpoint.channelVersions[name] ?? ""
            p.version = version
            let held = runs[runID]!.channels[name]
            if !version.isEmpty, let held, held.version == version {
                p.kind = .statePartKept
                kept += held.bytes
            } else if !version.isEmpty, let held, let had = held.items, run.graph.channels[name]?.reducer == .append,
                      case .array(let items)? = run.state[name], items.count >= had {
                let delta = JSONValue.array(Array(items[had...])).jsonBytes()
                if fit(runID, name, bytes: held.bytes + delta.count) {
                    p.kind = .statePartAppend
                    p.baseVersion = held.version
                    p.valueJson = Data(delta)
                    hold(runID, name, Held(version: version, items: items.count, bytes: held.bytes + delta.count))
                    kept += held.bytes
                } else {
                    p.kind = .statePartWhole
                    p.valueJson = Data(run.channelBytes(name))
                }
                sent += p.valueJson.count
            } else {
                p.kind = .statePartWhole
                let bytes = run.channelBytes(name)
                p.valueJson = Data(bytes)
                sent += bytes.count
                if !version.isEmpty, fit(runID, name, bytes: bytes.count) {
                    p.keep = true
                    hold(runID, name, Held(version: version, items: run.state[name]?.arrayValue?.count, bytes: bytes.count))
                }
            }
            parts.append(p)
        }
        let evict = pendingEvict
        pendingEvict = []
        return (parts, evict, sent, kept)
    }

    /// Whether the channel can hold `bytes` once least recently used other runs are dropped;
    /// when it cannot, what the run held of the channel is dropped (a part that is not kept).
    private mutating func fit(_ runID: String, _ name: String, bytes: Int) -> Bool {
        let old = runs[runID]?.channels[name]?.bytes ?? 0
        while used - old + bytes > budget {
            guard let victim = runs.filter({ $0.key != runID }).min(by: { $0.value.lastUse < $1.value.lastUse })?.key else { break }
            forget(victim)
        }
        if used - old + bytes <= budget { return true }
        if let h = runs[runID]?.channels.removeValue(forKey: name) {
            runs[runID]!.bytes -= h.bytes
            used -= h.bytes
        }
        return false
    }

    private mutating func hold(_ runID: String, _ name: String, _ h: Held) {
        let old = runs[runID]!.channels[name]?.bytes ?? 0
        runs[runID]!.channels[name] = h
        runs[runID]!.bytes += h.bytes - old
        used += h.bytes - old
    }
}
