import ArgumentParser
import CairnCore
import CairnOps
import CairnStack
import CairnStore
import Foundation
import Logging

/// `cairn-coordinator move`: every run of one store into another, with the coordinator stopped.
public struct MoveCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cairn-coordinator move",
        abstract: "Moves every run of one store into another: a SQLite file into PostgreSQL, or back.",
        discussion: """
            Stop the coordinator on --from first. Each run moves whole, in one transaction, with its checkpoints, values, pending writes, attempts, records and pin; forks after their parents. Every moved run is then verified in the destination (SHA-256 of every value). The source is left as it was.

            A run already in the destination with the same content is skipped, so a move that stopped half way is finished by running it again. A run there with other content is named and left alone (exit 1). Unfinished runs move as they stand; a coordinator started on the destination goes on with them from their newest checkpoint, as after any restart. Paused runs can be resumed there, and any run forked.

            Examples:
              PGPASSWORD=… cairn-coordinator move --from ./data/cairn.db --to postgres://cairn@db.internal:5432/cairn
              cairn-coordinator move --from postgres://cairn@db.internal/cairn --to ./back.db --json
            """
    )

    @Option(help: "The store to read: a SQLite file's path, or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (without a password, PGPASSWORD's).")
    var from: String

    @Option(help: "The store to write: a PostgreSQL URL or a SQLite file's path (created if missing; its schema created or upgraded).")
    var to: String

    @Flag(help: "Print the report as JSON.")
    var json = false

    public init() {}

    public mutating func run() async throws {
        Bootstrap.logging(level: "warning")
        let logger = Logger(label: "cairn.move")
        let source: StoreLocation, destination: StoreLocation
        do {
            source = try StoreLocation(from)
            destination = try StoreLocation(to)
        } catch { throw ExitCode(Bootstrap.failure("cairn-coordinator move", "\(error)".replacingOccurrences(of: "--db", with: "a store"))) }
        if source == destination {
            throw ExitCode(Bootstrap.failure("cairn-coordinator move", "--from and --to are the same store (\(source))"))
        }
        let tty = isatty(STDERR_FILENO) == 1 && !json
        let report: StoreMove.Report
        do {
            let src = try await StoreMove.open(source, mustExist: true, logger: logger)
            let dst = try await StoreMove.open(destination, mustExist: false, logger: logger)
            if !json { FileHandle.standardError.write(Data("moving runs from \(source) to \(destination)\n".utf8)) }
            report = try await StoreMove.move(from: src, to: dst) { done, total in
                guard tty, done == total || done % 25 == 0 else { return }
                let width = 30, filled = total == 0 ? width : done * width / total
                let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
                FileHandle.standardError.write(Data("\r  \(bar) \(done)/\(total) runs\(done == total ? "\n" : "")".utf8))
            }
        } catch {
            throw ExitCode(Bootstrap.failure("cairn-coordinator move", "\(error); runs already moved stay moved, and running the command again finishes the move"))
        }
        if json {
            let out: JSONValue = .object([
                "from": .string(source.description), "to": .string(destination.description),
                "runs": .int(Int64(report.runs)), "moved": .array(report.moved.map(JSONValue.string)),
                "already_there": .array(report.alreadyThere.map(JSONValue.string)),
                "checkpoints": .int(Int64(report.checkpoints)), "values": .int(Int64(report.values)), "attempts": .int(Int64(report.attempts)),
                "refused": .array(report.refused.map { .object(["run_id": .string($0.runID), "why": .string($0.why)]) }),
                "damage": .array(report.damage.map { .string($0.description) }),
                "seconds": .double(report.seconds), "ok": .bool(report.ok),
            ])
            print(String(decoding: out.jsonBytes(), as: UTF8.self))
        } else {
            let rows: [(String, String)] = [
                ("runs in the source", "\(report.runs)"),
                ("moved", "\(report.moved.count) (\(report.checkpoints) checkpoints, \(report.values) values, \(report.attempts) attempts)"),
                ("already there, unchanged", "\(report.alreadyThere.count)"),
                ("not moved", "\(report.refused.count)"),
                ("verified in the destination", report.damage.isEmpty ? "every moved run" : "\(report.damage.count) problem(s)"),
                ("time", String(format: "%.1f s", report.seconds)),
            ]
            let width = rows.map(\.0.count).max() ?? 0
            for (k, v) in rows { print("  " + k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v) }
            for r in report.refused { print("  not moved: \(r.runID): \(r.why)") }
            for d in report.damage { print("  damaged in the destination: \(d)") }
            print(report.ok ? "done: start the coordinator with --db \(destination.where)" : "the move is not whole: see above")
        }
        if !report.ok { throw ExitCode(1) }
    }
}

/// What `cairn-coordinator` runs: `move` when asked, else the coordinator itself (whose options
/// and --help stay as they are).
public enum CoordinatorMain {
    public static func main() async {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "move" {
            await MoveCommand.main(Array(args.dropFirst()))
        } else {
            await CoordinatorCommand.main()
        }
    }
}
