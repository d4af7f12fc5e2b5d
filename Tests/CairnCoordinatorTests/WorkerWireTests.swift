@testable import CairnCoordinator
import CairnCore
import CairnProtocol
import Foundation
import Testing

/// The wire at the engine's edge: results read into `TaskReport`, assignments written from `Assignment`.
@Suite struct WorkerWireTests {
    @Test func aResultIsReadWithWhatCouldNotBeReadSaidAsSuch() {
        var r = Cairn_V1_TaskResult()
        r.taskID = "t1"
        r.lease = "7.3"
        r.writesJson = Data(#"{"b": 2, "a": [1]}"#.utf8)
        r.goto = ["x"]
        var send = Cairn_V1_Send()
        send.node = "fan"
        send.inputJson = Data(#"{"i": 1}"#.utf8)
        r.sends = [send]
        r.cost = 0.5
        r.apiCalls = 2
        let ok = TaskReport(wire: r)
        #expect(ok.taskID == "t1" && ok.lease == "7.3" && ok.failure == nil)
        let produced = try? ok.produced.get()
        #expect(produced?.writes.map(\.channel) == ["a", "b"], "writes in channel order")
        #expect(produced?.goto == ["x"] && produced?.sends.first?.node == "fan" && produced?.sends.first?.input == .object(["i": .int(1)]))
        #expect((try? ok.records.get())?.cost == 0.5 && ok.figures.apiCalls == 2, "no records JSON: the two figures")

        var bad = r
        bad.writesJson = Data("[1, 2]".utf8)
        bad.recordsJson = Data("{not json".utf8)
        bad.error = "boom"
        bad.errorKind = "http_429"
        bad.nonRetryable = true
        let report = TaskReport(wire: bad)
        #expect(report.failure == .init(message: "boom", kind: "http_429", nonRetryable: true))
        if case .failure(let e) = report.produced { #expect(e.description.contains("'writes' must be an object")) } else { Issue.record("writes read") }
        if case .failure = report.records {} else { Issue.record("records read") }
        #expect(report.figures.cost == 0.5, "the figures stay readable when the records are not")
    }

    @Test func anAssignmentGoesOnTheWireWholeOrInParts() {
        var a = Assignment(taskID: "t1", lease: "7.1", runID: "r1", node: "n", kind: "exec", config: Array(#"{"c":1}"#.utf8),
                           state: .whole(Array(#"{"s":1}"#.utf8)), input: .object(["i": .int(2)]), resumes: [.string("yes")],
                           attempt: 2, progress: Array("{}".utf8), bundleHash: "b", step: 3, checkpointID: "c2", timeoutMS: 1500)
        let whole = Cairn_V1_TaskAssignment(a)
        #expect(whole.taskID == "t1" && whole.lease == "7.1" && whole.runID == "r1" && whole.node == "n" && whole.kind == "exec")
        #expect(String(decoding: whole.stateJson, as: UTF8.self) == #"{"s":1}"# && whole.stateParts.isEmpty && whole.cacheEvict.isEmpty)
        #expect(String(decoding: whole.inputJson, as: UTF8.self) == #"{"i":2}"# && String(decoding: whole.resumeJson, as: UTF8.self) == #"["yes"]"#)
        #expect(whole.attempt == 2 && whole.step == 3 && whole.checkpointID == "c2" && whole.timeoutMs == 1500 && whole.bundleHash == "b")

        a.state = .parts([StatePart(channel: "log", version: "c2", kind: .append, value: Array("[3]".utf8), baseVersion: "c1"),
                          StatePart(channel: "n", version: "c1", kind: .kept)], evict: ["r0"])
        a.input = nil
        a.resumes = []
        let parts = Cairn_V1_TaskAssignment(a)
        #expect(parts.stateJson.isEmpty && parts.cacheEvict == ["r0"] && parts.inputJson.isEmpty && parts.resumeJson.isEmpty)
        #expect(parts.stateParts.map(\.kind) == [.statePartAppend, .statePartKept])
        #expect(parts.stateParts[0].baseVersion == "c1" && String(decoding: parts.stateParts[0].valueJson, as: UTF8.self) == "[3]")
    }
}
