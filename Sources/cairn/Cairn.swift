import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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
              cairn graph scripts/examples/video/video.yaml --format mermaid
            """,
        subcommands: [Submit.self, Watch.self, Status.self, List.self, History.self, State.self, Cancel.self,
                      Workers.self, Stats.self, GraphCommand.self,
                      Resume.self, Fork.self, Export.self, Import.self, Cleanup.self, Verify.self]
    )
}

/// Options every command that talks to a coordinator shares.
struct Connection: ParsableArguments {
    @Option(name: .customLong("coordinator"), help: "The coordinator's HOST:PORT (or CAIRN_COORDINATOR).")
    var coordinator: String?

    @Option(name: .customLong("token-file"), help: "A file holding the token (or CAIRN_TOKEN).")
    var tokenFile: String?

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func config() throws -> ClientConfig {
        var c = ClientConfig()
        let address = coordinator ?? ProcessInfo.processInfo.environment["CAIRN_COORDINATOR"] ?? "127.0.0.1:7400"
        guard let (host, port) = ClientConfig.parseAddress(address) else {
            throw ValidationError("the coordinator address must be HOST:PORT, not '\(address)'")
        }
        c.host = host
        c.port = port
        do { c.token = try Tokens.read(file: tokenFile) } catch { throw ValidationError("\(error)") }
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

    static func code(for error: ClientError) -> Int32 {
        if case .server(.errorDataDamaged, _) = error { return damaged }
        return 1
    }

    static let help = "Exit status: 0 completed, 2 failed, 3 cancelled, 4 paused, 1 could not ask, 5 the run's stored data is damaged."
}

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a run of a graph file.",
        discussion: """
            The graph file's folder is packed and sent with the run when the graph has exec nodes, so relative commands like ./nodes/step.py run on any worker.

            With --wait: \(RunExit.help)
            """)

    @Argument(help: "The graph file (YAML or JSON).")
    var graph: String

    @Option(help: "The run's input: a JSON object of channel to value, or @file to read it from a file.")
    var input: String?

    @Option(name: .customLong("run-id"), help: "Choose the run's id (default: generated). A second submit with an active id is refused.")
    var runID: String?

    @Option(help: "hot or sync. Without a Redis tier every run is sync: each step is in SQLite before the next.")
    var durability: String?

    @Flag(help: "Wait for the run to end, showing its progress; exit status tells how it ended.")
    var wait = false

    @Option(help: "Submit this many runs of the graph over one connection (for load tests); --run-id becomes a prefix.")
    var count = 1

    @Flag(help: "With --wait: print on stderr how long the client waited, from sending the submit to seeing the run(s) end (no process start-up). scripts/bench times runs this way.")
    var timing = false

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        var inputText = input
        if let i = input, i.hasPrefix("@") {
            guard let text = try? String(contentsOfFile: String(i.dropFirst()), encoding: .utf8) else {
                throw ValidationError("cannot read the input file \(i.dropFirst())")
            }
            inputText = text
        }
        if let t = inputText, (try? JSONValue.parse(t))?.objectValue == nil {
            throw ValidationError("--input must be a JSON object, like '{\"topic\": \"tides\"}'")
        }
        guard FileManager.default.fileExists(atPath: graph) else { throw ValidationError("no graph file at \(graph)") }
        let req: Cairn_V1_SubmitRequest
        do {
            req = try .forFile(graph, input: inputText, runID: runID, durability: durability)
        } catch {
            FileHandle.standardError.write(Data("cairn: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let json = connection.json
        let wait = self.wait
        let timing = self.timing && wait
        func report(_ started: ContinuousClock.Instant) {
            guard timing else { return }
            let d = ContinuousClock.now - started
            let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            FileHandle.standardError.write(Data("timing: \(String(format: "%.6f", seconds)) s from submit sent to the end seen\n".utf8))
        }
        if count > 1 {
            guard count <= 100_000 else { throw ValidationError("--count is at most 100000") }
            let (n, prefix) = (count, runID)
            let statuses: [String] = try await connection.with { client in
                let started = ContinuousClock.now
                let requests = (0..<n).map { i -> Cairn_V1_SubmitRequest in
                    var r = req
                    if let prefix { r.runID = "\(prefix)-\(i)" }
                    return r
                }
                var finals: [Cairn_V1_RunInfo] = []
                for result in try await (wait ? client.submitAllAndWait(requests) : client.submitAll(requests)) {
                    switch result {
                    case .success(let info): finals.append(info)
                    case .failure(let e): FileHandle.standardError.write(Data("cairn: \(e.description)\n".utf8))
                    }
                }
                if wait { report(started) }
                if finals.isEmpty { throw ExitCode(1) }
                if json { Output.printJSON(.array(finals.map(Output.json))) } else {
                    print("submitted \(n) runs of \(finals.first?.graphName ?? "")" + (wait ? ": " + Dictionary(grouping: finals, by: \.status).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ") : ""))
                }
                return finals.map(\.status)
            }
            if wait { throw ExitCode(statuses.allSatisfy { $0 == "completed" } ? 0 : RunExit.code(statuses.first { $0 != "completed" } ?? "")) }
            return
        }
        let status: String = try await connection.with { client in
            let started = ContinuousClock.now
            let info: Cairn_V1_RunInfo
            do {
                info = try await client.submit(req)
            } catch let e as ClientError {
                throw Connection.report(e, json: json)
            }
            if !wait {
                if json { Output.printJSON(Output.json(info)) } else {
                    print("submitted \(Output.bold(info.runID)) (\(info.graphName)) — watch it with: cairn watch \(info.runID)")
                }
                return info.status
            }
            if json {
                // One JSON document: the run as it ended (`watch --json` streams the events).
                let last = try await client.watch(info.runID, finalOnly: true)
                report(started)
                Output.printJSON(Output.json(last.run))
                return last.run.status
            }
            print("submitted \(Output.bold(info.runID)) (\(info.graphName))")
            let last = try await WatchView(json: false).follow(client, info.runID)
            report(started)
            return last.run.status
        }
        if wait { throw ExitCode(RunExit.code(status)) }
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a run live: its step, its tasks and a progress bar, until it ends.",
        discussion: "With --json, one event per line (JSON Lines), the last with \"final\": true. " + RunExit.help)

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let last = try await connection.with { client in try await WatchView(json: json).follow(client, runID) }
        throw ExitCode(RunExit.code(last.run.status))
    }
}

/// Renders a run's events: a live status line on a terminal, one line per step otherwise.
struct WatchView {
    var json: Bool

    func follow(_ client: CairnClient, _ runID: String) async throws -> Cairn_V1_RunEvent {
        let started = Date()
        var running: [String: Int] = [:]
        var liveLine = false
        func clearLive() {
            if liveLine { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)); liveLine = false }
        }
        let last = try await client.watch(runID) { e in
            if json {
                print(Output.json(e).compactString)  // JSON Lines: one event per line
                return
            }
            let r = e.run
            switch e.kind {
            case "snapshot":
                print("\(Output.bold(r.runID)) · graph \(r.graphName) · \(Output.status(r.status)) · step \(e.step)")
            case "task_started":
                running[e.node, default: 0] += 1
            case "task_finished":
                running[e.node, default: 1] -= 1
            case "task_failed":
                running[e.node, default: 1] -= 1
                clearLive()
                print("  \(Output.color("✗", "31")) \(e.node) (attempt \(e.attempt)\(e.worker.isEmpty ? "" : " on \(e.worker)")): \(e.message)")
            case "checkpoint":
                running = [:]
                clearLive()
                let next = r.nextNodes.isEmpty ? "" : " → next: \(r.nextNodes.joined(separator: ", "))"
                print("  \(Output.color("✓", "32")) step \(r.step) recorded\(next)")
            case "progress":
                clearLive()
                print("  … \(e.node): \(e.message)")
            default: break
            }
            if e.final {
                clearLive()
                return
            }
            if Output.isTTY {
                let nodes = running.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                    .map { $0.value > 1 ? "\($0.key)×\($0.value)" : $0.key }.joined(separator: " ")
                let cost = r.cost > 0 ? String(format: "  $%.2f", r.cost) : ""
                let line = "  step \(r.step + 1) \(Output.bar(Int(r.tasksDone), Int(r.tasksTotal))) \(r.tasksDone)/\(r.tasksTotal) tasks"
                    + (nodes.isEmpty ? "" : "  running: \(nodes)") + cost + "  " + Output.dim(Output.duration(Date().timeIntervalSince(started)))
                FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + String(line.prefix(200))).utf8))
                liveLine = true
            }
        }
        if !json {
            let r = last.run
            var summary = "\(Output.bold(r.runID)) \(Output.status(r.status)) after \(r.step) step\(r.step == 1 ? "" : "s")"
            if r.finishedAt > 0 && r.createdAt > 0 { summary += " in \(Output.duration(r.finishedAt - r.createdAt))" }
            if r.cost > 0 { summary += String(format: ", cost $%.2f", r.cost) }
            print(summary)
            if !r.error.isEmpty { print("  error: \(r.error)") }
            if r.status == "paused", !r.interruptJson.isEmpty {
                print("  paused: \(Output.json(r.interruptJson).compactString)")
            }
        }
        return last
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one run: status, step, error, output.")

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let info = try await connection.with { try await $0.status(runID) }
        if json { Output.printJSON(Output.json(info)); return }
        var rows: [(String, String)] = [
            ("run", info.runID), ("graph", "\(info.graphName) (version \(info.graphVersion))"),
            ("status", Output.status(info.status)), ("step", "\(info.step)"),
            ("created", "\(Output.time(info.createdAt)) (\(Output.ago(info.createdAt)))"),
        ]
        if info.finishedAt > 0 { rows.append(("finished", "\(Output.time(info.finishedAt)) after \(Output.duration(info.finishedAt - info.createdAt))")) }
        if !info.nextNodes.isEmpty { rows.append(("next", info.nextNodes.joined(separator: ", "))) }
        if info.tasksTotal > 0 { rows.append(("tasks", "\(info.tasksDone)/\(info.tasksTotal) of this step done")) }
        if info.cost > 0 || info.apiCalls > 0 { rows.append(("cost", String(format: "$%.4f, %d API calls", info.cost, info.apiCalls))) }
        rows.append(("durability", info.durability))
        rows.append(("checkpoint", info.checkpointID))
        if !info.error.isEmpty { rows.append(("error", Output.color(info.error, "31"))) }
        if !info.interruptJson.isEmpty { rows.append(("paused at", Output.json(info.interruptJson).compactString)) }
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(Output.dim(k.padding(toLength: width, withPad: " ", startingAt: 0)) + "  " + v) }
        if !info.outputJson.isEmpty {
            print(Output.dim("output"))
            print((try? Output.json(info.outputJson).jsonString(pretty: true)) ?? "")
        }
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List runs, newest first.",
        discussion: "A run whose stored row fails its integrity check is listed as damaged, with the reason; the others list as usual.")

    @Option(help: "Only runs with this status: queued, running, paused, completed, failed, cancelled.")
    var status: String?

    @Option(help: "Only runs of this graph (its name).")
    var graph: String?

    @Option(help: "Only runs created within this long, e.g. 30m, 24h, 7d.")
    var since: String?

    @Option(help: "At most this many runs.")
    var limit: Int = 50

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        var req = Cairn_V1_ListRequest()
        req.status = status ?? ""
        req.graph = graph ?? ""
        req.limit = UInt32(max(1, min(limit, 10_000)))
        if let since {
            guard let ms = Durations.parseMillis(since) else { throw ValidationError("--since takes a duration like 30m, 24h or 7d") }
            req.sinceMs = UInt64(ms)
        }
        let json = connection.json
        let runs = try await connection.with { [req] in try await $0.list(req) }
        if json { Output.printJSON(.array(runs.map(Output.json))); return }
        if runs.isEmpty { print("no runs match"); return }
        Output.table(["RUN", "GRAPH", "STATUS", "STEP", "CREATED", "DURATION", "COST", "ERROR"], runs.map { r in
            if !r.damage.isEmpty {
                return [r.runID, "?", Output.color("damaged", "31"), "-", "-", "-", "-", String(r.damage.prefix(100))]
            }
            let end = r.finishedAt > 0 ? r.finishedAt : Date().timeIntervalSince1970
            return [r.runID, r.graphName, Output.status(r.status), "\(r.step)", Output.ago(r.createdAt),
                    Output.duration(end - r.createdAt), r.cost > 0 ? String(format: "$%.2f", r.cost) : "-",
                    String(r.error.prefix(60))]
        })
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List a run's checkpoints, newest first, with the tasks each step ran.",
        discussion: "Read the state at any of them with: cairn state RUN --checkpoint ID")

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let h = try await connection.with { try await $0.history(runID) }
        if json { Output.printJSON(Output.json(h)); return }
        Output.table(["STEP", "CHECKPOINT", "SOURCE", "TASKS", "UPDATED", "NEXT", "CREATED"], h.checkpoints.map { c in
            let done = c.tasks.filter { $0.status == "completed" }
            var nodes: [String: Int] = [:]
            for t in done { nodes[t.node, default: 0] += 1 }
            let failed = c.tasks.count - done.count
            let tasks = nodes.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key)×\($0.value)" : $0.key }.joined(separator: " ")
                + (failed > 0 ? Output.color(" (+\(failed) failed/lost)", "33") : "")
            var next: [String: Int] = [:]
            for n in c.nextNodes { next[n, default: 0] += 1 }
            let nextText = next.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key)×\($0.value)" : $0.key }.joined(separator: " ")
            return ["\(c.step)", c.checkpointID.isEmpty ? Output.dim("(not recorded)") : c.checkpointID, c.source, tasks.isEmpty ? "-" : tasks,
                    c.updatedChannels.isEmpty ? "-" : c.updatedChannels.joined(separator: ","),
                    nextText.isEmpty ? "-" : nextText, Output.time(c.createdAt)]
        })
    }
}

struct State: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a run's state (channels) at its newest or a given checkpoint.")

    @Argument(help: "The run id.")
    var run: String

    @Option(help: "A checkpoint id from `cairn history` (default: the newest).")
    var checkpoint: String?

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let cp = checkpoint
        let s = try await connection.with { try await $0.state(runID, checkpoint: cp) }
        let state = Output.json(s.stateJson)
        if json {
            Output.printJSON(.object(["run_id": .string(s.runID), "checkpoint_id": .string(s.checkpointID), "step": .int(Int64(s.step)),
                                      "state": state, "next": .array(s.nextNodes.map { .string($0) })]))
            return
        }
        print(Output.dim("run \(s.runID) · checkpoint \(s.checkpointID) · step \(s.step)" + (s.nextNodes.isEmpty ? "" : " · next: \(Set(s.nextNodes).sorted().joined(separator: ", "))")))
        print((try? state.jsonString(pretty: true)) ?? state.compactString)
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a run; results still arriving for it are discarded.")

    @Argument(help: "The run id.")
    var run: String

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let runID = self.run
        let info = try await connection.with { try await $0.cancel(runID) }
        if json { Output.printJSON(Output.json(info)) } else { print("\(info.runID) \(Output.status(info.status))") }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List connected workers: slots, running tasks, last heartbeat, tasks done.")

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let workers = try await connection.with { try await $0.workers() }
        if json { Output.printJSON(.array(workers.map(Output.json))); return }
        if workers.isEmpty { print("no workers connected"); return }
        Output.table(["NAME", "ID", "STATE", "RUNNING", "SLOTS", "DONE", "HEARTBEAT", "CONNECTED", "ADDRESS"], workers.map { w in
            [w.name, w.workerID, w.state, "\(w.running)", "\(w.slots)", "\(w.tasksDone)", Output.ago(w.lastHeartbeat),
             Output.ago(w.connectedAt), w.address]
        })
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the coordinator's counters: runs by status, tasks, queue, workers.")

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let s = try await connection.with { try await $0.stats() }
        if json { Output.printJSON(Output.json(s)); return }
        let runs = s.runsByStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let rows: [(String, String)] = [
            ("runs", runs.isEmpty ? "none" : runs), ("workers", "\(s.workers)"), ("queue depth", "\(s.queueDepth)"),
            ("tasks dispatched", "\(s.tasksDispatched)"), ("tasks completed", "\(s.tasksCompleted)"),
            ("tasks failed", "\(s.tasksFailed)"), ("tasks retried", "\(s.tasksRetried)"),
            ("tasks reassigned", "\(s.tasksReassigned) (leases fenced \(s.leasesFenced), expired \(s.leasesExpired))"),
            ("stale results rejected", "\(s.staleResults)"), ("poisonous tasks", "\(s.tasksPoisoned)"),
            ("store transactions", "\(s.storeBatches) (\(s.storeRows) rows)"), ("SQLite WAL", "\(s.walBytes) bytes"),
            ("hot tier", !s.redisConfigured ? "off (SQLite alone)" : s.redisUp
                ? "Redis up, \(s.hotWaitingBatches) batches waiting (oldest \(Output.duration(s.hotOldestSeconds))), \(s.flushes) flushes"
                : Output.color("Redis DOWN: writing SQLite directly (\(s.redisFailures) failures)", "31")),
            ("uptime", Output.duration(s.uptimeSeconds)),
        ] + (s.storeError.isEmpty ? [] : [("store error", Output.color(s.storeError, "31"))])
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(Output.dim(k.padding(toLength: width, withPad: " ", startingAt: 0)) + "  " + v) }
    }
}

struct GraphCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Check a graph file and render it as Graphviz DOT or a Mermaid flowchart.",
        discussion: """
            Needs no coordinator. A graph with problems is reported with every problem, naming the node or edge.

              cairn graph video.yaml | dot -Tpng > video.png
              cairn graph video.yaml --format mermaid
            """)

    @Argument(help: "The graph file (YAML or JSON).")
    var graph: String

    @Option(help: "dot or mermaid.")
    var format: String = "dot"

    @Flag(help: "Print a JSON summary (name, nodes, channels, edges) instead of a drawing.")
    var json = false

    mutating func run() async throws {
        guard let text = try? String(contentsOfFile: graph, encoding: .utf8) else { throw ValidationError("cannot read \(graph)") }
        guard let fmt = GraphRenderer.Format(rawValue: format) else { throw ValidationError("--format must be dot or mermaid") }
        let g: CairnGraph.Graph
        do {
            g = try GraphParser.parse(file: graph, text: text)
        } catch {
            if json { Output.printJSON(.object(["valid": false, "error": .string("\(error)")])) }
            FileHandle.standardError.write(Data("cairn: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if json {
            Output.printJSON(.object([
                "valid": true, "name": .string(g.name), "version": .int(Int64(g.version)),
                "nodes": .object(Dictionary(uniqueKeysWithValues: g.nodes.map { ($0.key, JSONValue.string($0.value.kind)) })),
                "channels": .object(Dictionary(uniqueKeysWithValues: g.channels.map { ($0.key, JSONValue.string($0.value.reducer.rawValue)) })),
                "edges": .int(Int64(g.edges.count)),
            ]))
            return
        }
        print(GraphRenderer.render(g, format: fmt), terminator: "")
    }
}

/// Commands from the design that are not built yet: they say so instead of "unknown command".
enum NotYetBuilt {
    static let names = ["resume": "resuming a paused run", "fork": "forking a run from a checkpoint",
                        "export": "exporting a run", "import": "importing a run", "cleanup": "retention cleanup",
                        "verify": "verifying stored checksums"]
}

protocol NotBuiltCommand: AsyncParsableCommand {
    static var name: String { get }
}

extension NotBuiltCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: name, abstract: "\(NotYetBuilt.names[name] ?? name) (not built yet).", shouldDisplay: false)
    }

    mutating func run() async throws {
        FileHandle.standardError.write(Data("cairn \(Self.name): \(NotYetBuilt.names[Self.name] ?? Self.name) is not built yet in this version of Cairn.\n".utf8))
        throw ExitCode(1)
    }
}

struct Resume: NotBuiltCommand {
    static let name = "resume"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
struct Fork: NotBuiltCommand {
    static let name = "fork"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
struct Export: NotBuiltCommand {
    static let name = "export"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
struct Import: NotBuiltCommand {
    static let name = "import"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
struct Cleanup: NotBuiltCommand {
    static let name = "cleanup"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
struct Verify: NotBuiltCommand {
    static let name = "verify"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
