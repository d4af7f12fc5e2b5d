import ArgumentParser
import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// The life of stored data: prove it intact, let it go, keep it, move it. Each command asks the
/// coordinator, which holds the store's one writer (nothing here opens the SQLite file).

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check stored runs byte for byte: every value's SHA-256, every checkpoint's parent, every channel version, orphaned rows.",
        discussion: """
            Exits 0 when all is well. Otherwise prints each damaged run, checkpoint, channel and
            version, and exits 1. With --all it also checks rows no run owns and SQLite's own pages.
            Examples: cairn verify r-abc123   cairn verify --all
            """)

    @Argument(help: "The runs to check.") var runs: [String] = []
    @Flag(help: "Check every run, rows no run owns, and the file's pages.") var all = false
    @OptionGroup var connection: Connection

    mutating func validate() throws {
        if runs.isEmpty && !all { throw ValidationError("name the runs to check, or --all") }
        if !runs.isEmpty && all { throw ValidationError("name runs or give --all, not both") }
    }

    mutating func run() async throws {
        let ids = runs
        let reply = try await connection.with { try await $0.verify(ids) }
        if connection.json {
            Output.printJSON(MessageJSON.json(reply))
        } else {
            let counts = "\(reply.runs) run(s), \(reply.checkpoints) checkpoint(s), \(reply.values) value(s), \(reply.writes) pending write(s), \(reply.attempts) attempt(s)"
            if reply.damage.isEmpty {
                print("\(Output.color("ok", "32")): checked \(counts); all intact")
            } else {
                Output.table(["RUN", "CHECKPOINT", "CHANNEL", "VERSION", "PROBLEM"], reply.damage.map { d in
                    [d.runID.isEmpty ? "-" : d.runID, d.checkpointID.isEmpty ? "-" : d.checkpointID, d.channel.isEmpty ? "-" : d.channel,
                     d.version.isEmpty ? "-" : d.version, d.problem]
                })
                print("\(Output.color("damaged", "31")): \(reply.damage.count) problem(s) in \(counts)")
            }
        }
        if !reply.damage.isEmpty { throw ExitCode(1) }
    }
}

struct Cleanup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete finished runs with everything they own, and give the space back.",
        discussion: """
            Takes completed, failed and cancelled runs that finished at least --older-than ago,
            with their checkpoints, values, records, and the graphs and bundles no other run
            uses. Running and paused runs are never taken, nor pinned ones (cairn pin), nor the
            newest --keep-latest of each graph, nor a run a remaining fork was made from. Each run
            goes whole or not at all; the file shrinks without stopping the coordinator.
            Examples: cairn cleanup --older-than 30d --dry-run
                      cairn cleanup --older-than 7d --status failed,cancelled --graph ingest --keep-latest 5
            """)

    @Option(help: "Only runs that finished at least this long ago (30d, 12h, 0s for any age).") var olderThan: String
    @Option(help: "Only runs with these statuses, comma-separated (default: completed,failed,cancelled).") var status: String?
    @Option(help: "Only runs of this graph.") var graph: String?
    @Option(help: "Keep the newest N matching runs of each graph, whatever their age.") var keepLatest = 0
    @Flag(help: "Only show what would be deleted.") var dryRun = false
    @OptionGroup var connection: Connection

    mutating func run() async throws {
        guard let ms = Durations.parseMillis(olderThan), ms >= 0 else { throw ValidationError("--older-than takes a duration like 30d, 12h or 0s") }
        guard keepLatest >= 0 else { throw ValidationError("--keep-latest takes a count of 0 or more") }
        var req = Cairn_V1_CleanupRequest()
        req.olderThanMs = UInt64(ms)
        req.statuses = status.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        req.graph = graph ?? ""
        req.keepLatest = UInt32(clamping: keepLatest)
        req.dryRun = dryRun
        let reply = try await connection.with { [req] in try await $0.cleanup(req) }
        if connection.json {
            Output.printJSON(MessageJSON.json(reply))
            return
        }
        if !reply.deleted.isEmpty {
            Output.table(["RUN", "GRAPH", "STATUS", "FINISHED"], reply.deleted.map { [$0.runID, $0.graph, Output.status($0.status), Output.ago($0.finishedAt)] })
        }
        if !reply.kept.isEmpty {
            print(Output.dim("kept:"))
            Output.table(["RUN", "GRAPH", "STATUS", "WHY"], reply.kept.map { [$0.runID, $0.graph, Output.status($0.status), $0.reason] })
        }
        if reply.dryRun {
            print("would delete \(reply.deleted.count) run(s); nothing was deleted (--dry-run)")
        } else {
            print("deleted \(reply.deleted.count) run(s): \(reply.checkpoints) checkpoint(s), \(reply.values) value row(s), \(reply.attempts) attempt(s), "
                  + "\(reply.graphs) graph(s), \(reply.bundles) bundle(s); freed \(ByteSizes.format(Int64(reply.bytesFreed)))")
        }
    }
}

