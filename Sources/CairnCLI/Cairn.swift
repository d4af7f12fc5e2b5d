import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnOptions
import CairnProtocol
import CairnTLS
import Foundation

/// The `cairn` command (its executable only calls `Cairn.main()`).
public struct Cairn: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Submit, watch and inspect Cairn workflow runs.",
        discussion: """
            Every step of a run is a checkpoint in the coordinator's store: `history` lists them and `state` reads the state at any of them. Add --json to any command for machine-readable output.

            The coordinator comes from --coordinator or CAIRN_COORDINATOR (default 127.0.0.1:7400), the token from --token-file or CAIRN_TOKEN.

            Examples:
              cairn submit scripts/examples/video/video.yaml --wait \\
                --input '{"topic": "lighthouses"}'
              cairn watch r-3k9x2m1q7a
              cairn list --status failed --since 24h
              cairn resume r-3k9x2m1q7a --value '{"approved": true}' --wait
              cairn fork r-3k9x2m1q7a --checkpoint ID --values '{"topic": "glaciers"}'
              cairn graph scripts/examples/video/video.yaml --format mermaid
              cairn debug r-3k9x2m1q7a --json > step.json
              cairn verify --all
              cairn cleanup --older-than 30d --keep-latest 5 --dry-run
              cairn export r-3k9x2m1q7a -o run.cairn   (then: cairn import run.cairn)
              cairn health http://coordinator:9400/healthz
            """,
        subcommands: [Submit.self, Watch.self, Status.self, List.self, History.self, State.self, Cancel.self,
                      Resume.self, Update.self, Fork.self, Rewind.self,
                      Workers.self, Stats.self, Failures.self, Tasks.self, Assets.self, Waiting.self, GraphCommand.self,
                      Debug.self, Verify.self, Cleanup.self, Pin.self, Unpin.self, Export.self, Import.self, Health.self]
    )
}

/// Options every command that talks to a coordinator shares.
struct Connection: ParsableArguments {
    @Option(name: .customLong("coordinator"), help: "The coordinator's HOST:PORT (or CAIRN_COORDINATOR); with standby coordinators, all of them, comma-separated: the one that answers serves.")
    var coordinator: String?

    @OptionGroup var credentials: PeerCredentials

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func config() throws -> ClientConfig {
        var c = ClientConfig()
        let address = coordinator ?? ProcessInfo.processInfo.environment["CAIRN_COORDINATOR"] ?? "127.0.0.1:7400"
        guard let all = ClientConfig.parseAddresses(address) else {
            throw ValidationError("the coordinator address must be HOST:PORT (or several, comma-separated: standby coordinators), not '\(address)'")
        }
        (c.host, c.port) = all[0]
        c.others = Array(all.dropFirst())
        do { c.token = try credentials.token() } catch { throw ValidationError("\(error)") }
        c.tls = credentials.tls
        return c
    }

    /// Runs `body` on a connection; client errors become one clean line and exit status 1
    /// (5 when the coordinator's stored data for what was asked is damaged).
    func with<T: Sendable>(_ body: (CairnClient) async throws -> T) async throws -> T {
        do {
            return try await CairnClient.withConnection(try config(), body)
        } catch let e as ClientError {
            throw Self.report(e, json: json)
        }
    }

    /// `with`, and when the connection is lost and there are standby coordinators (a list), again
    /// on whichever leads now, saying so in one line on stderr; at most 20 times.
    func following<T: Sendable>(what: String, _ body: (CairnClient) async throws -> T) async throws -> T {
        let config = try config()
        var moves = 0
        while true {
            do {
                return try await CairnClient.withConnection(config, body)
            } catch let e as ClientError {
                var lostIt = false
                if case .lost = e { lostIt = true }
                if case .closed = e { lostIt = true }
                guard lostIt, !config.others.isEmpty, moves < 20 else { throw Self.report(e, json: json) }
                moves += 1
                FileHandle.standardError.write(Data("cairn: \(e.description); following \(what) on the active coordinator\n".utf8))
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Prints a client error (as JSON too with --json) and returns the exit status it means.
    static func report(_ e: ClientError, json: Bool) -> ExitCode {
        if json { Output.printJSON(.object(["error": .string(e.description)])) }
        FileHandle.standardError.write(Data("cairn: \(e.description)\n".utf8))
        return ExitCode(RunExit.code(for: e))
    }
}

/// Exit statuses for commands that wait for a run: what the run ended as.
enum RunExit {
    static func code(_ status: String) -> Int32 {
        switch status {
        case "completed": return 0
        case "failed": return 2
        case "cancelled": return 3
        case "paused": return 4
        default: return 1
        }
    }

    /// The stored data asked for failed its integrity check: distinct from "could not ask".
    static let damaged: Int32 = 5

    /// The coordinator's store refuses writes (a full disk, a damaged file): the command was
    /// refused with nothing done, or accepted and not yet recorded (the message says which).
    static let storeRefusing: Int32 = 6

    static func code(for error: ClientError) -> Int32 {
        if case .server(.errorDataDamaged, _) = error { return damaged }
        if case .server(.errorUnavailable, _) = error { return storeRefusing }
        return 1
    }

    static let help = "Exit status: 0 completed, 2 failed, 3 cancelled, 4 paused, 1 could not ask, 5 the run's stored data is damaged, 6 the coordinator's store refuses writes: refused with nothing done, or (the message says which) accepted but not yet recorded — cairn status tells whether it is."
}
