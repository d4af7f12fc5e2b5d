@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnStore
import Testing

/// The one checkpoint builder: what it writes is what the engine reads back.
@Suite struct CheckpointBuilderTests {
    @Test func whatIsBuiltReadsBackAndEmptyPartsAreLeftOut() {
        var b = CheckpointBuilder(runID: "r1", id: "c2", parentID: "c1", step: 2, source: "loop", versions: ["log": "c2", "n": "c1"])
        let next = [PlannedTask(id: "t1", node: "join", input: nil, trigger: "edge"),
                    PlannedTask(id: "t2", node: "fan", input: .object(["i": .int(1)]), trigger: "send:0", resumes: [.string("yes")])]
        b.next = next
        b.joins = ["join": ["a", "b"]]
        b.interrupt = .object(["pending": .array([])])
        b.notes = ["by": .string("ops")]
        let cp = b.build(at: 42)
        #expect(cp.runID == "r1" && cp.checkpointID == "c2" && cp.parentID == "c1" && cp.step == 2 && cp.source == "loop" && cp.createdAt == 42)
        #expect(cp.channelVersions == ["log": "c2", "n": "c1"])
        #expect(CheckpointBuilder.next(of: cp) == next)
        #expect(CheckpointBuilder.joins(of: cp) == ["join": ["a", "b"]])
        #expect(cp.metadata["interrupt"] == .object(["pending": .array([])]) && cp.metadata["by"] == .string("ops"))

        // No joins part-way and no question: neither key is written (a plain step's metadata is {}).
        let plain = CheckpointBuilder(runID: "r1", id: "c3", parentID: "c2", step: 3, source: "loop", versions: [:]).build(at: 43)
        #expect(plain.metadata == .object([:]) && CheckpointBuilder.joins(of: plain).isEmpty && CheckpointBuilder.next(of: plain).isEmpty)
        // A note cannot smuggle in a stale join list or question: the builder's own fields decide.
        var stale = CheckpointBuilder(runID: "r1", id: "c4", parentID: "c3", step: 4, source: "resume", versions: [:])
        stale.notes = ["joins": .object(["x": .array([.string("old")])]), "interrupt": .string("answered")]
        #expect(stale.build(at: 44).metadata == .object([:]))
    }
}
