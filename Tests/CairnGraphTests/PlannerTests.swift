import Foundation
import CairnCore
@testable import CairnGraph
import Testing

@Suite struct ReducerTests {
    @Test func replaceAppendMergeSum() throws {
        #expect(try Reducer.replace.apply(current: .int(1), write: "x") == "x")
        #expect(try Reducer.append.apply(current: nil, write: "a") == .array(["a"]))
        #expect(try Reducer.append.apply(current: .array(["a"]), write: .array(["b", "c"])) == .array(["a", "b", "c"]))
        #expect(try Reducer.merge.apply(current: .object(["a": 1, "b": 1]), write: .object(["b": 2])) == .object(["a": 1, "b": 2]))
        #expect(try Reducer.sum.apply(current: .int(2), write: .int(3)) == .int(5))
        #expect(try Reducer.sum.apply(current: .int(2), write: .double(0.5)) == .double(2.5))
    }

    @Test func writesApplyInPlaceAndARefusedWriteChangesNothing() throws {
        let graph = try GraphParser.parse(file: "r.yaml", text: """
            name: r
            state:
              log: { reducer: append }
              m: { reducer: merge }
              n: { reducer: sum, default: 0 }
            nodes:
              a: { run: echo }
            edges:
              - { from: START, to: a }
              - { from: a, to: END }
            """)
        let planner = Planner(graph: graph)
        var state: [String: JSONValue] = [:]
        let kept = state
        for i in 0..<5_000 { _ = try planner.apply([("log", .int(Int64(i))), ("n", .int(1)), ("m", .object(["k\(i % 3)": .int(Int64(i))]))], to: &state) }
        #expect(state["log"]?.arrayValue?.count == 5_000 && state["log"]?.arrayValue?.last == .int(4_999))
        #expect(state["n"] == .int(5_000) && state["m"] == .object(["k0": 4_998, "k1": 4_999, "k2": 4_997]))
        #expect(kept.isEmpty, "a copy taken before is not changed")
        let before = state
        #expect(throws: PlanError.self) { try planner.apply([("n", "not a number")], to: &state) }
        #expect(state == before, "a refused write leaves the channel as it was")
    }

    @Test func typeMismatchesAreErrors() {
        #expect(throws: Reducer.Failure.self) { try Reducer.sum.apply(current: .int(1), write: "x") }
        #expect(throws: Reducer.Failure.self) { try Reducer.merge.apply(current: .object([:]), write: .int(1)) }
        #expect(throws: Reducer.Failure.self) { try Reducer.append.apply(current: .int(3), write: .int(1)) }
    }
}

@Suite struct PlannerTests {
    let graph: Graph

    init() throws {
        graph = try GraphParser.parse(file: "p.yaml", text: """
            name: p
            state:
              items: {}
              log: { reducer: append }
              total: { reducer: sum }
              last: {}
              status: {}
            nodes:
              start: { run: echo }
              fan: { run: map, over: items, to: work }
              work: { run: echo }
              a: { run: echo }
              b: { run: echo }
              both: { run: echo }
              check: { run: echo }
            edges:
              - { from: START, to: start }
              - { from: start, to: fan }
              - { from: [work], to: a }
              - { from: a, to: b }
              - { from: a, to: check }
              - { from: [b, check], to: both }
              - from: both
                route: { on: status, cases: { again: start }, default: END }
            """)
    }

    @Test func taskIDsAreDeterministic() throws {
        let p = Planner(graph: graph)
        let t1 = try p.firstTasks(checkpointID: "c0", step: 1, state: [:])
        let t2 = try p.firstTasks(checkpointID: "c0", step: 1, state: [:])
        #expect(t1 == t2)
        #expect(t1.map(\.node) == ["start"])
        let other = try p.firstTasks(checkpointID: "c1", step: 1, state: [:])
        #expect(other[0].id != t1[0].id)
    }

