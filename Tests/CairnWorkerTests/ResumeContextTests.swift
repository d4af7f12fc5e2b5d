@testable import CairnWorker
import CairnCore
import CairnProtocol
import Foundation
import Logging
import Testing

/// What a task that asked a question and was answered gets: `context.resume` for a Swift
/// handler, `resume` / `resumes` on stdin for a program.
@Suite struct ResumeContextTests {
    static func assignment(resumes: String?) -> Cairn_V1_TaskAssignment {
        var a = Cairn_V1_TaskAssignment()
        a.runID = "r1"
        a.taskID = "t1"
        a.node = "ask"
        a.kind = "exec"
        a.attempt = 1
        a.stateJson = Data(#"{"log": []}"#.utf8)
        a.configJson = Data(#"{"command": ["python3", "-c", "import json, sys; t = json.load(sys.stdin); print(json.dumps({'writes': {'got': [t.get('resume'), t.get('resumes')]}}))"]}"#.utf8)
        if let resumes { a.resumeJson = Data(resumes.utf8) }
        return a
    }

    @Test func aSwiftHandlerFindsTheAnswersInItsContext() throws {
        let worker = Worker(config: WorkerConfig(), logger: Logger(label: "test"))
        let asked = try worker.context(for: Self.assignment(resumes: #"["Ada", {"last": "Lovelace"}]"#), bundleDirectory: nil, reportProgress: { _ in })
        #expect(asked.resumes == ["Ada", ["last": "Lovelace"]])
        #expect(asked.resume == ["last": "Lovelace"], "the newest answer")
        let fresh = try worker.context(for: Self.assignment(resumes: nil), bundleDirectory: nil, reportProgress: { _ in })
        #expect(fresh.resume == nil && fresh.resumes.isEmpty, "a task that has not asked has no answer")
    }

    @Test func aProgramFindsTheAnswersOnStdin() async throws {
        let worker = Worker(config: WorkerConfig(), logger: Logger(label: "test"))
        let ctx = try worker.context(for: Self.assignment(resumes: #"["Ada", "Lovelace"]"#), bundleDirectory: nil, reportProgress: { _ in })
        let answered = try await ExecHandler().run(ctx)
        #expect(answered.writes["got"] == ["Lovelace", ["Ada", "Lovelace"]])
        let fresh = try worker.context(for: Self.assignment(resumes: nil), bundleDirectory: nil, reportProgress: { _ in })
        let none = try await ExecHandler().run(fresh)
        #expect(none.writes["got"] == [.null, .null], "no resume fields before the task asked")
    }
}
