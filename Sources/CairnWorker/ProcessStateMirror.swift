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

    private var held: HeldState<Held>

    init(budget: Int) { held = HeldState(budget: budget) }

    var budget: Int { held.budget }

    mutating func forget(_ runID: String) { held.forget(runID) }

    /// The line's state fields (`"state_evict":…,"state_parts":[…]`, no braces), the mirror left as
    /// the process will be once it has read them.
    mutating func fields(for view: StateView) -> [UInt8] {
        let runID = view.runID
        held.touch(runID)
        var parts: [UInt8] = [UInt8(ascii: "[")]
        for (i, c) in view.channels.enumerated() {
            if i > 0 { parts.append(UInt8(ascii: ",")) }
            parts += Array(#"{"channel":"#.utf8) + JSONValue.string(c.name).jsonBytes()
            parts += Array(#","version":"#.utf8) + JSONValue.string(c.version).jsonBytes()
            let had = held.entry(runID, c.name)
            let now = Held(version: c.version, lineage: c.lineage, length: c.json.count)
            if c.lineage != 0, let had, had.lineage == c.lineage, had.version == c.version {
                // held: nothing more
            } else if c.lineage != 0, let had, had.lineage == c.lineage, had.length >= 2, had.length <= c.json.count,
                      c.json.first == UInt8(ascii: "["), held.fit(runID, c.name, bytes: c.json.count) {
                // The list held is today's up to its closing bracket: the rest are the new items.
                var items = c.json[(had.length - 1)..<(c.json.count - 1)]
                if items.first == UInt8(ascii: ",") { items = items.dropFirst() }
                parts += Array(#","base":"#.utf8) + JSONValue.string(had.version).jsonBytes()
                parts += Array(#","append":["#.utf8) + items + [UInt8(ascii: "]")]
                held.hold(runID, c.name, now, bytes: c.json.count)
            } else {
                let keep = c.lineage != 0 && held.fit(runID, c.name, bytes: c.json.count)
                if keep { held.hold(runID, c.name, now, bytes: c.json.count) } else { held.drop(runID, c.name) }
                parts += Array(#","whole":"#.utf8) + c.json + Array((keep ? #","keep":true"# : #","keep":false"#).utf8)
            }
            parts.append(UInt8(ascii: "}"))
        }
        parts.append(UInt8(ascii: "]"))
        let evict = JSONValue.array(held.takeEvictions().map { .string($0) }).jsonBytes()
        return Array(#""state_evict":"#.utf8) + evict + Array(#","state_parts":"#.utf8) + parts
    }
}
