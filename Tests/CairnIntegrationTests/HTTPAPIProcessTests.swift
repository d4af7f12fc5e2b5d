import CairnCore
import CairnTestSupport
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The HTTP API on a real coordinator (`--http`), with real workers: the same runs, rules and
/// JSON shapes as the `cairn` binary, the token on every `/api/` request, Server-Sent Events,
/// and bad input answered with 4xx and a stable code.
@Suite(.serialized) struct HTTPAPIProcessTests {
    static let token = "http-test-token"

    struct Reply {
        var status: Int
        var body: Data
        var contentType: String
        var object: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// The port the coordinator's log says its HTTP API listens on.
    static func httpPort(_ cluster: TestCluster) async throws -> Int {
        try await cluster.waitForLog("coordinator.log", containing: "HTTP API listening")
        let line = cluster.log("coordinator.log").split(separator: "\n").last { $0.contains("HTTP API listening") } ?? ""
        guard let r = line.range(of: #"address=127\.0\.0\.1:(\d+)"#, options: .regularExpression),
              let port = Int(line[r].split(separator: ":").last ?? "") else { throw ClusterError("no HTTP port in: \(line)") }
        return port
    }

    static func call(_ port: Int, _ method: String, _ path: String, body: Any? = nil, raw: Data? = nil,
                     token: String? = Self.token) async throws -> Reply {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = 60
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body { request.httpBody = try JSONSerialization.data(withJSONObject: body) }
        if let raw { request.httpBody = raw }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        return Reply(status: http.statusCode, body: data, contentType: http.value(forHTTPHeaderField: "Content-Type") ?? "")
    }

    static let asking = """
        name: approve
        state:
          log: { reducer: append }
        nodes:
          draft: { run: echo, writes: { log: [draft] } }
          publish: { run: echo, writes: { log: [published] } }
        interrupt_before: [publish]
        edges:
          - { from: START, to: draft }
          - { from: draft, to: publish }
          - { from: publish, to: END }
        """

    @Test func aRunSubmittedOverHTTPPausesIsAnsweredAndReadsAsTheCLIReadsIt() async throws {
        let cluster = try await TestCluster.start(workers: 1, token: Self.token, coordinatorArgs: ["--http", "127.0.0.1:0"])
        defer { cluster.stop() }
        let port = try await Self.httpPort(cluster)

        let submitted = try await Self.call(port, "POST", "/api/runs", body: ["graph": Self.asking, "file_name": "approve.yaml", "run_id": "web-1"])
        #expect(submitted.status == 201 && submitted.object["run_id"] as? String == "web-1", "\(submitted.text)")
        // Its events stream until it pauses: the final event says so.
        let events = try await Self.call(port, "GET", "/api/runs/web-1/events")
        #expect(events.status == 200 && events.contentType.hasPrefix("text/event-stream"))
        let kinds = events.text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
        #expect(kinds.last == "paused", "\(events.text)")
        let run = try await Self.call(port, "GET", "/api/runs/web-1")
        #expect(run.object["status"] as? String == "paused" && run.object["next"] as? [String] == ["publish"], "\(run.text)")
        // The same run through the binary: the same JSON, field for field.
        let cli = try await cluster.cairn(["status", "web-1", "--json"], token: Self.token)
        #expect(NSDictionary(dictionary: cli.object) == NSDictionary(dictionary: run.object), "\(cli.stdout) vs \(run.text)")

        let resumed = try await Self.call(port, "POST", "/api/runs/web-1/resume", body: ["value": "ok"])
        #expect(resumed.status == 200, "\(resumed.text)")
        let done = try await Self.call(port, "GET", "/api/runs/web-1/events")
        #expect(done.text.contains("event: finished"), "\(done.text)")
        let state = try await Self.call(port, "GET", "/api/runs/web-1/state")
        #expect((state.object["state"] as? [String: Any])?["log"] as? [String] == ["draft", "published"], "\(state.text)")
        let history = try await Self.call(port, "GET", "/api/runs/web-1/history")
        #expect((history.object["checkpoints"] as? [Any])?.count ?? 0 >= 3, "\(history.text)")
        let list = try await Self.call(port, "GET", "/api/runs?status=completed&graph=approve&limit=5")
        #expect((list.object["runs"] as? [[String: Any]])?.map { $0["run_id"] as? String } == ["web-1"], "\(list.text)")
        let workers = try await Self.call(port, "GET", "/api/workers")
        #expect((workers.object["workers"] as? [Any])?.count == 1)
        #expect(try await Self.call(port, "GET", "/api/stats").object["runs_by_status"] != nil)
        let again = try await Self.call(port, "POST", "/api/runs/web-1/resume", body: ["value": "late"])
        #expect(again.status == 409 && again.object["code"] as? String == "conflict", "\(again.text)")
        // The records, the debug dump and time travel, through the same door.
        let tasks = try await Self.call(port, "GET", "/api/runs/web-1/tasks")
        #expect((tasks.object["rows"] as? [[String: Any]])?.compactMap { $0["node"] as? String }.sorted() == ["draft", "publish"], "\(tasks.text)")
        let durations = try await Self.call(port, "GET", "/api/records/durations?by=node&since=1h")
        #expect((durations.object["rows"] as? [[String: Any]])?.count == 2, "\(durations.text)")
        let debug = try await Self.call(port, "GET", "/api/runs/web-1/debug?step=1")
        #expect(debug.object["step"] as? Int == 1 && (debug.object["run"] as? [String: Any])?["id"] as? String == "web-1", "\(debug.text)")
        let cps = history.object["checkpoints"] as? [[String: Any]] ?? []
        let beforePublish = try #require(cps.first { $0["step"] as? Int == 1 && $0["source"] as? String == "loop" }?["checkpoint_id"] as? String, "\(cps)")
        let fork = try await Self.call(port, "POST", "/api/runs/web-1/fork", body: ["checkpoint_id": beforePublish, "run_id": "web-fork"])
        #expect(fork.status == 201 && fork.object["run_id"] as? String == "web-fork", "\(fork.text)")
        let forkEvents = try await Self.call(port, "GET", "/api/runs/web-fork/events")
        #expect(forkEvents.text.contains("event: finished"), "the fork runs on from the checkpoint: \(forkEvents.text)")
        let updated = try await Self.call(port, "POST", "/api/runs/web-fork/update", body: ["values": ["log": ["edited"]]])
        #expect(updated.status == 200, "\(updated.text)")
        let forkState = try await Self.call(port, "GET", "/api/runs/web-fork/state")
        #expect((forkState.object["state"] as? [String: Any])?["log"] as? [String] == ["draft", "published", "edited"], "\(forkState.text)")
        let badFork = try await Self.call(port, "POST", "/api/runs/web-1/fork", body: ["checkpoint_id": "no-such"])
        #expect(badFork.status == 404 && badFork.object["code"] as? String == "not_found", "\(badFork.text)")

        let doc = try await Self.call(port, "GET", "/api/openapi.json")
        #expect(doc.status == 200 && doc.object["openapi"] as? String == "3.1.0")
    }

    @Test func theTokenIsNeededAndBadInputGetsAClearFourHundred() async throws {
        let cluster = try await TestCluster.start(workers: 0, token: Self.token, coordinatorArgs: ["--http", "127.0.0.1:0"])
        defer { cluster.stop() }
        let port = try await Self.httpPort(cluster)
        for token in [nil, "wrong"] {
            let r = try await Self.call(port, "GET", "/api/runs", token: token)
            #expect(r.status == 401 && r.object["code"] as? String == "unauthenticated", "\(r.text)")
            #expect(!r.text.contains(Self.token) && r.object.keys.sorted() == ["code", "message"], "a refusal tells nothing else")
        }
        let cases: [(String, String, Data, Int, String)] = [
            ("POST", "/api/runs", Data("{not json".utf8), 400, "invalid_json"),
            ("POST", "/api/runs", Data(#"{"graph": "name: x", "colour": "red"}"#.utf8), 400, "unknown_field"),
            ("POST", "/api/runs", Data(#"{"file_name": "x.yaml"}"#.utf8), 400, "invalid_argument"),
            ("POST", "/api/runs", Data(#"{"graph": "name: [unclosed"}"#.utf8), 400, "invalid_argument"),
            ("POST", "/api/runs", Data(#"{"graph": "name: x", "input": [1]}"#.utf8), 400, "invalid_argument"),
            ("POST", "/api/runs", Data(repeating: UInt8(ascii: " "), count: 17 * 1024 * 1024), 413, "too_large"),
            ("GET", "/api/runs/none-such", Data(), 404, "not_found"),
            ("GET", "/api/runs?limit=0", Data(), 400, "invalid_argument"),
            ("GET", "/api/runs?status=sleeping", Data(), 400, "invalid_argument"),
            ("POST", "/api/runs/none-such/cancel", Data(), 404, "not_found"),
            ("GET", "/api/records/failures?since=5x", Data(), 400, "invalid_argument"),
            ("GET", "/api/runs?since=5", Data(), 400, "invalid_argument"),
        ]
        for (method, path, body, status, code) in cases {
            let r = try await Self.call(port, method, path, raw: body.isEmpty ? nil : body)
            #expect(r.status == status && r.object["code"] as? String == code, "\(method) \(path): \(r.status) \(r.text.prefix(300))")
        }
        // Still serving after all of that.
        #expect(try await Self.call(port, "GET", "/api/runs").status == 200)
        // One way to say "since when" for every list: 0s is all time.
        #expect(try await Self.call(port, "GET", "/api/runs?since=0s").status == 200)
        #expect(try await Self.call(port, "GET", "/api/records/failures?since=0s").status == 200)
        // The dashboard answers HEAD as GET, without the body.
        let head = try await Self.call(port, "HEAD", "/", token: nil)
        let page = try await Self.call(port, "GET", "/", token: nil)
        #expect(head.status == 200 && head.body.isEmpty && page.status == 200 && !page.body.isEmpty, "HEAD \(head.status), GET \(page.status)")
    }

    /// Verify, pin, cleanup, export and import answer over HTTP as `cairn` does: the same JSON,
    /// the same file, the same refusals.
    @Test func theLifeOfStoredDataIsManagedOverHTTPAsByTheCLI() async throws {
        let cluster = try await TestCluster.start(workers: 1, token: Self.token, coordinatorArgs: ["--http", "127.0.0.1:0"])
        defer { cluster.stop() }
        let port = try await Self.httpPort(cluster)
        #expect(try await Self.call(port, "POST", "/api/runs", body: ["graph": Self.asking, "run_id": "life-a"]).status == 201)
        _ = try await Self.call(port, "GET", "/api/runs/life-a/events")  // until it pauses
        #expect(try await Self.call(port, "POST", "/api/runs/life-a/resume", body: ["value": "ok"]).status == 200)
        _ = try await Self.call(port, "GET", "/api/runs/life-a/events")
        let cps = try await Self.call(port, "GET", "/api/runs/life-a/history").object["checkpoints"] as? [[String: Any]] ?? []
        let from = try #require(cps.first { $0["step"] as? Int == 1 }?["checkpoint_id"] as? String, "\(cps)")
        #expect(try await Self.call(port, "POST", "/api/runs/life-a/fork", body: ["checkpoint_id": from, "run_id": "life-f"]).status == 201)
        let forked = try await Self.call(port, "GET", "/api/runs/life-f/events")
        #expect(forked.text.contains("event: finished"), "\(forked.text)")
        let stateBefore = try await Self.call(port, "GET", "/api/runs/life-f/state").object["state"] as? [String: Any]

        // verify: the CLI's JSON, field for field; unknown runs and shapeless bodies refused.
        let verified = try await Self.call(port, "POST", "/api/verify", body: ["run_ids": ["life-a", "life-f"]])
        #expect(verified.status == 200 && verified.object["ok"] as? Bool == true && verified.object["runs"] as? Int == 2, "\(verified.text)")
        let cliVerify = try await cluster.cairn(["verify", "life-a", "life-f", "--json"], token: Self.token)
        #expect(NSDictionary(dictionary: cliVerify.object) == NSDictionary(dictionary: verified.object), "\(cliVerify.stdout) vs \(verified.text)")
        #expect(try await Self.call(port, "POST", "/api/verify", body: ["all": true]).object["ok"] as? Bool == true)
        for (body, status, code) in [(["run_ids": ["nope"]] as [String: Any], 404, "not_found"), ([:], 400, "invalid_argument"),
                                     (["all": true, "run_ids": ["life-a"]], 400, "invalid_argument"), (["all": false], 400, "invalid_argument"),
                                     (["run_ids": [1]], 400, "invalid_argument")] {
            let r = try await Self.call(port, "POST", "/api/verify", body: body)
            #expect(r.status == status && r.object["code"] as? String == code, "\(body): \(r.status) \(r.text)")
        }

        // Export: the fork brings its parent, parents first, in the file cairn export writes.
        let exported = try await Self.call(port, "GET", "/api/export?runs=life-f")
        #expect(exported.status == 200 && exported.contentType == "application/octet-stream", "\(exported.status) \(exported.text.prefix(200))")
        let archive = try ExportArchive.decode([UInt8](exported.body))
        #expect(archive.parts.map(\.runID) == ["life-a", "life-f"])
        let cliFile = cluster.directory + "/cli.cairn"
        #expect(try await cluster.cairn(["export", "life-f", "-o", cliFile], token: Self.token).status == 0)
        #expect(try ExportArchive.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: cliFile)))).parts == archive.parts, "the same runs, byte for byte")
        #expect(try await Self.call(port, "GET", "/api/export?runs=nope").status == 404)
        #expect(try await Self.call(port, "GET", "/api/export").status == 400)

        // Pin, and a cleanup that keeps the pinned parent and takes the fork.
        let pinned = try await Self.call(port, "POST", "/api/runs/life-a/pin")
        #expect(pinned.status == 200 && pinned.object["pinned"] as? Bool == true, "\(pinned.text)")
        let dry = try await Self.call(port, "POST", "/api/cleanup", body: ["older_than": "0s", "dry_run": true])
        #expect(dry.status == 200 && (dry.object["deleted"] as? [[String: Any]])?.compactMap { $0["run_id"] as? String } == ["life-f"], "\(dry.text)")
        #expect((dry.object["kept"] as? [[String: Any]])?.first?["run_id"] as? String == "life-a", "\(dry.text)")
        #expect(try await Self.call(port, "GET", "/api/runs/life-f").status == 200, "a dry run deletes nothing")
        let swept = try await Self.call(port, "POST", "/api/cleanup", body: ["older_than": "0s", "statuses": ["completed"]])
        #expect(swept.status == 200 && swept.object["dry_run"] as? Bool == false && (swept.object["deleted"] as? [Any])?.count == 1, "\(swept.text)")
        #expect(try await Self.call(port, "GET", "/api/runs/life-f").status == 404)
        #expect(try await Self.call(port, "GET", "/api/runs/life-a").status == 200, "pinned: kept")
        for body in [["older_than": "1e3s"], ["older_than": "0s", "statuses": ["running"]], ["older_than": "0s", "keep_latest": -1], ["dry_run": true]] as [[String: Any]] {
            let r = try await Self.call(port, "POST", "/api/cleanup", body: body)
            #expect(r.status == 400 && r.object["code"] as? String == "invalid_argument", "\(body): \(r.text)")
        }
        let unpinned = try await Self.call(port, "POST", "/api/runs/life-a/unpin")
        #expect(unpinned.status == 200 && unpinned.object["pinned"] == nil, "\(unpinned.text)")

        // Import: checked whole first (a dry run writes nothing), then loaded; twice is a no-op.
        let check = try await Self.call(port, "POST", "/api/import?dry_run=true", raw: exported.body)
        #expect(check.status == 200 && (check.object["runs"] as? [[String: Any]])?.map { $0["already_present"] as? Bool } == [true, false], "\(check.text)")
        #expect(try await Self.call(port, "GET", "/api/runs/life-f").status == 404)
        let loaded = try await Self.call(port, "POST", "/api/import", raw: exported.body)
        #expect(loaded.status == 200 && loaded.object["dry_run"] as? Bool == false, "\(loaded.text)")
        let back = try await Self.call(port, "GET", "/api/runs/life-f/state")
        #expect(NSDictionary(dictionary: back.object["state"] as? [String: Any] ?? [:]) == NSDictionary(dictionary: stateBefore ?? ["missing": true]), "\(back.text)")
        let again = try await Self.call(port, "POST", "/api/import", raw: exported.body)
        #expect((again.object["runs"] as? [[String: Any]])?.allSatisfy { $0["already_present"] as? Bool == true } == true, "\(again.text)")
        var altered = exported.body
        altered[altered.count / 2] ^= 0x01
        for bad in [Data("garbage".utf8), exported.body.prefix(exported.body.count - 10), altered] {
            let r = try await Self.call(port, "POST", "/api/import", raw: bad)
            #expect(r.status == 400 && r.object["code"] as? String == "invalid_archive" && r.text.contains("nothing was imported"), "\(r.text)")
        }
        #expect(try await Self.call(port, "POST", "/api/import?dry_run=maybe", raw: exported.body).status == 400)
        #expect(try await Self.call(port, "POST", "/api/verify", body: ["all": true]).object["ok"] as? Bool == true)
    }

    /// A reader of `GET /api/events` in a separate process (python3, a raw socket): it sends the
    /// request and, once the response has begun (it is subscribed), writes "#subscribed"; then
    /// (`wait` > 0) it sleeps that long without reading, with a 4 KiB receive buffer;
    /// then it reads to the end, appending to `file`, and finally writes "closed" or "open".
    /// Returns once it is subscribed.
    static func eventReader(_ cluster: TestCluster, port: Int, file: String, wait: Double, readFor: Double,
                            query: String = "") async throws -> Process {
        let script = """
            import socket, sys, time
            port, path, wait, read_for, token, query = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
            s = socket.socket()
            if wait > 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(f"GET /api/events{query} HTTP/1.1\\r\\nHost: test\\r\\nAuthorization: Bearer {token}\\r\\n\\r\\n".encode())
            # The response's head has arrived (looked at, left in the buffer): it is subscribed.
            s.settimeout(10)
            s.recv(16, socket.MSG_PEEK)
            with open(path, "ab") as out:
                out.write(b"#subscribed\\n")
            time.sleep(wait)
            s.settimeout(read_for)
            end = "open"
            with open(path, "ab") as out:
                try:
                    while True:
                        b = s.recv(65536)
                        if not b:
                            end = "closed"
                            break
                        out.write(b)
                        out.flush()
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    end = "closed"
                out.write(("\\n#" + end + "\\n").encode())
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, "\(port)", file, "\(wait)", "\(readFor)", Self.token, query]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        do {
            try await cluster.waitUntil("the reader is subscribed", timeout: 15) { Self.read(file).hasPrefix("#subscribed") }
        } catch {
            p.terminate()
            throw error
        }
        return p
    }

    static func read(_ file: String) -> String { (try? String(contentsOfFile: file, encoding: .utf8)) ?? "" }

    @Test func oneStreamCarriesEveryRunAndListsPageByCursor() async throws {
        let cluster = try await TestCluster.start(workers: 1, token: Self.token, coordinatorArgs: ["--http", "127.0.0.1:0"])
        defer { cluster.stop() }
        let port = try await Self.httpPort(cluster)
        let file = cluster.directory + "/all-events.txt"
        let reader = try await Self.eventReader(cluster, port: port, file: file, wait: 0, readFor: 30)
        defer { reader.terminate() }

        var ids: [String] = []
        for i in 1...5 {
            let r = try await Self.call(port, "POST", "/api/runs", body: ["graph": Self.asking, "run_id": "page-\(i)"])
            #expect(r.status == 201, "\(r.text)")
            ids.append("page-\(i)")
        }
        // Every run's start and pause arrive on the one stream, each naming its run.
        try await cluster.waitUntil("the stream carries all five pauses", timeout: 30) {
            Self.read(file).components(separatedBy: "event: paused").count - 1 >= 5
        }
        let text = Self.read(file)
        for id in ids {
            #expect(text.contains("\"kind\":\"started\"") && text.contains("\"run_id\":\"\(id)\""), "\(id) missing from: \(text.prefix(2000))")
        }

        // Pages of two, newest first, by cursor: every run once, and the last page says so.
        var seen: [String] = []
        var cursor: String? = nil
        var pages = 0
        repeat {
            let q = "/api/runs?limit=2&graph=approve" + (cursor.map { "&cursor=\($0)" } ?? "")
            let page = try await Self.call(port, "GET", q)
            #expect(page.status == 200, "\(page.text)")
            seen += (page.object["runs"] as? [[String: Any]] ?? []).compactMap { $0["run_id"] as? String }
            cursor = page.object["next_cursor"] as? String
            pages += 1
        } while cursor != nil && pages < 10
        #expect(seen == ids.reversed(), "\(seen)")
        #expect(pages == 3)
        let bad = try await Self.call(port, "GET", "/api/runs?cursor=not-a-cursor")
        #expect(bad.status == 400 && bad.object["code"] as? String == "invalid_argument", "\(bad.text)")
        // The CLI pages the same way: the cursor of its first page lists the second.
        let first = try await cluster.cairn(["list", "--limit", "2", "--graph", "approve"], token: Self.token)
        let more = first.stderr.split(separator: "\n").first { $0.hasPrefix("more: ") }.map { String($0.split(separator: " ").last!) } ?? ""
        #expect(!more.isEmpty, "\(first.stderr)")
        let second = try await cluster.cairn(["list", "--limit", "2", "--graph", "approve", "--cursor", more], token: Self.token)
        #expect(second.stdout.contains("page-3") && second.stdout.contains("page-2") && !second.stdout.contains("page-5"), "\(second.stdout)")
    }

    @Test func aReaderThatStopsReadingIsDroppedAndTheRunGoesOn() async throws {
        let cluster = try await TestCluster.start(workers: 2, token: Self.token, coordinatorArgs: ["--http", "127.0.0.1:0"])
        defer { cluster.stop() }
        let port = try await Self.httpPort(cluster)
        let file = cluster.directory + "/slow.txt"
        // It sleeps 25 s without reading, then reads what is left and whether the server hung up.
        // Every event (?every=true): held back to one per run per 20 ms, a few runs would not fill its buffers.
        let slow = try await Self.eventReader(cluster, port: port, file: file, wait: 25, readFor: 20, query: "?every=true")
        defer { slow.terminate() }
        let fan = """
            name: fan
            state:
              items: {}
              out: { reducer: append }
            nodes:
              spread: { run: map, over: items, to: each }
              each: { run: echo, writes: { out: [1] } }
            edges:
              - { from: START, to: spread }
            """
        // Three runs of 8,000 tasks: about 48,000 events, far more than a watcher may fall behind
        // (10,000) plus what the sockets' buffers hold.
        for i in 1...3 {
            let r = try await Self.call(port, "POST", "/api/runs", body: ["graph": fan, "run_id": "fan-\(i)", "input": ["items": Array(0..<8000)]])
            #expect(r.status == 201, "\(r.text)")
        }
        for i in 1...3 {
            let done = try await cluster.waitForRun("fan-\(i)", timeout: 120)
            #expect(done["status"] as? String == "completed", "\(done)")
        }
        try await cluster.waitForLog("coordinator.log", containing: "was dropped", timeout: 30)
        // The server hangs up on it (once a write has waited 10 s) instead of holding its events.
        try await cluster.waitUntil("the slow reader is done", timeout: 60) { !slow.isRunning }
        let text = Self.read(file)
        #expect(text.hasSuffix("#closed\n"), "\(text.suffix(300))")
        #expect(text.components(separatedBy: "event: task_finished").count - 1 < 24_000, "it was sent everything")
        // The coordinator serves everyone else as before.
        let state = try await Self.call(port, "GET", "/api/runs/fan-1/state")
        #expect((state.object["state"] as? [String: Any])?["out"] as? [Int] == Array(repeating: 1, count: 8000))
        let metrics = try await cluster.cairn(["stats", "--json"], token: Self.token)
        #expect(metrics.status == 0)
    }

    @Test func manyReadersOfOneRunEachGetItsWholeStreamAndTheDashboardStreamIsHeldBack() async throws {
        let cluster = try await TestCluster.start(workers: 1, token: Self.token, coordinatorArgs: ["--http", "127.0.0.1:0"])
        defer { cluster.stop() }
        let port = try await Self.httpPort(cluster)
        let file = cluster.directory + "/all.txt"
        let dashboard = try await Self.eventReader(cluster, port: port, file: file, wait: 0, readFor: 30)
        defer { dashboard.terminate() }
        let everyFile = cluster.directory + "/every.txt"
        let every = try await Self.eventReader(cluster, port: port, file: everyFile, wait: 0, readFor: 30, query: "?every=true")
        defer { every.terminate() }
        var chain = "name: chain\nstate:\n  log: { reducer: append }\nnodes:\n"
        for i in 1...40 { chain += "  n\(i): { run: sleep, duration: 25ms, writes: { log: [n\(i)] } }\n" }
        chain += "edges:\n  - { from: START, to: n1 }\n"
        for i in 1..<40 { chain += "  - { from: n\(i), to: n\(i + 1) }\n" }
        chain += "  - { from: n40, to: END }\n"
        let r = try await Self.call(port, "POST", "/api/runs", body: ["graph": chain, "run_id": "watched"])
        #expect(r.status == 201, "\(r.text)")
        // Twenty readers of the one run (threads of one python3 process, each its own connection),
        // joining over its first steps: each gets a snapshot, then every event to the end.
        let script = """
            import sys, threading, time, urllib.request
            port, token, folder = sys.argv[1], sys.argv[2], sys.argv[3]
            def read(i):
                time.sleep(0.015 * i)
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/runs/watched/events", headers={"Authorization": "Bearer " + token})
                data = urllib.request.urlopen(req, timeout=60).read()
                open(f"{folder}/reader-{i}.txt", "wb").write(data)
            threads = [threading.Thread(target=read, args=(i,)) for i in range(20)]
            for t in threads: t.start()
            for t in threads: t.join()
            """
        let readers = try await TestCluster.run("/usr/bin/env", ["python3", "-c", script, "\(port)", Self.token, cluster.directory], timeout: 90)
        #expect(readers.status == 0, "\(readers.stderr)")
        let streams = (0..<20).map { Self.read(cluster.directory + "/reader-\($0).txt") }
        for text in streams {
            let kinds = text.split(separator: "\n").filter { $0.hasPrefix("event: ") }.map { String($0.dropFirst(7)) }
            #expect(kinds.first == "snapshot" && kinds.last == "finished", "\(kinds)")
            #expect(kinds.filter { $0 == "finished" }.count == 1)
            #expect(text.contains("\"node\":\"n40\""), "the last step's task events reach every reader")
        }
        // A reader that comes after the end gets the final event alone.
        let late = try await Self.call(port, "GET", "/api/runs/watched/events")
        #expect(late.text.split(separator: "\n").filter { $0.hasPrefix("event: ") } == ["event: finished"], "\(late.text)")
        // The dashboard's stream held task events back (one per run per 20 ms at most, the newest);
        // every=true has all of them; both have the run's start and end.
        try await cluster.waitUntil("both streams have the end", timeout: 20) {
            Self.read(file).contains("event: finished") && Self.read(everyFile).contains("event: finished")
        }
        func count(_ text: String, _ kinds: [String]) -> Int { kinds.reduce(0) { $0 + text.components(separatedBy: "event: \($1)").count - 1 } }
        let all = count(Self.read(everyFile), ["task_"])
        #expect(all == 80, "every task's start and end: \(all)")
        // Held back: of the task events and checkpoints, the newest per run per window went out
        // (in a chain whose steps take 25 ms that is mostly the step's checkpoint).
        let held = count(Self.read(file), ["task_", "checkpoint"]), unheld = count(Self.read(everyFile), ["task_", "checkpoint"])
        #expect(held > 0 && held < unheld / 2, "held back: \(held) of \(unheld)")
        for text in [Self.read(file), Self.read(everyFile)] {
            #expect(text.contains("event: started") && text.contains("event: finished"))
        }
    }
}
