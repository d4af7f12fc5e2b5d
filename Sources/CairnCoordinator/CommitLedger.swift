/// Every write the scheduler has handed to the writer and not yet seen durable, with what waits
/// for it, and whether the store takes writes at all. The one owner of those facts: a pure value
/// the `Scheduler` asks, tested alone (`CommitLedgerTests`).
///
///     record(rows, then: effects) ──► id ──► committed(id) → the effects, in order
///                                       └──► abandoned(id) → the effects (never carried out)
///     failed(why) → holding, until a commit; failed(why, permanent) → damaged for good
///
/// The writer commits in order, so an effect waiting on a write also waits on every write
/// recorded before it.
struct CommitLedger<Effect> {
    typealias WriteID = UInt64

    private var lastID: WriteID = 0
    private var waiting: [WriteID: [Effect]] = [:]
    private var rows: [WriteID: Int] = [:]
    /// Rows written and not yet durable.
    private(set) var queuedRows = 0
    /// Why the store cannot be written right now (the writer retries); nil when it can.
    private(set) var failure: String?
    /// The store failed in a way no retry heals (a damaged file): nothing will be written again.
    private(set) var damaged = false
    /// More than this many rows not yet durable hold new work.
    let maxQueuedRows: Int

    init(maxQueuedRows: Int) { self.maxQueuedRows = maxQueuedRows }

    /// True while new work waits: the store refuses writes, or too many rows are not yet durable.
    var holding: Bool { failure != nil || queuedRows > maxQueuedRows }

    /// A write of `rowCount` rows is handed to the writer; `effects` wait for it.
    mutating func record(rowCount: Int, then effects: [Effect]) -> WriteID {
        lastID += 1
        if !effects.isEmpty { waiting[lastID] = effects }
        rows[lastID] = rowCount
        queuedRows += rowCount
        return lastID
    }

    /// The write is durable: what waited for it, in order. Returns whether this ended a spell of
    /// failing writes (the caller says so once).
    mutating func committed(_ id: WriteID) -> (effects: [Effect], healed: Bool) {
        queuedRows -= rows.removeValue(forKey: id) ?? 0
        let healed = failure != nil
        failure = nil
        return (waiting.removeValue(forKey: id) ?? [], healed)
    }

    /// The write will never commit: what waited for it, to be refused.
    mutating func abandoned(_ id: WriteID) -> [Effect] {
        queuedRows -= rows.removeValue(forKey: id) ?? 0
        return waiting.removeValue(forKey: id) ?? []
    }

    /// A commit failed (the writer retries the same batch). Returns whether this began a spell
    /// of failures (the caller says so once).
    mutating func failed(_ why: String, permanent: Bool) -> Bool {
        let began = failure == nil
        failure = why
        if permanent { damaged = true }
        return began
    }

    /// Why a command that writes (`what`: "submitted", "cancelled") must be refused now, or nil.
    /// While the store refuses writes, a request would only queue behind the failing batch and
    /// take effect whenever the store heals, long after its client gave up: it is refused at once,
    /// with nothing done, so the answer is prompt and true.
    func refusal(_ what: String) -> String? {
        if damaged, let why = failure {
            return "not \(what): the store is damaged and takes no more writes (\(why)), so nothing was done. What is intact can still be read (status, list, history, state). Check the file (sqlite3 FILE 'PRAGMA integrity_check'), restore it from a copy, or move it aside, then restart the coordinator"
        }
        return failure.map { "not \(what): the store refuses writes (\($0)), so nothing was done; try again once it accepts them (cairn stats shows the store error)" }
    }
}
