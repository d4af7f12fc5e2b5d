import CairnCore
import CairnGraph
import CairnStore

/// How a run's append channels are stored: a step's new items as a delta over the channel's last
/// full value, until the chain of deltas reaches `append_max_chain` or the deltas since outgrow
/// the value; then a full value again. Empty (a new run, or one resumed, rewound or recovered,
/// whose chains' lengths are not known): each channel's next write is a full value.
struct AppendChains: Sendable, Equatable {
    /// Deltas written per channel since its last full value.
    var depth: [String: Int] = [:]
    /// Items in each channel's last full value (or the value a fork's deltas rest on).
    var snapshotItems: [String: Int] = [:]
    /// Items the deltas since added.
    var sinceItems: [String: Int] = [:]

    /// A fork's: its first writes are deltas over its parent's values, which hold `items` each.
    static func fork(items: [String: Int]) -> AppendChains {
        AppendChains(depth: items.mapValues { _ in 0 }, snapshotItems: items)
    }

    /// The record of `channel`'s value at `version`: `appended` alone over `base` when the chain
    /// allows, else `value` whole (and the chain starts again).
    mutating func record(runID: String, channel: String, version: String, base: String?, appended: [JSONValue]?, value: JSONValue,
                         maxChain: Int, snapshotMinItems: Int) -> ChannelValueRecord {
        let since = sinceItems[channel] ?? 0
        if let base, let delta = appended, (depth[channel] ?? Int.max) < maxChain,
           since + delta.count < max(snapshotItems[channel] ?? 0, snapshotMinItems) {
            depth[channel, default: 0] += 1
            sinceItems[channel] = since + delta.count
            return ChannelValueRecord(runID: runID, channel: channel, version: version, baseVersion: base, value: .array(delta))
        }
        depth[channel] = 0
        sinceItems[channel] = 0
        snapshotItems[channel] = value.arrayValue?.count ?? 0
        return ChannelValueRecord(runID: runID, channel: channel, version: version, baseVersion: nil, value: value)
    }
}

/// What a step's results make of a run, as a pure function with the new checkpoint's id and the
/// time passed in: the writes applied in task order, the next step planned, each updated
/// channel's new value (a delta where its append chain allows), the run's status (going on,
/// completed, failed at its step limit, paused before or after a node), the checkpoint and the
/// run's new record. The `Scheduler` writes what it returns as one batch (`StepFoldTests`).
struct StepFold {
    var next: [PlannedTask]
    var joins: [String: [String]]
    var values: [ChannelValueRecord]
    var chains: AppendChains
    var checkpoint: CheckpointRecord
    var record: RunRecord
    var status: RunStatus { record.status }

    /// Folds `outcomes` (the step's, in task order) into `state`, which holds the result (on a
    /// throw, what was applied before the error: a write a reducer refused, a plan that failed).
    init(state: inout [String: JSONValue], run: ActiveRun, outcomes: [TaskOutcome], newID: String, now: Double,
         config: CoordinatorConfig) throws {
        let step = run.checkpoint.step + 1
        var updated = Set<String>()
        var appended: [String: [JSONValue]] = [:]
        for o in outcomes {
            updated.formUnion(try run.planner.apply(o.writes, to: &state))
            for w in o.writes where run.graph.channels[w.channel]?.reducer == .append {
                if case .array(let items) = w.value { appended[w.channel, default: []] += items } else { appended[w.channel, default: []].append(w.value) }
            }
        }
        joins = run.joins
        next = try run.planner.next(after: outcomes, state: state, joins: &joins, checkpointID: newID, step: step + 1)

        var versions = run.checkpoint.channelVersions
        chains = run.chains
        values = []
        for ch in updated.sorted() {
            values.append(chains.record(runID: run.record.runID, channel: ch, version: newID, base: versions[ch], appended: appended[ch],
                                        value: state[ch] ?? .null, maxChain: config.appendMaxChain,
                                        snapshotMinItems: config.appendSnapshotMinItems))
            versions[ch] = newID
        }

        let graph = run.graph
        let pauseAfter = outcomes.first(where: { graph.interruptAfter.contains($0.node) })?.node
        let pauseBefore = next.first(where: { graph.interruptBefore.contains($0.node) })?.node
        var status = RunStatus.running
        var error: String?
        var interrupt: JSONValue?
        func pause(_ reason: String, _ node: String) -> JSONValue {
            PendingInterrupt.record(checkpointID: newID, pending: [PendingInterrupt.pause(reason, node: node, checkpointID: newID,
                                                                                        graph: graph, now: now)])
        }
        if next.isEmpty {
            status = .completed
        } else if step >= graph.limits.maxSteps {
            status = .failed
            error = "stopped after \(step) steps: the step limit (limits.max_steps = \(graph.limits.maxSteps)) was reached with \(Set(next.map(\.node)).sorted().joined(separator: ", ")) still to run"
        } else if let n = pauseAfter {
            status = .paused
            interrupt = pause("interrupt_after", n)
        } else if let n = pauseBefore {
            status = .paused
            interrupt = pause("interrupt_before", n)
        }

        // Which channels a checkpoint updated is not stored: they are the ones whose version is it.
        var made = CheckpointBuilder(runID: run.record.runID, id: newID, parentID: run.checkpoint.checkpointID, step: step,
                                     source: "loop", versions: versions)
        made.next = next
        made.joins = joins
        made.interrupt = interrupt
        checkpoint = made.build(at: now)

        record = run.record
        record.step = step
        record.checkpointID = newID
        record.status = status
        record.error = error
        record.interrupt = interrupt
        record.updatedAt = now
        if status == .completed { record.output = .object(state) }
        if status.isFinished { record.finishedAt = now }
    }

    /// The nodes a watcher is told run next (none once the run has ended).
    var nextNodes: [String] {
        guard status == .running || status == .paused else { return [] }
        var seen = Set<String>()
        return next.compactMap { seen.insert($0.node).inserted ? $0.node : nil }
    }
}
