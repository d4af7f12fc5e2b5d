@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnStore
import Testing

/// What a submit decides, with no engine, store or clock.
@Suite struct SubmissionTests {
    static let source = """
        name: pair
        state:
          topic: {}
          log: { reducer: append }
        nodes:
          a: { run: echo, writes: { log: a } }
          b: { run: echo, writes: { log: b } }
        edges:
          - { from: START, to: a }
          - { from: a, to: b }
          - { from: b, to: END }
        """

    static func graph(_ text: String = source) throws -> Graph { try GraphParser.parse(file: "g.yaml", text: text) }

    @Test func theInputIsAnObjectOfTheGraphsChannels() throws {
        let g = try Self.graph()
        #expect(try Submission.input([], for: g).isEmpty)
        #expect(try Submission.input(Array(#"{"topic": "tides"}"#.utf8), for: g) == ["topic": .string("tides")])
        #expect(throws: Submission.Refusal.self) { try Submission.input(Array("{nope".utf8), for: g) }
        #expect(throws: Submission.Refusal.self) { try Submission.input(Array("[1]".utf8), for: g) }
        do {
            _ = try Submission.input(Array(#"{"topik": 1}"#.utf8), for: g)
            Issue.record("an unknown channel was taken")
        } catch {
            #expect("\(error)".contains("'topik', which is not a channel of graph 'pair' (channels: log, topic)"), "\(error)")
        }
    }

    @Test func durabilityIsSyncWithoutAHotTierAndOnlyHotOrSync() throws {
        #expect(try Submission.durability("", hotTier: true) == "hot" && Submission.durability("", hotTier: false) == "sync")
        #expect(try Submission.durability("sync", hotTier: true) == "sync" && Submission.durability("hot", hotTier: false) == "sync")
        #expect(throws: Submission.Refusal.self) { try Submission.durability("fast", hotTier: true) }
        #expect(Submission.validRunID("r-1.a:b_c") && !Submission.validRunID("") && !Submission.validRunID("a b")
                && !Submission.validRunID(String(repeating: "x", count: 129)))
    }

    @Test func theRowsThatStartARunAQueuedRecordTheInputAndTheFirstCheckpoint() throws {
        let s = try Submission(graph: try Self.graph(), source: Self.source, fileName: "g.yaml", input: ["topic": .string("tides")],
                               bundle: [], bundleHash: nil, runID: "r1", durability: "sync", checkpointID: "c0", now: 100)
        #expect(s.record.status == .queued && s.record.checkpointID == "c0" && s.record.createdAt == 100 && s.record.input == .object(["topic": .string("tides")]))
        #expect(s.first.map(\.node) == ["a"] && s.checkpoint.step == 0 && s.checkpoint.source == "input" && s.checkpoint.parentID == nil)
        #expect(s.checkpoint.channelVersions == ["topic": "c0"], "only the channels the input wrote have a version")
        #expect(s.batch.channelValues.map(\.channel) == ["topic"] && s.batch.graphs.count == 1 && s.batch.bundles.isEmpty)
        #expect(s.batch.runs == [s.record] && s.batch.checkpoints == [s.checkpoint] && s.state["topic"] == .string("tides"))
    }

    @Test func aGraphThatInterruptsBeforeItsFirstNodeStartsPausedAndABadBundleIsRefused() throws {
        let text = Self.source + "\ninterrupt_before: [a]\n"
        let s = try Submission(graph: try Self.graph(text), source: text, fileName: "g.yaml", input: [:], bundle: [], bundleHash: nil,
                               runID: "r1", durability: "sync", checkpointID: "c0", now: 100)
        #expect(s.record.status == .paused && s.record.interrupt != nil && s.checkpoint.metadata["interrupt"] == s.record.interrupt)
        #expect(throws: Submission.Refusal.self) {
            try Submission(graph: try Self.graph(), source: Self.source, fileName: "g.yaml", input: [:], bundle: Array("not a bundle".utf8),
                           bundleHash: nil, runID: "r1", durability: "sync", checkpointID: "c0", now: 100)
        }
    }
}