    @Test func writesApplyInTaskOrderWhateverTheFinishingOrder() throws {
        let p = Planner(graph: graph)
        let outcomes = (0..<20).map { i in
            TaskOutcome(taskID: "t\(i)", node: "work", writes: [("log", .int(Int64(i))), ("total", .int(1)), ("last", .int(Int64(i)))])
        }
        var s1: [String: JSONValue] = [:]
        for o in outcomes { _ = try p.apply(o.writes, to: &s1) }
        var s2: [String: JSONValue] = [:]
        // Same outcomes sorted into planned order before applying, as the coordinator does.
        for o in outcomes.shuffled().sorted(by: { Int($0.taskID.dropFirst())! < Int($1.taskID.dropFirst())! }) { _ = try p.apply(o.writes, to: &s2) }
        #expect(s1 == s2)
        #expect(s1["total"] == .int(20))
        #expect(s1["last"] == .int(19))
        #expect(s1["log"] == .array((0..<20).map { .int(Int64($0)) }))
    }

    @Test func fanOutThenJoinFiresOnce() throws {
        let p = Planner(graph: graph)
        var joins: [String: [String]] = [:]
        let fanOut = TaskOutcome(taskID: "f", node: "fan", sends: (0..<50).map { (node: "work", input: .int(Int64($0))) })
        let work = try p.next(after: [fanOut], state: [:], joins: &joins, checkpointID: "c2", step: 3)
        #expect(work.count == 50)
        #expect(Set(work.map(\.id)).count == 50)
        #expect(work[7].input == .int(7))
        let done = work.map { TaskOutcome(taskID: $0.id, node: "work") }
        let next = try p.next(after: done, state: [:], joins: &joins, checkpointID: "c3", step: 4)
        #expect(next.map(\.node) == ["a"])
        #expect(joins.isEmpty)
    }

    @Test func joinWaitsForAllSourcesAcrossSteps() throws {
        let p = Planner(graph: graph)
        var joins: [String: [String]] = [:]
        let afterA = try p.next(after: [TaskOutcome(taskID: "a", node: "a")], state: [:], joins: &joins, checkpointID: "c", step: 5)
        #expect(Set(afterA.map(\.node)) == ["b", "check"])
        let afterB = try p.next(after: [TaskOutcome(taskID: "b", node: "b")], state: [:], joins: &joins, checkpointID: "c", step: 6)
        #expect(afterB.isEmpty)
        #expect(joins.values.first == ["b"])
        let afterCheck = try p.next(after: [TaskOutcome(taskID: "k", node: "check")], state: [:], joins: &joins, checkpointID: "c", step: 7)
        #expect(afterCheck.map(\.node) == ["both"])
    }

    @Test func routesOnStateAndGotoOverrides() throws {
        let p = Planner(graph: graph)
        var joins: [String: [String]] = [:]
        let again = try p.next(after: [TaskOutcome(taskID: "x", node: "both")], state: ["status": "again"], joins: &joins, checkpointID: "c", step: 2)
        #expect(again.map(\.node) == ["start"])
        let end = try p.next(after: [TaskOutcome(taskID: "x", node: "both")], state: ["status": "other"], joins: &joins, checkpointID: "c", step: 2)
        #expect(end.isEmpty)
        let jumped = try p.next(after: [TaskOutcome(taskID: "x", node: "both", goto: ["check"])], state: [:], joins: &joins, checkpointID: "c", step: 2)
        #expect(jumped.map(\.node) == ["check"])
    }

    @Test func validateRejectsUnknownChannelsAndNodes() {
        let p = Planner(graph: graph)
        #expect(p.validate(TaskOutcome(taskID: "x", node: "a", writes: [("nope", 1)]))?.message.contains("'nope'") == true)
        #expect(p.validate(TaskOutcome(taskID: "x", node: "a", goto: ["ghost"])) != nil)
        #expect(p.validate(TaskOutcome(taskID: "x", node: "a", sends: [(node: "ghost", input: .null)])) != nil)
        #expect(p.validate(TaskOutcome(taskID: "x", node: "a", writes: [("log", 1)], goto: ["END"])) == nil)
    }

