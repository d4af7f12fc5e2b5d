import CairnCore
import CairnGraph
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
/// A run that leaves memory (ended, paused) is dropped with the next assignment to that worker
/// (the budget and eviction are `HeldState`'s). A worker that reconnects starts empty on both sides.
struct StateMirror {
    struct Held {
        var version: String
        /// Items, for a list (what an `append` part extends).
        var items: Int?
        /// The stay of the run in memory the list was sent in: an `append` part needs the same.
        var incarnation: UInt64
    }

    private(set) var held: HeldState<Held>

    init(budget: Int) { held = HeldState(budget: budget) }

    /// The run is gone from memory, or its cache is in doubt: the worker drops it with the next assignment.
    mutating func forget(_ runID: String) { held.forget(runID) }

    /// The state parts of a task of `run` that reads `channels`, and the runs the worker drops
    /// first; the mirror is left as the worker's cache will be once it has read them.
    mutating func parts(for run: ActiveRun, channels: [String]) -> (parts: [StatePart], evict: [String], sent: Int, kept: Int) {
        let runID = run.record.runID
        held.touch(runID)
        var parts: [StatePart] = []
        parts.reserveCapacity(channels.count)
        var sent = 0, kept = 0
        for name in channels {
            let version = run.checkpoint.channelVersions[name] ?? ""
            var p = StatePart(channel: name, version: version, kind: .whole)
            let had = held.entry(runID, name)
            if !version.isEmpty, let had, had.version == version {
                p.kind = .kept
                kept += held.bytes(runID, name)
            } else if !version.isEmpty, let had, let count = had.items, had.incarnation == run.incarnation,
                      run.graph.channels[name]?.reducer == .append, case .array(let items)? = run.state[name], items.count >= count {
                let delta = JSONValue.array(Array(items[count...])).jsonBytes()
                let before = held.bytes(runID, name)
                if held.fit(runID, name, bytes: before + delta.count) {
                    p.kind = .append
                    p.baseVersion = had.version
                    p.value = delta
                    held.hold(runID, name, Held(version: version, items: items.count, incarnation: run.incarnation), bytes: before + delta.count)
                    kept += before
                } else {
                    p.kind = .whole
                    p.value = run.channelBytes(name)
                }
                sent += p.value.count
            } else {
                p.kind = .whole
                let bytes = run.channelBytes(name)
                p.value = bytes
                sent += bytes.count
                if !version.isEmpty, held.fit(runID, name, bytes: bytes.count) {
                    p.keep = true
                    held.hold(runID, name, Held(version: version, items: run.state[name]?.arrayValue?.count, incarnation: run.incarnation),
                              bytes: bytes.count)
                }
            }
            parts.append(p)
        }
        return (parts, held.takeEvictions(), sent, kept)
    }
}
