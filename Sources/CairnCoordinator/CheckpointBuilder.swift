import CairnCore
import CairnGraph
import CairnStore

/// The one way a checkpoint record is made, by the three paths that make one: submit (the
/// input, step 0), a step (`Scheduler.completeStep`) and an edit (resume, update, fork,
/// rewind: `RunEdits.derive`). It also owns the two metadata entries the engine reads back
/// (`joins` and `interrupt`), so what is written and what is read cannot drift apart.
struct CheckpointBuilder {
    let runID: String
    let id: String
    let parentID: String?
    let step: Int
    /// `input`, `loop`, `resume`, `update`, `fork` or `rewind`.
    let source: String
    /// Each channel's version at this checkpoint (a channel updated here has version `id`).
    var versions: [String: String]
    /// The tasks planned next (what runs from this checkpoint).
    var next: [PlannedTask] = []
    /// Join edges part-way: for each join's target, the sources seen so far.
    var joins: [String: [String]] = [:]
    /// The pending questions when the run pauses here.
    var interrupt: JSONValue?
    /// Anything else said about how the checkpoint came to be (`resume`, `update`,
    /// `forked_from`, `rewound_to`, `by`).
    var notes: [String: JSONValue] = [:]

    init(runID: String, id: String, parentID: String?, step: Int, source: String, versions: [String: String]) {
        self.runID = runID
        self.id = id
        self.parentID = parentID
        self.step = step
        self.source = source
        self.versions = versions
    }

    func build(at time: Double) -> CheckpointRecord {
        var metadata = notes
        metadata["joins"] = joins.isEmpty ? nil : .object(joins.mapValues { .array($0.map { .string($0) }) })
        metadata["interrupt"] = interrupt
        return CheckpointRecord(runID: runID, checkpointID: id, parentID: parentID, step: step, source: source,
                                channelVersions: versions, nextTasks: .array(next.map(\.json)), metadata: .object(metadata),
                                createdAt: time)
    }

    /// The joins part-way at a stored checkpoint (as `build` wrote them).
    static func joins(of cp: CheckpointRecord) -> [String: [String]] {
        var joins: [String: [String]] = [:]
        for (k, v) in cp.metadata["joins"]?.objectValue ?? [:] { joins[k] = (v.arrayValue ?? []).compactMap(\.stringValue) }
        return joins
    }

    /// The tasks planned at a stored checkpoint (as `build` wrote them).
    static func next(of cp: CheckpointRecord) -> [PlannedTask] {
        (cp.nextTasks.arrayValue ?? []).compactMap(PlannedTask.init(json:))
    }
}
