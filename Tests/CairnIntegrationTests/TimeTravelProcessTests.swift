import CairnTestSupport
import Foundation
import Testing

/// Human in the loop and time travel with real processes: a coordinator, workers running Python
/// nodes, the `cairn` CLI; a coordinator killed with -9; Redis wiped. Fork, rewind and a resume
/// across a kill run on PostgreSQL too, where a test takes `TestStore.available`.
@Suite(.serialized) struct TimeTravelProcessTests {
    /// A node that asks for a first and a last name, then writes both. It imports what a real
    /// node would (HTTP, SQLite, asyncio, decimal) before it reads its task.
    static let asker = """
        import asyncio, decimal, email.parser, http.client, json, sqlite3, sys, xml.etree.ElementTree
        task = json.load(sys.stdin)
        answers = task.get("resumes", [])
        if task["node"] == "ask":
            if len(answers) == 0:
                print(json.dumps({"interrupt": {"question": "first name?"}}))
            elif len(answers) == 1:
                assert task["resume"] == answers[0]
                print(json.dumps({"interrupt": {"question": "last name?", "first": answers[0]}}))
            else:
                print(json.dumps({"writes": {"names": answers}}))
        elif task["node"] == "check":
            if not task["state"].get("fixed"):
                sys.stderr.write("the draft is wrong: set fixed\\n")
                sys.exit(2)
            print(json.dumps({"writes": {"log": ["checked"]}}))
        elif task["node"] == "approve":
            print(json.dumps({"writes": {"approval": task.get("resume")}}))
        else:
            print(json.dumps({"writes": {"log": [task["node"]]}}))
        """

    static let askGraph = """
        name: ask-twice
        state:
          names: { reducer: append }
          log: { reducer: append }
        nodes:
          ask: { run: exec, command: ["python3", "node.py"] }
          after: { run: exec, command: ["python3", "node.py"] }
        edges:
          - { from: START, to: ask }
          - { from: ask, to: after }
          - { from: after, to: END }
        """

    func graph(_ cluster: TestCluster, _ name: String, _ text: String) throws -> String {
        let path = try writeGraph(cluster, name, text)
        try Self.asker.write(toFile: (path as NSString).deletingLastPathComponent + "/node.py", atomically: true, encoding: .utf8)
        return path
    }

