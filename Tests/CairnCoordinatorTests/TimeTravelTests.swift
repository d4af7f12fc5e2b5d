@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation
import Testing

/// Pausing for a person, and the edits that follow (resume, update, fork, rewind), with no
/// port and no clock: the scheduler driven by the harness, `RunEdits` fed stored rows by hand.
@Suite struct TimeTravelTests {
    static func asked(_ a: Cairn_V1_TaskAssignment, _ question: String) -> Cairn_V1_TaskResult {
        var r = Harness.ok(a, writes: #"{"log": "discarded"}"#)
        r.interruptJson = Data(question.utf8)
        return r
    }

    /// All writes emitted so far, merged.
    static func written(_ h: Harness) -> StoreBatch {
        var all = StoreBatch()
        for a in h.log { if case .write(_, let b, _) = a { all.merge(b) } }
        return all
    }

    @Test func aStepWhoseTaskAsksPausesInsideTheStepOnceItsOtherTasksAreDone() throws {
        var h = Harness()
        h.join("w1")
        try h.submit(fanOut)
        let tasks = Harness.dispatches(h.log).map(\.task)
        #expect(tasks.map(\.node).sorted() == ["a", "b", "c"])
        let b = try #require(tasks.first { $0.node == "b" })
        h.send(.result(workerID: "w1", Self.asked(b, #"{"q": "which draft?"}"#)))
        #expect(h.scheduler.runs["r1"]?.record.status == .running, "the other tasks still run")
        for t in tasks where t.node != "b" { h.send(.result(workerID: "w1", Harness.ok(t, writes: #"{"log": "\#(t.node)"}"#))) }
        let released = h.commitAll()
        let record = try #require(h.lastRunRecord())
        #expect(record.status == .paused)
        let pending = PendingInterrupt.pending(in: record.interrupt, checkpointID: "cp-input")
        #expect(pending.count == 1)
        #expect(pending.first?.node == "b" && pending.first?.reason == "node" && pending.first?.taskID == b.taskID)
        #expect(pending.first?.value == .object(["q": "which draft?"]))
        #expect(pending.first?.id == PendingInterrupt.id(checkpointID: "cp-input", key: b.taskID))
        let all = Self.written(h)
        #expect(all.checkpoints.map(\.source) == ["input"], "no checkpoint: the step is not complete")
        // The asking task's writes are not kept; its question is, with its id; the others' writes are stored.
        let bWrites = all.pendingWrites.filter { $0.taskID == b.taskID }
        #expect(bWrites.map(\.idx) == [PendingWriteRecord.resultIdx])
        #expect(bWrites.first?.value["interrupt_id"]?.stringValue == pending.first?.id)
        #expect(Set(all.pendingWrites.filter { $0.idx >= 0 }.map(\.value)) == ["a", "c"])
        #expect(Harness.closed(released) == ["r1"])
        #expect(Harness.notes(released).last?.kind == "paused")
        #expect(h.scheduler.runs["r1"] == nil)
    }

    /// The stored rows of the paused run above, as the engine reads them for an edit.
    static func pausedFan() throws -> (StoredRun, b: String) {
        var h = Harness()
        h.join("w1")
        try h.submit(fanOut)
        let tasks = Harness.dispatches(h.log).map(\.task)
        let b = try #require(tasks.first { $0.node == "b" })
        h.send(.result(workerID: "w1", Self.asked(b, #""which draft?""#)))
        for t in tasks where t.node != "b" { h.send(.result(workerID: "w1", Harness.ok(t, writes: #"{"log": "\#(t.node)"}"#))) }
        h.commitAll()
        let all = Self.written(h)
        let graph = try GraphParser.parse(file: "g.yaml", text: fanOut)
        let stored = StoredRun(record: try #require(h.lastRunRecord()), graph: graph, bundleHash: nil,
                               checkpoint: try #require(all.checkpoints.first), state: graph.initialState,
                               writes: all.pendingWrites.filter { $0.checkpointID == "cp-input" })
        return (stored, b.taskID)
    }

    @Test func resumeRecordsTheAnswerAndRunsOnlyTheTaskThatAsked() throws {
        let (stored, b) = try Self.pausedFan()
        let id = try #require(PendingInterrupt.pending(in: stored.record.interrupt, checkpointID: "cp-input").first?.id)
        let edit = try RunEdits.resume(stored, answers: .value("draft 2"), by: "ada@host", now: 2_000, newID: "cp-r1")
        #expect(edit.checkpoint.source == "resume" && edit.checkpoint.parentID == "cp-input" && edit.checkpoint.step == 0)
        #expect(edit.checkpoint.metadata["resume"]?["by"] == "ada@host")
        #expect(edit.checkpoint.metadata["resume"]?["answers"]?.arrayValue?.first?["id"]?.stringValue == id)
        #expect(edit.checkpoint.metadata["resume"]?["answers"]?.arrayValue?.first?["answer"] == "draft 2")
        #expect(edit.record.status == .running && edit.record.resumeCount == 1 && edit.record.interrupt == nil)
        #expect(edit.record.checkpointID == "cp-r1")
        // Every task is planned anew at the resume checkpoint; a and c are done (their writes carried), b runs with the answer.
        #expect(edit.planned.count == 3)
        let bNew = try #require(edit.planned.first { $0.node == "b" })
        #expect(bNew.id != b && bNew.resumes == ["draft 2"])
        #expect(Set(edit.done.values.map(\.node)) == ["a", "c"])
        #expect(edit.batch.pendingWrites.allSatisfy { $0.checkpointID == "cp-r1" })
        #expect(!edit.batch.pendingWrites.contains { $0.taskID == bNew.id }, "the answered question is not carried")
        #expect(edit.batch.prunedWrites == [CheckpointKey(runID: "r1", checkpointID: "cp-input")])
        #expect(edit.batch.runs.map(\.status) == [.running] && edit.batch.checkpoints.count == 1)
    }

    @Test func answersMustNameAPendingQuestion() throws {
        let pending = [PendingInterrupt(id: "i-aaaa0001", reason: "node", node: "a", taskID: "t1", value: "q1"),
                       PendingInterrupt(id: "i-bbbb0002", reason: "node", node: "b", taskID: "t2", value: "q2")]
        #expect(try RunEdits.match(.none, pending: pending, runID: "r") == ["i-aaaa0001": nil, "i-bbbb0002": nil])
        #expect(try RunEdits.match(.one(id: "i-bbbb0002", value: 3), pending: pending, runID: "r") == ["i-bbbb0002": 3])
        #expect(try RunEdits.match(.value(["i-aaaa0001": 1]), pending: pending, runID: "r") == ["i-aaaa0001": 1])
        #expect(try RunEdits.match(.value(7), pending: Array(pending.prefix(1)), runID: "r") == ["i-aaaa0001": 7])
        // An object that is not keyed by ids is the answer itself when one question is pending.
        #expect(try RunEdits.match(.value(["approved": true]), pending: Array(pending.prefix(1)), runID: "r") == ["i-aaaa0001": ["approved": true]])
        #expect(throws: RunEdits.Failure.self) { try RunEdits.match(.value(7), pending: pending, runID: "r") }
        #expect(throws: RunEdits.Failure.self) { try RunEdits.match(.one(id: "i-nope", value: 1), pending: pending, runID: "r") }
        #expect(throws: RunEdits.Failure.self) { try RunEdits.match(.value(["i-nope": 1]), pending: pending, runID: "r") }
        #expect(throws: RunEdits.Failure.self) { try RunEdits.match(.value(1), pending: [], runID: "r") }
        do {
            _ = try RunEdits.match(.value(7), pending: pending, runID: "r")
        } catch let f as RunEdits.Failure {
            #expect(f.message.contains("i-aaaa0001") && f.message.contains("i-bbbb0002") && f.message.contains("--interrupt"))
        }
    }

    @Test func anUnansweredQuestionKeepsWaitingWithTheSameID() throws {
        var h = Harness()
        h.join("w1")
        try h.submit(fanOut)
        let tasks = Harness.dispatches(h.log).map(\.task)
        for t in tasks { h.send(.result(workerID: "w1", Self.asked(t, #""\#(t.node)?""#))) }
        h.commitAll()
        let all = Self.written(h)
        let graph = try GraphParser.parse(file: "g.yaml", text: fanOut)
        let record = try #require(h.lastRunRecord())
        let pending = PendingInterrupt.pending(in: record.interrupt, checkpointID: "cp-input")
        #expect(pending.map(\.node) == ["a", "b", "c"])
        let stored = StoredRun(record: record, graph: graph, bundleHash: nil, checkpoint: try #require(all.checkpoints.first),
                               state: graph.initialState, writes: all.pendingWrites)
        let edit = try RunEdits.resume(stored, answers: .one(id: pending[1].id, value: "yes"), by: "x", now: 2_000, newID: "cp-r1")
        // a and c still ask (done, with their questions); b runs again.
        #expect(Set(edit.done.values.compactMap(\.interruptID)) == [pending[0].id, pending[2].id])
        #expect(edit.planned.first { $0.node == "b" }?.resumes == ["yes"])

        // Run it on: b finishes, and the run pauses again for a and c, under their first ids.
        var h2 = Harness()
        h2.join("w1")
        let run = ActiveRun(record: edit.record, graph: graph, bundleHash: nil, checkpoint: edit.checkpoint, state: edit.state, joins: edit.joins)
        run.beginStep(planned: edit.planned, done: edit.done, at: 0)
        h2.scheduler.watched.insert("r1")
        h2.send(.runContinued(run, edit.batch, reply: 1))
        h2.commitAll()
        let again = try #require(Harness.dispatches(h2.log).first)
        #expect(again.task.node == "b")
        #expect(again.task.resumeJson == Data(#"["yes"]"#.utf8))
        h2.send(.result(workerID: "w1", Harness.ok(again.task, writes: #"{"log": "b"}"#)))
        h2.commitAll()
        let paused = try #require(h2.lastRunRecord())
        #expect(paused.status == .paused)
        #expect(PendingInterrupt.pending(in: paused.interrupt, checkpointID: "cp-r1").map(\.id) == [pending[0].id, pending[2].id])
    }

    @Test func aPastDeadlineFailsTheRunOrResumesItAsTheGraphSays() throws {
        let (stored, _) = try Self.pausedFan()
        var s = stored
        let question = PendingInterrupt(id: "i-00000001", reason: "interrupt_before", node: "b", deadline: 100, onTimeout: "fail")
        s.record.interrupt = PendingInterrupt.record(checkpointID: "cp-input", pending: [question])
        #expect(RunEdits.nextDeadline(s.record) == 100)
        #expect(try RunEdits.expire(s, now: 99, newID: "cp-x") == nil, "not yet")
        let failed = try #require(try RunEdits.expire(s, now: 100, newID: "cp-x"))
        #expect(failed.record.status == .failed && failed.record.finishedAt == 100)
        #expect(failed.record.error?.contains("i-00000001 (interrupt_before 'b') was not answered by its deadline") == true)
        #expect(failed.batch.runs.count == 1 && failed.batch.checkpoints.isEmpty)

        var answered = question
        answered.onTimeout = .object(["resume": "default"])
        s.record.interrupt = PendingInterrupt.record(checkpointID: "cp-input", pending: [answered])
        let resumed = try #require(try RunEdits.expire(s, now: 150, newID: "cp-x"))
        #expect(resumed.record.status == .running && resumed.checkpoint.source == "resume")
        #expect(resumed.planned.filter { $0.node == "b" }.map(\.resumes) == [["default"]])
        #expect(resumed.checkpoint.metadata["resume"]?["by"]?.stringValue?.contains("deadline of i-00000001") == true)

        s.record.status = .running
        #expect(try RunEdits.expire(s, now: 500, newID: "cp-x") == nil, "answered in time: nothing to do")
    }

    @Test func resumingARunThatIsNotPausedIsRefused() throws {
        var (stored, _) = try Self.pausedFan()
        stored.record.status = .completed
        #expect(throws: RunEdits.Failure.self) { try RunEdits.resume(stored, answers: .none, by: "x", now: 1, newID: "c") }
    }

    @Test func anUpdateWritesThroughReducersAndAsNodePlansTheNextStep() throws {
        let chain = """
            name: chain
            state:
              log: { reducer: append }
              topic: {}
            nodes:
              a: { run: echo, writes: { log: a } }
              b: { run: echo, writes: { log: b } }
            edges:
              - { from: START, to: a }
              - { from: a, to: b }
              - { from: b, to: END }
            """
        let graph = try GraphParser.parse(file: "g.yaml", text: chain)
        var record = RunRecord(runID: "r1", graphHash: "g", graphName: "chain", graphVersion: 1, status: .completed, durability: "sync",
                               input: .object([:]), createdAt: 1)
        record.output = .object(["log": ["a", "b"]])
        let cp = CheckpointRecord(runID: "r1", checkpointID: "cp2", parentID: "cp1", step: 2, source: "loop",
                                  channelVersions: ["log": "cp2"], nextTasks: .array([]), metadata: .object([:]), createdAt: 1)
        var state = graph.initialState
        state["log"] = ["a", "b"]
        let stored = StoredRun(record: record, graph: graph, bundleHash: nil, checkpoint: cp, state: state, writes: [])

        let plain = try RunEdits.update(stored, values: ["log": "note", "topic": "tides"], asNode: nil, by: "x", now: 5, newID: "cp3")
        #expect(plain.state["log"] == ["a", "b", "note"], "through the append reducer")
        #expect(plain.record.status == .completed && plain.record.output?["topic"] == "tides")
        #expect(plain.checkpoint.source == "update" && plain.checkpoint.step == 2 && plain.planned.isEmpty)
        #expect(Set(plain.batch.channelValues.map(\.channel)) == ["log", "topic"])
        #expect(plain.checkpoint.channelVersions == ["log": "cp3", "topic": "cp3"])

        let asA = try RunEdits.update(stored, values: ["log": "redo"], asNode: "a", by: "x", now: 5, newID: "cp3")
        #expect(asA.planned.map(\.node) == ["b"], "planned as if a had just run")
        #expect(asA.checkpoint.step == 3 && asA.record.status == .paused)
        #expect(asA.record.interrupt?["reason"] == "update")

        #expect(throws: RunEdits.Failure.self) { try RunEdits.update(stored, values: ["nope": 1], asNode: nil, by: "x", now: 5, newID: "c") }
        #expect(throws: RunEdits.Failure.self) { try RunEdits.update(stored, values: [:], asNode: "zz", by: "x", now: 5, newID: "c") }
        var active = stored
        active.record.status = .running
        #expect(throws: RunEdits.Failure.self) { try RunEdits.update(active, values: [:], asNode: nil, by: "x", now: 5, newID: "c") }
    }

    @Test func aForkNamesItsParentsValuesInsteadOfCopyingThem() throws {
        let (stored, _) = try Self.pausedFan()
        var s = stored
        s.checkpoint.channelVersions = ["log": "cp-input"]
        s.state["log"] = ["seed"]
        let fork = try RunEdits.branch(s, into: "r2", values: [:], asNode: nil, by: "x", now: 9, newID: "cp-f")
        #expect(fork.record.runID == "r2" && fork.record.forkedFrom == "r1@cp-input" && fork.record.status == .queued)
        #expect(fork.checkpoint.source == "fork" && fork.checkpoint.parentID == "cp-input")
        #expect(fork.checkpoint.channelVersions == ["log": "r1/cp-input"])
        #expect(fork.batch.channelValues.isEmpty, "no value is copied")
        #expect(fork.batch.prunedWrites.isEmpty, "the parent is left as it was")
        #expect(fork.batch.pendingWrites.allSatisfy { $0.runID == "r2" })
        #expect(ChannelVersion("r1/cp-input", run: "r2") == ChannelVersion("cp-input", run: "r1"))
        #expect(ChannelVersion("cp-input", run: "r1").stored(in: "r2") == "r1/cp-input")
        #expect(ChannelVersion("r1/cp-input", run: "r2").stored(in: "r1") == "cp-input")

        let withValue = try RunEdits.branch(s, into: "r2", values: ["log": "more"], asNode: nil, by: "x", now: 9, newID: "cp-f")
        #expect(withValue.batch.channelValues.map(\.runID) == ["r2"] && withValue.checkpoint.channelVersions == ["log": "cp-f"])
        #expect(withValue.state["log"] == ["seed", "more"])

        var active = s
        active.record.status = .running
        #expect(throws: RunEdits.Failure.self) { try RunEdits.branch(active, into: "r1", values: [:], asNode: nil, by: "x", now: 9, newID: "c") }
        let rewind = try RunEdits.branch(stored, into: "r1", values: [:], asNode: nil, by: "x", now: 9, newID: "cp-w")
        #expect(rewind.checkpoint.source == "rewind" && rewind.record.forkedFrom == nil && rewind.record.resumeCount == 0)
    }
}