struct Pin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Keep a run through every cleanup (cairn unpin undoes it).")
    @Argument(help: "The run id.") var run: String
    @OptionGroup var connection: Connection
    mutating func run() async throws { try await PinChange.set(run, true, connection) }
}

struct Unpin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Let cleanups take a pinned run again.")
    @Argument(help: "The run id.") var run: String
    @OptionGroup var connection: Connection
    mutating func run() async throws { try await PinChange.set(run, false, connection) }
}

enum PinChange {
    static func set(_ runID: String, _ pinned: Bool, _ connection: Connection) async throws {
        let info = try await connection.with { try await $0.pin(runID, pinned) }
        if connection.json { Output.printJSON(Output.json(info)) } else { print("\(info.runID) \(pinned ? "pinned" : "unpinned")") }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write runs, whole, into one self-contained file (zstd, with a SHA-256 manifest).",
        discussion: """
            The file holds each run's graph, bundle, record, every checkpoint and value, pending
            writes, attempts, API calls and assets. A fork's parent runs go in too (a fork reads
            their values). Runs must be finished or paused. Load it elsewhere with cairn import.
            Example: cairn export r-abc123 r-def456 -o runs.cairn
            """)

    @Argument(help: "The runs to export.") var runs: [String]
    @Option(name: .shortAndLong, help: "The file to write.") var output: String
    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let wanted = runs
        let parts: [ExportArchive.Part]
        do {
            parts = try await connection.with { client in try await ExportArchive.gather(wanted) { try await client.exportRun($0) } }
        } catch let e as ExportArchive.Damaged { throw ClientError.protocolError(e.description) }
        let file = try ExportArchive(createdAt: Date().timeIntervalSince1970, parts: parts).encode()
        let tmp = output + ".partial"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(file)) else {
            throw ValidationError("cannot write \(tmp)")
        }
        // rename(2) replaces an existing file in one step: the file is the old export or the new one, never neither.
        guard rename(tmp, output) == 0 else {
            throw ValidationError("cannot move \(tmp) to \(output): \(String(cString: strerror(errno)))")
        }
        let extra = parts.map(\.runID).filter { !wanted.contains($0) }
        if connection.json {
            Output.printJSON(.object(["file": .string(output), "bytes": .int(Int64(file.count)), "runs": MessageJSON.json(parts)]))
            return
        }
        Output.table(["RUN", "GRAPH", "STATUS", "BYTES", "SHA-256"], parts.map { [$0.runID, $0.graph, Output.status($0.status), ByteSizes.format(Int64($0.bytes.count)), String($0.sha256.prefix(16)) + "…"] })
        print("wrote \(parts.count) run(s) to \(output) (\(ByteSizes.format(Int64(file.count))))"
              + (extra.isEmpty ? "" : "; \(extra.joined(separator: ", ")) included: forked from"))
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load runs from a file cairn export wrote.",
        discussion: """
            The file is checked whole before anything is written: a truncated or altered file is
            refused, and so is a run id that exists here with other content. Importing the same
            file twice changes nothing. Imported runs read as on the source (history, state,
            stats, debug), and a paused one can be resumed here.
            Example: cairn import runs.cairn
            """)

    @Argument(help: "The export file.") var file: String
    @OptionGroup var connection: Connection

    mutating func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let archive: ExportArchive
        do { archive = try ExportArchive.decode([UInt8](data)) } catch {
            FileHandle.standardError.write(Data("cairn import: \(file): \(error); nothing was imported\n".utf8))
            throw ExitCode(1)
        }
        let replies = try await connection.with { client in try await archive.importAll { try await client.importRun($0) } }
        if connection.json {
            Output.printJSON(.object(["file": .string(file), "runs": .array(replies.map(MessageJSON.json))]))
            return
        }
        Output.table(["RUN", "RESULT", "CHECKPOINTS", "VALUES", "ATTEMPTS"], replies.map {
            [$0.runID, $0.alreadyPresent ? "already here (unchanged)" : "imported", "\($0.checkpoints)", "\($0.values)", "\($0.attempts)"]
        })
        let fresh = replies.filter { !$0.alreadyPresent }.count
        print("imported \(fresh) run(s)" + (fresh < replies.count ? ", \(replies.count - fresh) already here" : ""))
    }
}