    func pendingIDs(_ status: [String: Any]) -> [String] {
        ((status[path: "interrupt.pending"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String }
    }

    @Test func aNodeAsksTwiceGetsTwoAnswersAndTheFinalStateShowsBoth() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let path = try graph(cluster, "ask", Self.askGraph)
        let submitted = try await cluster.cairn(["submit", path, "--run-id", "ask1", "--wait"])
        #expect(submitted.status == 4, "a pause exits 4: \(submitted.stdout) \(submitted.stderr)")
        #expect(submitted.stdout.contains("node 'ask' asks"), "\(submitted.stdout)")
        #expect(submitted.stdout.contains("cairn resume ask1 --value"), "watch shows the command that answers: \(submitted.stdout)")
        var status = try await cluster.cairn(["status", "ask1", "--json"]).object
        #expect(status["status"] as? String == "paused")
        let first = pendingIDs(status)
        #expect(first.count == 1 && status[path: "interrupt.pending.0.value.question"] as? String == "first name?")
        let listed = try await cluster.cairn(["list", "--status", "paused", "--json"]).json as? [[String: Any]]
        #expect(listed?.compactMap { $0["run_id"] as? String } == ["ask1"], "list --status paused finds it")

        let one = try await cluster.cairn(["resume", "ask1", "--value", #""Ada""#, "--wait"])
        #expect(one.status == 4, "it asks again: \(one.stdout) \(one.stderr)")
        status = try await cluster.cairn(["status", "ask1", "--json"]).object
        let second = pendingIDs(status)
        #expect(second.count == 1 && second != first, "a new question has a new id")
        #expect(status[path: "interrupt.pending.0.value.first"] as? String == "Ada")
        // The first question was answered: answering it again is refused, naming it, and changes nothing.
        let stale = try await cluster.cairn(["resume", "ask1", "--interrupt", first[0], "--value", "1"])
        #expect(stale.status == 1 && stale.stderr.contains(first[0]) && stale.stderr.contains(second[0]), "\(stale.stderr)")

        let two = try await cluster.cairn(["resume", "ask1", "--value", #""Lovelace""#, "--wait", "--json"])
        #expect(two.status == 0, "\(two.stdout) \(two.stderr)")
        #expect(two.object[path: "output.names"] as? [String] == ["Ada", "Lovelace"])
        #expect(two.object[path: "output.log"] as? [String] == ["after"])
        #expect(two.object["resume_count"] as? Int == 2)

        // Each answer is a checkpoint of its own, with who gave it and the question it answered.
        let history = try await cluster.cairn(["history", "ask1", "--json"]).object
        let cps = (history["checkpoints"] as? [[String: Any]]) ?? []
        let resumes = cps.filter { $0["source"] as? String == "resume" }
        #expect(resumes.count == 2)
        let answers = resumes.compactMap { $0[path: "metadata.resume.answers.0.answer"] as? String }
        #expect(answers == ["Lovelace", "Ada"], "newest first")
        #expect(resumes.allSatisfy { ($0[path: "metadata.resume.by"] as? String ?? "").contains("@") })
        #expect(resumes.last?[path: "metadata.resume.answers.0.question.question"] as? String == "first name?")

        let again = try await cluster.cairn(["resume", "ask1", "--value", "1"])
        #expect(again.status == 1 && again.stderr.contains("not paused") && again.stderr.contains(second[0]),
                "names the interrupt that was answered: \(again.stderr)")
    }

    @Test func severalQuestionsAreAnsweredByIDAndInterruptBeforeHandsTheNodeItsAnswer() async throws {
        let cluster = try await TestCluster.start(workers: 2)
        defer { cluster.stop() }
        let path = try graph(cluster, "multi", """
            name: multi
            state:
              names: { reducer: append }
              log: { reducer: append }
              approval: {}
            nodes:
              fan: { run: exec, command: ["python3", "-c", "import json; print(json.dumps({'sends': [{'node': 'ask', 'input': 1}, {'node': 'ask', 'input': 2}, {'node': 'other', 'input': 3}]}))"] }
              ask: { run: exec, command: ["python3", "node.py"] }
              other: { run: exec, command: ["python3", "node.py"] }
              approve: { run: exec, command: ["python3", "node.py"] }
            edges:
              - { from: START, to: fan }
              - { from: [ask, other], to: approve }
              - { from: approve, to: END }
            interrupt_before: [approve]
            """)
        let runID = try await cluster.submit(path)
        var status = try await cluster.waitForRun(runID)
        let ids = pendingIDs(status)
        #expect(ids.count == 2, "\(status)")
        let ambiguous = try await cluster.cairn(["resume", runID, "--value", "1"])
        #expect(ambiguous.status == 1 && ambiguous.stderr.contains(ids[0]) && ambiguous.stderr.contains(ids[1]), "\(ambiguous.stderr)")
        let unknown = try await cluster.cairn(["resume", runID, "--interrupt", "i-00000000", "--value", "1"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no pending interrupt 'i-00000000'"), "\(unknown.stderr)")
        #expect(try await cluster.cairn(["status", runID, "--json"]).object["resume_count"] == nil, "refusals changed nothing")

        // One answered: it runs again and asks its second question; the other keeps waiting, same id.
        let partial = try await cluster.cairn(["resume", runID, "--interrupt", ids[1], "--value", #""B""#, "--wait", "--json"])
        #expect(partial.status == 4, "\(partial.stdout)")
        status = try await cluster.cairn(["status", runID, "--json"]).object
        let now = pendingIDs(status)
        #expect(now.count == 2 && now[0] == ids[0] && !ids.contains(now[1]), "\(ids) then \(now)")
        // Both at once, as an object of id → answer: the second task is done, the first asks again.
        let both = try await cluster.cairn(["resume", runID, "--value", #"{"\#(now[0])": "A", "\#(now[1])": "B2"}"#, "--wait", "--json"])
        #expect(both.status == 4, "\(both.stdout)")
        status = try await cluster.cairn(["status", runID, "--json"]).object
        let last = pendingIDs(status)
        #expect(last.count == 1 && status[path: "interrupt.pending.0.value.first"] as? String == "A", "\(status)")
        let stepDone = try await cluster.cairn(["resume", runID, "--value", #""A2""#, "--wait"])
        #expect(stepDone.status == 4, "now paused before approve: \(stepDone.stdout)")
        status = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(status[path: "interrupt.pending.0.reason"] as? String == "interrupt_before")
        #expect(status["next"] as? [String] == ["approve"])
        let done = try await cluster.cairn(["resume", runID, "--value", #"{"ok": true}"#, "--wait", "--json"])
        #expect(done.status == 0, "\(done.stdout)")
        #expect(done.object[path: "output.approval.ok"] as? Bool == true, "interrupt_before's answer reaches the node")
        #expect(done.object[path: "output.log"] as? [String] == ["other"], "the task that did not ask ran once")
        #expect(done.object[path: "output.names"] as? [String] == ["A", "A2", "B", "B2"], "applied in task order, each once")
    }

    @Test func updateFixesAFailedRunAndResumeRetriesItsStep() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let path = try graph(cluster, "fix", """
            name: fix
            state:
              fixed: {}
              log: { reducer: append }
            nodes:
              first: { run: exec, command: ["python3", "node.py"] }
              check: { run: exec, command: ["python3", "node.py"], retry: { max_attempts: 1 } }
            edges:
              - { from: START, to: first }
              - { from: first, to: check }
              - { from: check, to: END }
            """)
        let runID = try await cluster.submit(path)
        var status = try await cluster.waitForRun(runID)
        #expect(status["status"] as? String == "failed")
        let badChannel = try await cluster.cairn(["update", runID, "--values", #"{"nope": 1}"#])
        #expect(badChannel.status == 1 && badChannel.stderr.contains("'nope' is not a channel"), "\(badChannel.stderr)")
        let badNode = try await cluster.cairn(["update", runID, "--values", #"{"fixed": true}"#, "--as-node", "ghost"])
        #expect(badNode.status == 1 && badNode.stderr.contains("'ghost' is not a node"), "\(badNode.stderr)")
        #expect(try await cluster.cairn(["status", runID, "--json"]).object["status"] as? String == "failed", "left as it was")

        let updated = try await cluster.cairn(["update", runID, "--values", #"{"fixed": true, "log": "by hand"}"#, "--json"])
        #expect(updated.status == 0, "\(updated.stderr)")
        #expect(updated.object["status"] as? String == "paused" && updated.object["next"] as? [String] == ["check"])
        let resumed = try await cluster.cairn(["resume", runID, "--wait", "--json"])
        #expect(resumed.status == 0, "\(resumed.stdout)")
        #expect(resumed.object[path: "output.log"] as? [String] == ["first", "by hand", "checked"])
        status = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(status["error"] is NSNull)
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let sources = ((history["checkpoints"] as? [[String: Any]]) ?? []).compactMap { $0["source"] as? String }
        #expect(sources.starts(with: ["loop", "resume", "update", "loop", "input"]), "\(sources)")
        // An update of a running run is refused.
        let slow = try writeGraph(cluster, "slow", chainGraph(name: "slow", nodes: 40, sleep: 100))
        let active = try await cluster.submit(slow)
        let refused = try await cluster.cairn(["update", active, "--values", #"{"count": 1}"#])
        #expect(refused.status == 1 && refused.stderr.contains("is running"), "\(refused.stderr)")
        _ = try await cluster.cairn(["cancel", active])
    }

    @Test(arguments: TestStore.available)
    func aForkStartsFromAnyCheckpointStoresNoParentValueAndRewindReRunsInPlace(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 2, store: store)
        defer { cluster.stop() }
        // A chain whose state holds 20 kB values from its first step, in a replace channel (blob)
        // and in an append channel every step adds to (big): random, so they do not compress. A
        // fork must copy neither: its first step's append is a delta over the parent's value.
        var text = "name: long\nstate:\n  log: { reducer: append }\n  big: { reducer: append }\n  blob: {}\n  count: { reducer: sum }\nnodes:\n"
        text += "  n0: { run: exec, command: [\"python3\", \"-c\", \"import json, os; print(json.dumps({'writes': {'blob': os.urandom(10000).hex(), 'big': [os.urandom(10000).hex()]}}))\"] }\n"
        for i in 1...12 { text += "  n\(i): { run: echo, writes: { log: n\(i), count: 1, big: n\(i) } }\n" }
        text += "edges:\n  - { from: START, to: n0 }\n  - { from: n0, to: n1 }\n"
        for i in 1..<12 { text += "  - { from: n\(i), to: n\(i + 1) }\n" }
        text += "  - { from: n12, to: END }\n"
        let path = try writeGraph(cluster, "long", text)
        let parent = try await cluster.submit(path, runID: "parent")
        #expect(try await cluster.waitForRun(parent)["status"] as? String == "completed")
        let history = try await cluster.cairn(["history", parent, "--json"]).object
        let cps = (history["checkpoints"] as? [[String: Any]]) ?? []
        let at8 = try #require(cps.first { $0["step"] as? Int == 8 }?["checkpoint_id"] as? String)

        let forked = try await cluster.cairn(["fork", parent, "--checkpoint", at8, "--run-id", "child",
                                              "--values", #"{"log": "forked"}"#, "--wait", "--json"])
        #expect(forked.status == 0, "\(forked.stdout) \(forked.stderr)")
        #expect(forked.object["forked_from"] as? String == "parent@\(at8)")
        let log = forked.object[path: "output.log"] as? [String] ?? []
        // Step k ran n(k-1): at step 8, n1…n7 have written; n8…n12 run in the fork.
        #expect(log == (1...7).map { "n\($0)" } + ["forked"] + (8...12).map { "n\($0)" }, "\(log)")
        #expect((forked.object[path: "output.blob"] as? String)?.count == 20_000, "the parent's value is read in place")
        let big = forked.object[path: "output.big"] as? [String] ?? []
        #expect(big.count == 13 && big.first?.count == 20_000 && big.last == "n12", "the append channel goes on from the parent's list")
        #expect(forked.object[path: "output.count"] as? Int == 12)
        // Its history reaches back through the parent's checkpoints, from the fork point.
        let childHistory = try await cluster.cairn(["history", "child", "--json"]).object
        #expect(childHistory["forked_from"] as? String == "parent@\(at8)")
        let rows = (childHistory["checkpoints"] as? [[String: Any]]) ?? []
        #expect(rows.filter { $0["run_id"] as? String == "child" }.count == 6, "the fork's checkpoint + steps 9…13")
        #expect(rows.filter { $0["run_id"] as? String == "parent" }.compactMap { $0["step"] as? Int } == Array((0...8).reversed()))
        #expect(rows.first { $0["source"] as? String == "fork" }?["parent_id"] as? String == at8)
        // What the fork stored: a handful of small rows, none of them the parent's 20 kB value.
        // (SQLite keeps small checkpoints' parts in one inline row; PostgreSQL in the checkpoint's own.)
        let inline = store == .sqlite
            ? "+ (SELECT coalesce(sum(length(c.data)), 0) FROM checkpoint_inline c JOIN checkpoints k ON k.inline_id = c.id WHERE k.run_id = 'child')"
            : ""
        let bytes = try await cluster.sql("""
            SELECT (SELECT coalesce(sum(length(data)), 0) FROM channel_values WHERE run_id = 'child')
                 + (SELECT coalesce(sum(length(channel_versions) + length(next_tasks) + length(metadata)), 0) FROM checkpoints WHERE run_id = 'child')
                 \(inline)
            """)
        let stored = Int(bytes) ?? -1
        print("a fork at step 8 of 13, then 5 steps, stored \(stored) bytes of checkpoints and values (the parent's state holds two 20000-byte random values)")
        #expect(stored > 0 && stored < 6_000, "\(stored) bytes")

        // Refused, with the parent and child left as they are.
        let taken = try await cluster.cairn(["fork", parent, "--checkpoint", at8, "--run-id", "child"])
        #expect(taken.status == 1 && taken.stderr.contains("already taken"), "\(taken.stderr)")
        let foreign = try await cluster.cairn(["fork", "child", "--checkpoint", at8])
        #expect(foreign.status == 1 && foreign.stderr.contains("has no checkpoint \(at8)"), "\(foreign.stderr)")

        // Rewind the parent in place to step 8: it runs 9…12 again under its own id.
        let rewound = try await cluster.cairn(["rewind", parent, "--checkpoint", at8, "--values", #"{"log": "again"}"#, "--wait", "--json"])
        #expect(rewound.status == 0, "\(rewound.stdout) \(rewound.stderr)")
        #expect(rewound.object[path: "output.log"] as? [String] == (1...7).map { "n\($0)" } + ["again"] + (8...12).map { "n\($0)" })
        let after = try await cluster.cairn(["history", parent, "--json"]).object
        let sources = ((after["checkpoints"] as? [[String: Any]]) ?? []).compactMap { $0["source"] as? String }
        #expect(sources.filter { $0 == "rewind" }.count == 1)
        #expect(sources.count == 14 + 1 + 5, "the abandoned steps stay in the history: \(sources.count)")
    }

    @Test(arguments: TestStore.available)
    func aPausedRunSurvivesACoordinatorKillAndAResumeIsRecordedWholeOrNotAtAll(_ store: TestStore) async throws {
        let cluster = try await TestCluster.start(workers: 1, store: store)
        defer { cluster.stop() }
        let path = try graph(cluster, "ask", Self.askGraph)
        let runID = try await cluster.submit(path, runID: "crash1")
        let before = try await cluster.waitForRun(runID)
        let ids = pendingIDs(before)
        #expect(before["status"] as? String == "paused" && ids.count == 1)
        try await cluster.restartCoordinator(signal: SIGKILL)
        try await cluster.waitForWorkers(1, timeout: 30)
        let after = try await cluster.cairn(["status", runID, "--json"]).object
        #expect(after["status"] as? String == "paused" && pendingIDs(after) == ids, "the same question, the same id")

        let done = try await cluster.cairn(["resume", runID, "--value", #""Ada""#, "--wait"])
        #expect(done.status == 4, "resumed after the restart, it asks its second question: \(done.stdout)")

        // A resume sent while the coordinator is killed: afterwards it is either recorded (a resume
        // checkpoint, the run went on) or not at all (still paused on the same question). The kill
        // comes 0, 15 and 40 ms after the command starts, to land before, during and after it.
        for (i, delay) in [0, 15, 40].enumerated() {
            try await resumeDuringKill(cluster, path: path, runID: "crash-race\(i)", delayMS: delay)
        }
    }

    func resumeDuringKill(_ cluster: TestCluster, path: String, runID: String, delayMS: Int) async throws {
        _ = try await cluster.submit(path, runID: runID)
        let ids = pendingIDs(try await cluster.waitForRun(runID))
        async let resume = cluster.cairn(["resume", runID, "--value", #""Ada""#])
        try await Task.sleep(nanoseconds: UInt64(delayMS) * 1_000_000)  // where the kill lands is the point
        try await cluster.restartCoordinator(signal: SIGKILL)
        let answer = try await resume
        try await cluster.waitForWorkers(1, timeout: 30)
        var status = try await cluster.waitForRun(runID)
        let history = try await cluster.cairn(["history", runID, "--json"]).object
        let resumes = ((history["checkpoints"] as? [[String: Any]]) ?? []).filter { $0["source"] as? String == "resume" }
        if resumes.isEmpty {
            #expect(answer.status != 0, "a resume that was not recorded was not reported done: \(answer.stdout)")
            #expect(status["status"] as? String == "paused" && pendingIDs(status) == ids)
            let retried = try await cluster.cairn(["resume", runID, "--value", #""Ada""#])
            #expect(retried.status == 0, "\(retried.stderr)")
            status = try await cluster.waitForRun(runID)
        } else {
            #expect(resumes.count == 1 && resumes[0][path: "metadata.resume.answers.0.answer"] as? String == "Ada")
        }
        // Either way, exactly one answer is in: the node asks its second question.
        #expect(status["status"] as? String == "paused")
        #expect(status[path: "interrupt.pending.0.value.first"] as? String == "Ada", "\(status)")
        let done = try await cluster.cairn(["resume", runID, "--value", #""Lovelace""#, "--wait", "--json"])
        #expect(done.object[path: "output.names"] as? [String] == ["Ada", "Lovelace"], "nothing applied twice: \(done.stdout)")
        print("resume killed after \(delayMS) ms: \(resumes.isEmpty ? "not recorded (client told: exit \(answer.status))" : "recorded (client told: exit \(answer.status))")")
    }

    @Test func twoResumesRacingForOneQuestionHaveExactlyOneWinner() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let path = try graph(cluster, "ask", Self.askGraph)
        for round in 0..<3 {
            let runID = try await cluster.submit(path, runID: "race\(round)")
            let ids = pendingIDs(try await cluster.waitForRun(runID))
            async let a = cluster.cairn(["resume", runID, "--value", #""A""#])
            async let b = cluster.cairn(["resume", runID, "--value", #""B""#])
            let (ra, rb) = try await (a, b)
            #expect([ra.status, rb.status].sorted() == [0, 1], "exactly one wins: \(ra.stderr) | \(rb.stderr)")
            let loser = ra.status == 0 ? rb : ra
            #expect(loser.stderr.contains(ids[0]), "the loser is told which question: \(loser.stderr)")
            let status = try await cluster.waitForRun(runID)
            let first = status[path: "interrupt.pending.0.value.first"] as? String
            #expect(first == (ra.status == 0 ? "A" : "B"), "the winner's answer, once: \(status)")
        }
    }

    static func deadlineGraph(_ onTimeout: String, timeout: String) -> String {
        """
        name: deadline
        state:
          log: { reducer: append }
          approval: {}
        nodes:
          draft: { run: echo, writes: { log: draft } }
          approve: { run: exec, command: ["python3", "node.py"] }
        edges:
          - { from: START, to: draft }
          - { from: draft, to: approve }
          - { from: approve, to: END }
        interrupt_before: [{node: approve, timeout: \(timeout), on_timeout: \(onTimeout)}]
        """
    }

    @Test func anUnansweredInterruptFailsOrResumesAtItsDeadlineEvenAcrossARestart() async throws {
        let cluster = try await TestCluster.start(workers: 1)
        defer { cluster.stop() }
        let failing = try graph(cluster, "fail", Self.deadlineGraph("fail", timeout: "1500ms"))
        let resuming = try graph(cluster, "resume", Self.deadlineGraph("{resume: {approved: default}}", timeout: "1500ms"))
        let a = try await cluster.submit(failing, runID: "late-fail")
        let b = try await cluster.submit(resuming, runID: "late-resume")
        for id in [a, b] {
            let s = try await cluster.waitForRun(id)
            #expect(s["status"] as? String == "paused" && s[path: "interrupt.pending.0.deadline"] is Double, "\(s)")
        }
        let shown = try await cluster.cairn(["status", a])
        #expect(shown.stdout.contains("deadline:") && shown.stdout.contains("then the run fails"), "\(shown.stdout)")
        // The coordinator dies before the deadline; the new one keeps it.
        try await cluster.restartCoordinator(signal: SIGKILL)
        try await cluster.waitForWorkers(1, timeout: 30)
        var failed: [String: Any] = [:]
        try await cluster.waitUntil("the deadline fails \(a)", timeout: 20) {
            failed = try await cluster.cairn(["status", a, "--json"]).object
            return failed["status"] as? String == "failed"
        }
        #expect((failed["error"] as? String ?? "").contains("was not answered by its deadline"), "\(failed)")
        var done: [String: Any] = [:]
        try await cluster.waitUntil("the deadline resumes \(b)", timeout: 20) {
            done = try await cluster.cairn(["status", b, "--json"]).object
            return done["status"] as? String == "completed"
        }
        #expect(done[path: "output.approval.approved"] as? String == "default", "the graph's answer reached the node: \(done)")
        let history = try await cluster.cairn(["history", b, "--json"]).object
        let resume = ((history["checkpoints"] as? [[String: Any]]) ?? []).first { $0["source"] as? String == "resume" }
        #expect((resume?[path: "metadata.resume.by"] as? String ?? "").contains("deadline"), "\(String(describing: resume))")

        // Answered in time, the deadline does nothing.
        let c = try await cluster.submit(failing, runID: "in-time")
        let deadline = try #require(try await cluster.waitForRun(c)[path: "interrupt.pending.0.deadline"] as? Double)
        let answered = try await cluster.cairn(["resume", c, "--value", #"{"approved": "yes"}"#, "--wait", "--json"])
        #expect(answered.status == 0 && answered.object[path: "output.approval.approved"] as? String == "yes", "\(answered.stdout)")
        // The deadline passes (this wait is what is tested): the answered run is left as it ended.
        try await cluster.waitUntil("the deadline passes", timeout: 10) { Date().timeIntervalSince1970 > deadline + 0.5 }
        let after = try await cluster.cairn(["status", c, "--json"]).object
        #expect(after["status"] as? String == "completed" && after[path: "output.approval.approved"] as? String == "yes")
    }

    @Test func aPausedHotRunSurvivesARedisWipeAfterItsFlush() async throws {
        let redis = try await RedisServer()
        defer { redis.stop() }
        let args = ["--redis", redis.url, "--flush-interval", "100ms"]
        let cluster = try await TestCluster.start(workers: 1, coordinatorArgs: args)
        defer { cluster.stop() }
        let path = try graph(cluster, "ask", Self.askGraph)
        let runID = try await cluster.submit(path, runID: "hot1")
        let paused = try await cluster.waitForRun(runID)
        #expect(paused["status"] as? String == "paused" && paused["durability"] as? String == "hot")
        try await cluster.waitUntil("the hot tier flushed", timeout: 10) {
            (try await redis.cli("--scan", "--pattern", "cairn:*:batch:*")).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        }
        _ = try await redis.cli("FLUSHALL")
        try await cluster.restartCoordinator(signal: SIGKILL, args: args)
        try await cluster.waitForWorkers(1, timeout: 30)
        let one = try await cluster.cairn(["resume", runID, "--value", #""Ada""#, "--wait"])
        #expect(one.status == 4, "\(one.stdout)")
        let two = try await cluster.cairn(["resume", runID, "--value", #""Lovelace""#, "--wait", "--json"])
        #expect(two.status == 0 && two.object[path: "output.names"] as? [String] == ["Ada", "Lovelace"], "\(two.stdout)")
    }
}
