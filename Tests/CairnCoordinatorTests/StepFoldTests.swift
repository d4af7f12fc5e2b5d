@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnStore
import Testing

/// What a step's results make of a run, alone: no scheduler, no store, no clock.
@Suite struct StepFoldTests {
    static let chain = """
        name: chain
        state:
          log: { reducer: append }
          note: {}
        nodes:
          a: { run: echo }
          b: { run: echo }
        edges:
          - { from: START, to: a }
          - { from: a, to: b }
          - { from: b, to: END }
        limits: { max_steps: 5 }
        """

    /// A run of `chain` whose checkpoint is at `step`, with `log` holding `items`.
    static func run(step: Int, items: Int, chains: AppendChains = AppendChains()) throws -> ActiveRun {
        let graph = try GraphParser.parse(file: "g.yaml", text: chain)
        let record = RunRecord(runID: "r1", graphHash: "g", graphName: "chain", graphVersion: 1, status: .running,
                               durability: "sync", input: .object([:]), createdAt: 0)
        let cp = CheckpointRecord(runID: "r1", checkpointID: "c\(step)", parentID: nil, step: step, source: "loop",
                                  channelVersions: ["log": "c\(step)"], nextTasks: .array([]), metadata: .object([:]), createdAt: 0)
        var state = graph.initialState
        state["log"] = .array((0..<items).map { .int(Int64($0)) })
        let run = ActiveRun(record: record, graph: graph, bundleHash: nil, checkpoint: cp, state: state, joins: [:])
        run.chains = chains
        return run
    }

    static func fold(_ run: ActiveRun, node: String, writes: [(channel: String, value: JSONValue)]) throws -> ([String: JSONValue], StepFold) {
        var state = run.takeState()
        let f = try StepFold(state: &state, run: run, outcomes: [TaskOutcome(taskID: "t", node: node, writes: writes)],
                             newID: "n", now: 7, config: CoordinatorConfig())
        return (state, f)
    }

    @Test func anAppendIsADeltaWhileTheChainAllowsAndWholeOtherwise() throws {
        // No chain known (a new or recovered run): the first write is the whole value.
        let (state, whole) = try Self.fold(try Self.run(step: 1, items: 40), node: "a", writes: [("log", .string("x")), ("note", .string("hi"))])
        #expect(state["log"]?.arrayValue?.count == 41)
        let log = try #require(whole.values.first { $0.channel == "log" })
        #expect(log.baseVersion == nil && log.value.arrayValue?.count == 41)
        #expect(whole.chains.depth["log"] == 0 && whole.chains.snapshotItems["log"] == 41)
        #expect(whole.checkpoint.channelVersions == ["log": "n", "note": "n"] && whole.checkpoint.parentID == "c1" && whole.checkpoint.step == 2)
        #expect(whole.status == .running && whole.nextNodes == ["b"] && whole.record.step == 2 && whole.record.checkpointID == "n")

        // A chain that allows it: the step's item alone, over the previous version.
        let (_, delta) = try Self.fold(try Self.run(step: 1, items: 40, chains: whole.chains), node: "a", writes: [("log", .string("y"))])
        let d = try #require(delta.values.first)
        #expect(d.baseVersion == "c1" && d.value == .array([.string("y")]))
        #expect(delta.chains.depth["log"] == 1 && delta.chains.sinceItems["log"] == 1)
    }

    @Test func theLastNodeCompletesTheRunAndTheStepLimitFailsIt() throws {
        let (_, done) = try Self.fold(try Self.run(step: 1, items: 0), node: "b", writes: [])
        #expect(done.status == .completed && done.record.finishedAt == 7 && done.record.output != nil && done.nextNodes.isEmpty)

        let (_, limited) = try Self.fold(try Self.run(step: 4, items: 0), node: "a", writes: [])
        #expect(limited.status == .failed && limited.record.error?.contains("limits.max_steps = 5") == true)
        #expect(limited.next.map(\.node) == ["b"] && limited.nextNodes.isEmpty, "planned, but the run has ended")
    }

    @Test func aWriteToNoChannelThrowsWithWhatWasAppliedKept() throws {
        let run = try Self.run(step: 1, items: 2)
        var state = run.takeState()
        #expect(throws: (any Error).self) {
            _ = try StepFold(state: &state, run: run, outcomes: [TaskOutcome(taskID: "t", node: "a", writes: [("log", .string("kept"))]),
                                                                  TaskOutcome(taskID: "u", node: "a", writes: [("nope", .int(1))])],
                             newID: "n", now: 7, config: CoordinatorConfig())
        }
        #expect(state["log"]?.arrayValue?.count == 3, "the first task's write was applied before the second's failed")
    }
}
