import CairnTestSupport
import Foundation
import Testing

/// A real full disk: the SQLite file on a 2 MiB tmpfs, filled by real runs, then enlarged.
/// Mounting needs root; where it is not allowed the test says so and is skipped.
@Suite(.serialized) struct FullDiskTests {
    static let mountRefusal: String? = {
        let probe = NSTemporaryDirectory() + "cairn-mount-probe-" + UUID().uuidString.prefix(6)
        try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)  // mount says if it is missing
        defer { try? FileManager.default.removeItem(atPath: probe) }  // an empty temporary folder
        let why: String
        do {
            let mounted = try sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe)
            if mounted.status == 0 {
                _ = try? sh("umount", probe)  // the probe's own mount: if it lingers it is 64 KiB of nothing
                return nil
            }
            why = mounted.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            why = "\(error)"
        }
        return "cannot mount a tmpfs here (\(why); it needs root): the full-disk test is skipped"
    }()

    static func sh(_ args: String...) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test(.enabled(if: { if let why = FullDiskTests.mountRefusal { print(why); return false }; return true }()))
    func aFullDiskRefusesNewRunsAtOnceAndLosesNothingOnceSpaceReturns() async throws {
        let base = NSTemporaryDirectory() + "cairn-full-" + UUID().uuidString.prefix(6)
        let disk = base + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        let mounted = try Self.sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk)
        try #require(mounted.status == 0, "\(mounted.stderr)")
        defer {  // best effort at the end: the folder is temporary
            _ = try? Self.sh("umount", "-l", disk)
            try? FileManager.default.removeItem(atPath: base)
        }
        let cluster = try await TestCluster.start(workers: 1, coordinatorArgs: ["--db", disk + "/cairn.db"], directory: base + "/cluster")
        defer { cluster.stop() }
        let graph = try writeGraph(cluster, "blob", """
            name: blob
            state:
              blob: {}
              log: { reducer: append }
            nodes:
              a: { run: echo, writes: { log: a } }
              b: { run: echo, writes: { log: b } }
            edges:
              - { from: START, to: a }
              - { from: a, to: b }
              - { from: b, to: END }
            """)
        // About 190 KB that zstd cannot shrink much: each run takes a good part of the disk (the
        // run row carries it, and is written at submit, at its first dispatch and at each step).
        let blob = (0..<5_000).map { _ in "\"" + UUID().uuidString + "\"" }.joined(separator: ",")
        let input = base + "/input.json"
        try Data("{\"blob\": [\(blob)]}".utf8).write(to: URL(fileURLWithPath: input))

        var completed: [String] = []
        var refusedAtOnce = false
        var unconfirmed: String?  // a submit in flight as the disk filled: accepted, told "not yet recorded"
        fill: for _ in 0..<40 {
            let r: TestCluster.CommandResult
            do {
                r = try await cluster.cairn(["submit", graph, "--input", "@" + input, "--wait", "--json"], timeout: 6)
            } catch {
                break fill  // the submit in flight as the disk filled waits for the store (see below)
            }
            switch r.status {
            case 0: completed.append(r.object["run_id"] as? String ?? "")
            case 6:
                if r.stderr.contains("not yet recorded"), let range = r.stderr.range(of: #"run (r-[a-z0-9]+) is submitted"#, options: .regularExpression) {
                    unconfirmed = String(r.stderr[range].split(separator: " ")[1])
                    #expect(r.stderr.contains("cairn status \(unconfirmed!)"), "\(r.stderr)")
                } else {
                    refusedAtOnce = true
                }
                break fill
            default: Issue.record("submit: exit \(r.status): \(r.stderr)")
            }
        }
        #expect(!completed.isEmpty, "some runs fit on the disk")
        print("full disk: \(completed.count) runs completed before the disk filled; refused at once: \(refusedAtOnce); in flight, told not yet recorded: \(unconfirmed ?? "none")")
        try await cluster.waitUntil("the coordinator reporting the full disk") {
            try await cluster.cairn(["stats", "--json"]).object["store_error"] is String
        }
        // Now every command that writes is refused promptly, saying why, with nothing done.
        let started = Date()
        let refused = try await cluster.cairn(["submit", graph, "--json"], timeout: 10)
        #expect(refused.status == 6, "\(refused.stderr)")
        #expect(refused.stderr.contains("database or disk is full") && refused.stderr.contains("nothing was done"), "\(refused.stderr)")
        print("full disk: a submit was refused after \(String(format: "%.2f", Date().timeIntervalSince(started))) s: \(refused.stderr)")
        let health = try await cluster.cairn(["stats"])
        #expect(health.stdout.contains("database or disk is full"))

        // Space returns: the writer gets through, and everything acknowledged is there, exactly.
        let grown = try Self.sh("mount", "-o", "remount,size=64m", disk)
        try #require(grown.status == 0, "\(grown.stderr)")
        try await cluster.waitUntil("the store accepting writes again", timeout: 30) {
            try await cluster.cairn(["stats", "--json"]).object["store_error"] is NSNull
        }
        let after = try await cluster.cairn(["submit", graph, "--wait", "--json"], timeout: 30)
        #expect(after.status == 0, "\(after.stderr)")
        if let unconfirmed {  // what its client was told holds: it is recorded now, and runs exactly once
            let status = try await cluster.waitForRun(unconfirmed, timeout: 30)
            #expect(status["status"] as? String == "completed" && status[path: "output.log"] as? [String] == ["a", "b"], "\(status)")
        }
        for runID in completed {
            let status = try await cluster.cairn(["status", runID, "--json"]).object
            #expect(status["status"] as? String == "completed", "\(runID)")
            #expect(status[path: "output.log"] as? [String] == ["a", "b"], "\(runID): each write applied once")
        }
        let listed = try await cluster.cairn(["list", "--json", "--limit", "100"]).json as? [[String: Any]] ?? []
        // The acknowledged runs, the one after, and at most the one in flight as the disk filled: no refused run exists.
        #expect(listed.count >= completed.count + 1 && listed.count <= completed.count + 2, "\(listed.count) runs for \(completed.count) + 1")
    }
}