    @Test func tooManyTasksInAStepIsAnError() throws {
        var g = graph
        g.limits.maxTasksPerStep = 10
        let p = Planner(graph: g)
        var joins: [String: [String]] = [:]
        let fanOut = TaskOutcome(taskID: "f", node: "fan", sends: (0..<11).map { (node: "work", input: .int(Int64($0))) })
        #expect(throws: PlanError.self) { try p.next(after: [fanOut], state: [:], joins: &joins, checkpointID: "c", step: 2) }
    }
}

@Suite struct JSONValueTests {
    @Test func roundTripsAndSortsKeys() throws {
        let text = #"{"b": [1, 2.5, "x\n\"y\"", null, true], "a": {"z": -3, "é": "ü"}}"#
        let v = try JSONValue.parse(text)
        #expect(v.compactString == #"{"a":{"z":-3,"é":"ü"},"b":[1,2.5,"x\n\"y\"",null,true]}"#)
        #expect(try JSONValue.parse(v.compactString) == v)
        #expect(try JSONValue.parse("\"\\u00e9\\ud83d\\ude00\"") == .string("é😀"))
    }

    @Test func numbersAndEscapesEncodeExactly() throws {
        let cases: [(JSONValue, String)] = [
            (.int(0), "0"), (.int(-42), "-42"), (.int(Int64.max), "9223372036854775807"), (.int(Int64.min), "-9223372036854775808"),
            (.double(3), "3.0"), (.double(-0.0), "-0.0"), (.double(-12), "-12.0"), (.double(2.5), "2.5"),
            (.string("plain"), #""plain""#), (.string("tab\there \u{01}"), #""tab\there \u0001""#),
        ]
        for (value, text) in cases {
            #expect(value.compactString == text)
            #expect(try JSONValue.parse(text) == value)
        }
    }

    @Test func rejectsGarbage() {
        // The last two, from scripts/fuzz: numbers past Double's range are refused, not made infinite.
        for bad in ["{", "[1,]", "nul", "{\"a\" 1}", "1 2", String(repeating: "[", count: 600),
                    "12345678932345678934E64567942", "[-1e400]"] {
            #expect(throws: JSONValueError.self) { try JSONValue.parse(bad) }
        }
    }

    @Test func durations() {
        #expect(Durations.parseMillis("250ms") == 250)
        #expect(Durations.parseMillis("1.5s") == 1_500)
        #expect(Durations.parseMillis("5m") == 300_000)
        #expect(Durations.parseMillis("2h") == 7_200_000)
        #expect(Durations.parseMillis("7d") == 604_800_000)
        #expect(Durations.parseMillis("soon") == nil)
        // Found by Schemathesis through the HTTP API's `since`: a number past Int64 trapped.
        #expect(Durations.parseMillis("1e300s") == nil)
        #expect(Durations.parseMillis("99999999999999999999d") == nil)
        #expect(Durations.parseMillis("100000000d") == 8_640_000_000_000_000)
    }

    @Test func bundlesRoundTripAndRefuseEscapes() throws {
        let a = try BundleArchive(entries: [.init(path: "nodes/x.py", mode: 0o755, data: Array("print(1)".utf8))])
        let b = try BundleArchive(packed: a.packed, expectedHash: a.hash)
        #expect(b.entries == a.entries)
        #expect(throws: (any Error).self) { try BundleArchive(packed: a.packed, expectedHash: String(repeating: "0", count: 64)) }
        let evil = try BundleArchive(entries: [.init(path: "../evil", mode: 0o644, data: [1])])
        #expect(throws: BundleArchive.Failure.self) { try evil.unpack(into: NSTemporaryDirectory() + "/cairn-bundle-test") }
    }
}
