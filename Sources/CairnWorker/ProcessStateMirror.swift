import CairnCore

/// What one served process keeps of runs' state, decided by the worker as the coordinator
/// decides the worker's (`StateMirror` there): a process that says it keeps state (its result
/// lines carry `"state_cache": true`, as the Python library's do) is handed, per channel, the
/// items appended since the version it holds, or nothing for a value it holds, instead of the
/// whole state in every task line. It never evicts on its own: the line names the runs to drop.
///
/// The task line then has, instead of `"state"`:
/// ```
/// "state_evict": [RUN_ID, …],                  runs to drop first
/// "state_parts": [{"channel", "version", "whole": VALUE, "keep": BOOL}     the value
///               | {"channel", "version", "base": VERSION, "append": [ITEMS]}   items after the held list
///               | {"channel", "version"}]      the held value is current
/// ```
struct ProcessStateMirror {
    struct Held {
        var version: String
        var lineage: UInt64
        /// The length of the list's JSON when the process got it: the part of today's that it holds.
        var length: Int
    }
    struct RunHeld {
        var channels: [String: Held] = [:]
        var bytes = 0
        var lastUse: UInt64 = 0
    }

    let budget: Int
    private(set) var used = 0
    private var runs: [String: RunHeld] = [:]
    private var tick: UInt64 = 0
    private var pendingEvict: [String] = []

    init(budget: Int) { self.budget = budget }

    mutating func forget(_ runID: String) {
        guard let r = runs.removeValue(forKey: runID) else { return }
        used -= r.bytes
        pendingEvict.append(runID)
    }

    /// The line's state fields (`"state_evict":…,"state_parts":[…]`, no braces), the mirror left as
    /// the process will be once it has read them.
    mutating func fields(for view: StateView) -> [UInt8] {
        let runID = view.runID
        tick += 1
        if runs[runID] == nil { runs[runID] = RunHeld() }
        runs[runID]!.lastUse = tick
        var parts: [UInt8] = [UInt8(ascii: "[")]
        for (i, c) in view.channels.enumerated() {
            if i > 0 { parts.append(UInt8(ascii: ",")) }
            parts += Array(#"{"channel":"#.utf8) + JSONValue.string(c.name).jsonBytes()
            parts += Array(#","version":"#.utf8) + JSONValue.string(c.version).jsonBytes()
            let held = runs[runID]!.channels[c.name]
            if c.lineage != 0, let held, held.lineage == c.lineage, held.version == c.version {
                // held: nothing more
            } else if c.lineage != 0, let held, held.lineage == c.lineage, held.length >= 2, held.length <= c.json.count,
                      c.json.first == UInt8(ascii: "["), fit(runID, c.name, bytes: c.json.count) {
                // The list held is today's up to its closing bracket: the rest are the new items.
                var items = c.json[(held.length - 1)..<(c.json.count - 1)]
                if items.first == UInt8(ascii: ",") { items = items.dropFirst() }
                parts += Array(#","base":"#.utf8) + JSONValue.string(held.version).jsonBytes()
                parts += Array(#","append":["#.utf8) + items + [UInt8(ascii: "]")]
                hold(runID, c.name, Held(version: c.version, lineage: c.lineage, length: c.json.count))
            } else {
                let keep = c.lineage != 0 && fit(runID, c.name, bytes: c.json.count)
                if keep { hold(runID, c.name, Held(version: c.version, lineage: c.lineage, length: c.json.count)) }
                else { drop(runID, c.name) }
                parts += Array(#","whole":"#.utf8) + c.json + Array((keep ? #","keep":true"# : #","keep":false"#).utf8)
            }
            parts.append(UInt8(ascii: "}"))
        }
        parts.append(UInt8(ascii: "]"))
        let evict = JSONValue.array(pendingEvict.map { .string($0) }).jsonBytes()
        pendingEvict = []
        return Array(#""state_evict":"#.utf8) + evict + Array(#","state_parts":"#.utf8) + parts
    }

    private mutating func fit(_ runID: String, _ name: String, bytes: Int) -> Bool {
        let old = runs[runID]?.channels[name]?.length ?? 0
        while used - old + bytes > budget {
            guard let victim = runs.filter({ $0.key != runID }).min(by: { $0.value.lastUse < $1.value.lastUse })?.key else { break }
            forget(victim)
        }
        if used - old + bytes <= budget { return true }
        drop(runID, name)
        return false
    }

    private mutating func drop(_ runID: String, _ name: String) {
        if let h = runs[runID]?.channels.removeValue(forKey: name) {
            runs[runID]!.bytes -= h.length
            used -= h.length
        }
    }

    private mutating func hold(_ runID: String, _ name: String, _ h: Held) {
        let old = runs[runID]!.channels[name]?.length ?? 0
        runs[runID]!.channels[name] = h
        runs[runID]!.bytes += h.length - old
        used += h.length - old
    }
}
