@testable import CairnCoordinator
import CairnCore
import CairnGraph
import CairnStore
import Testing

/// What a result amounts to, alone: no scheduler, no lease, no store.
@Suite struct ResultVerdictTests {
    static func report(failure: TaskReport.Failure? = nil, produced: TaskReport.Produced = .init(),
                       records: Result<TaskRecords, TaskReport.Unreadable> = .success(TaskRecords())) -> TaskReport {
        TaskReport(taskID: "r1-t0", lease: "1.1", failure: failure, records: records, figures: TaskRecords(), produced: .success(produced))
    }

    @Test func eachKindOfResultIsJudgedOnce() throws {
        let run = try DispatcherTests.run("r1", ["a"])
        let t = try #require(run.tasks["r1-t0"])

        guard case .done(let o, _) = ResultVerdict(Self.report(produced: .init(writes: [("log", .string("x"))])), task: t, run: run, poisonAfter: 3)
        else { Issue.record("a good result is done"); return }
        #expect(o.writes.count == 1 && o.node == "a" && o.interruptID == nil)

        guard case .done(let asked, _) = ResultVerdict(Self.report(produced: .init(writes: [("log", .string("x"))], interrupt: .string("ok?"))),
                                                       task: t, run: run, poisonAfter: 3)
        else { Issue.record("a question is done"); return }
        #expect(asked.writes.isEmpty && asked.interruptID?.hasPrefix("i-") == true, "a question's writes wait for its answer")

        guard case .failed(_, let kind, let fatal, _) = ResultVerdict(Self.report(produced: .init(writes: [("nope", .int(1))])),
                                                                     task: t, run: run, poisonAfter: 3)
        else { Issue.record("a write to no channel fails"); return }
        #expect(kind == "bad_result" && fatal)

        let flaky = TaskReport.Failure(message: "boom", kind: "TimeoutError", nonRetryable: false)
        guard case .failed(let m, "TimeoutError", false, _) = ResultVerdict(Self.report(failure: flaky), task: t, run: run, poisonAfter: 3)
        else { Issue.record("a node's error is its own"); return }
        #expect(m == "boom")

        let cache = TaskReport.Failure(message: "no base for log", kind: "state_cache", nonRetryable: false)
        guard case .resendWhole = ResultVerdict(Self.report(failure: cache), task: t, run: run, poisonAfter: 3)
        else { Issue.record("a state the worker could not build is sent again whole"); return }
        t.lostWorkers = 2
        guard case .failed(_, "state_cache", _, _) = ResultVerdict(Self.report(failure: cache), task: t, run: run, poisonAfter: 3)
        else { Issue.record("not for ever: past poison_after it is the attempt's failure"); return }
    }
}
