/// What a cache of runs' channel values holds, kept by the side that decides for it (the
/// coordinator for a worker's cache, a worker for a served process's): per run and channel one
/// entry and its size, within a byte budget. Making room drops the least recently used other
/// runs; each run dropped is handed to the cache with its next message (`takeEvictions`), so the
/// cache never drops anything on its own and the two sides agree.
public struct HeldState<Entry> {
    struct Run {
        var channels: [String: (entry: Entry, bytes: Int)] = [:]
        var bytes = 0
        var lastUse: UInt64 = 0
    }

    public let budget: Int
    public private(set) var used = 0
    private var runs: [String: Run] = [:]
    private var tick: UInt64 = 0
    private var evicted: [String] = []

    public init(budget: Int) { self.budget = budget }

    public func entry(_ runID: String, _ channel: String) -> Entry? { runs[runID]?.channels[channel]?.entry }

    public func holds(run runID: String) -> Bool { runs[runID] != nil }

    /// The size of what the run holds of the channel (0: nothing).
    public func bytes(_ runID: String, _ channel: String) -> Int { runs[runID]?.channels[channel]?.bytes ?? 0 }

    /// The run is in use now (the last to be dropped to make room).
    public mutating func touch(_ runID: String) {
        tick += 1
        runs[runID, default: Run()].lastUse = tick
    }

    /// Drops the run; the cache is told with its next message.
    public mutating func forget(_ runID: String) {
        guard let r = runs.removeValue(forKey: runID) else { return }
        used -= r.bytes
        evicted.append(runID)
    }

    /// Whether the channel can hold `bytes` once least recently used other runs are dropped;
    /// when it cannot, what the run held of the channel is dropped.
    public mutating func fit(_ runID: String, _ channel: String, bytes: Int) -> Bool {
        let old = runs[runID]?.channels[channel]?.bytes ?? 0
        while used - old + bytes > budget {
            guard let victim = runs.filter({ $0.key != runID }).min(by: { $0.value.lastUse < $1.value.lastUse })?.key else { break }
            forget(victim)
        }
        if used - old + bytes <= budget { return true }
        drop(runID, channel)
        return false
    }

    public mutating func hold(_ runID: String, _ channel: String, _ entry: Entry, bytes: Int) {
        let old = runs[runID]?.channels[channel]?.bytes ?? 0
        runs[runID, default: Run()].channels[channel] = (entry, bytes)
        runs[runID]!.bytes += bytes - old
        used += bytes - old
    }

    public mutating func drop(_ runID: String, _ channel: String) {
        guard let h = runs[runID]?.channels.removeValue(forKey: channel) else { return }
        runs[runID]!.bytes -= h.bytes
        used -= h.bytes
    }

    /// The runs dropped since the last call, for the cache to drop first.
    public mutating func takeEvictions() -> [String] {
        defer { evicted = [] }
        return evicted
    }
}
