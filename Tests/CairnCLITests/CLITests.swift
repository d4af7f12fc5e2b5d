import ArgumentParser
@testable import CairnCLI
import CairnClient
import CairnCore
import CairnProtocol
import Foundation
import Testing

/// The client's commands without a coordinator: what they parse, refuse, print and exit with.
@Suite struct CLITests {
    @Test func submitParsesItsOptionsAndRefusesBadOnesBeforeConnecting() throws {
        let parsed = try Cairn.parseAsRoot(["submit", "g.yaml", "--count", "3", "--wait", "--run-id", "batch", "--json"])
        let submit = try #require(parsed as? Submit)
        #expect(submit.graph == "g.yaml" && submit.count == 3 && submit.wait && submit.runID == "batch" && submit.connection.json)
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["submit", "g.yaml", "--count", "0"]) }
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["submit"]) }
        #expect(Cairn.message(for: CLIError.run { try Cairn.parseAsRoot(["submit", "g.yaml", "--count", "0"]) }).contains("--count is 1 to 100000"))
    }

    @Test func inputMustBeAJSONObjectInlineOrFromAFile() throws {
        #expect(try Submit.inputText(nil) == nil)
        #expect(try Submit.inputText(#"{"topic": "tides"}"#) == #"{"topic": "tides"}"#)
        for bad in ["[1, 2]", "not json", "\"text\""] {
            #expect(throws: ValidationError.self) { try Submit.inputText(bad) }
        }
        let path = NSTemporaryDirectory() + "cairn-input-\(UUID().uuidString).json"
        try #"{"x": 1}"#.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try Submit.inputText("@" + path) == #"{"x": 1}"#)
        let missing = CLIError.run { _ = try Submit.inputText("@/nonexistent/input.json") }
        #expect(Cairn.message(for: missing).contains("cannot read the input file /nonexistent/input.json"))
    }

    @Test func listBuildsItsRequestAndRefusesBadFilters() throws {
        let list = try #require(try Cairn.parseAsRoot(["list", "--status", "failed", "--since", "24h", "--limit", "5"]) as? List)
        let req = try list.request()
        #expect(req.status == "failed" && req.sinceMs == 86_400_000 && req.limit == 5)
        let bad = try #require(try Cairn.parseAsRoot(["list", "--status", "broken"]) as? List)
        #expect(Cairn.message(for: CLIError.run { _ = try bad.request() }).contains("--status must be one of"))
        let since = try #require(try Cairn.parseAsRoot(["list", "--since", "soon"]) as? List)
        #expect(throws: ValidationError.self) { try since.request() }
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["list", "--limit", "many"]) }
    }

    @Test func listMarksADamagedRunAndLinesTheTableUp() {
        var ok = Cairn_V1_RunInfo()
        ok.runID = "r-ok"; ok.graphName = "video"; ok.status = "completed"; ok.step = 12
        ok.createdAt = 1_000; ok.finishedAt = 1_090; ok.cost = 0.5
        var damaged = Cairn_V1_RunInfo()
        damaged.runID = "r-damaged-one"; damaged.status = "damaged"
        damaged.damage = "integrity check failed for run r-damaged-one (runs.output): SHA-256 mismatch"
        let lines = List.lines([ok, damaged], now: 1_100)
        #expect(lines.count == 3)
        #expect(lines[1].hasPrefix("r-ok") && lines[1].contains("completed") && lines[1].contains("1m30s") && lines[1].contains("$0.50"))
        #expect(lines[2].hasPrefix("r-damaged-one") && lines[2].contains("damaged") && lines[2].contains("runs.output"))
        // Columns line up: each column starts at the same offset on every line.
        func column(_ word: String, _ line: String) -> Int? { line.range(of: word).map { line.distance(from: line.startIndex, to: $0.lowerBound) } }
        let starts = [column("  STATUS", lines[0]), column("  completed", lines[1]), column("  damaged", lines[2])]
        #expect(starts[0] != nil && Set(starts).count == 1, "\(lines)")
        #expect(!lines[1].hasSuffix(" "), "no trailing blanks")
        #expect(List.lines([], now: 0) == ["no runs match"])
        let json = Output.json(damaged)
        #expect(json["status"]?.stringValue == "damaged" && json["damage"]?.stringValue?.contains("runs.output") == true)
    }

    @Test func exitStatusesSayHowARunEndedOrWhyNothingWasAsked() {
        #expect(RunExit.code("completed") == 0)
        #expect(RunExit.code("failed") == 2)
        #expect(RunExit.code("cancelled") == 3)
        #expect(RunExit.code("paused") == 4)
        #expect(RunExit.code(for: .server(code: .errorDataDamaged, message: "run r (runs.output)")) == 5)
        #expect(RunExit.code(for: .server(code: .errorUnavailable, message: "not submitted: the store refuses writes")) == 6)
        #expect(RunExit.code(for: .server(code: .errorNotFound, message: "no run")) == 1)
        #expect(RunExit.code(for: .unreachable(address: "127.0.0.1:1", reason: "refused")) == 1)
        #expect(Submit.helpMessage().contains("5 the run's stored data is damaged"))
    }

    @Test func dataLifeCommandsParseAndRefuseIncompleteArguments() throws {
        #expect(try Cairn.parseAsRoot(["export", "r-1", "r-2", "-o", "x.cairn"]) is Export)
        #expect(try Cairn.parseAsRoot(["import", "x.cairn"]) is Import)
        #expect(try Cairn.parseAsRoot(["cleanup", "--older-than", "30d", "--keep-latest", "3", "--dry-run"]) is Cleanup)
        #expect(try Cairn.parseAsRoot(["verify", "--all"]) is Verify)
        #expect(try Cairn.parseAsRoot(["debug", "r-1", "--step", "2"]) is Debug)
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["verify"]) }
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["verify", "r-1", "--all"]) }
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["cleanup"]) }
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["export", "r-1"]) }
        #expect(try Cairn.parseAsRoot(["fork", "r-1", "--checkpoint", "c", "--run-id", "r-2"]) is Fork)
        #expect(try Cairn.parseAsRoot(["resume", "r-1", "--interrupt", "i-1", "--value", "1"]) is Resume)
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["rewind", "r-1", "--checkpoint", "c", "--run-id", "x"]) }
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["frobnicate"]) }
    }

    @Test func tableWidthsIgnoreColorCodes() {
        let lines = Output.tableLines(["A", "B"], [["\u{1B}[32mok\u{1B}[0m", "x"], ["longer", "y"]])
        #expect(lines.map(Output.visibleWidth) == [9, 9, 9])
    }
}

/// Runs a throwing body and keeps its error, for asserting on the message a user would see.
enum CLIError {
    static func run(_ body: () throws -> Void) -> any Error {
        do { try body(); return Nothing() } catch { return error }
    }
    struct Nothing: Error {}
}
