import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The coordinator's counters, or (with --by, --since or --graph) durations and cost from the stored records.",
        discussion: """
            Without options: runs by status, tasks, queue, workers, store. With --by node|graph|run|day|worker|model:
            the p50/p95/max duration of completed attempts and the cost, API calls and tokens, per group
            (--by model reads the API calls nodes logged: latency and cost per provider and model).
            Example: cairn stats --by node --since 24h --graph ingest
            """)

    @OptionGroup var connection: Connection
    @Option(help: "Group records by node (per graph), graph, run, day, worker or model.") var by: String?
    @Option(help: "Only attempts that started within this long (30m, 24h, 7d).") var since: String?
    @Option(help: "Only runs of this graph.") var graph: String?
    @Option(help: "At most this many groups per table.") var limit = 50

    mutating func run() async throws {
        let json = connection.json
        if by != nil || since != nil || graph != nil {
            let by = self.by ?? "node", since = self.since, graph = self.graph, limit = self.limit
            let durations = try RecordsReport.request("durations", by: by, since: since, graph: graph, limit: limit)
            let cost = try RecordsReport.request("cost", by: by, since: since, graph: graph, limit: limit)
            let (d, c) = try await connection.with { client in (try await client.records(durations), try await client.records(cost)) }
            if json { Output.printJSON(.object(["durations": RecordsReport.objects(d), "cost": RecordsReport.objects(c)])); return }
            print(Output.bold(by == "model" ? "API call latency by provider and model" : "Duration of completed attempts by \(by)")
                  + Output.dim(" (slowest p95 first)"))
            RecordsReport.print(d, empty: by == "model" ? "no API calls recorded" : "no completed attempts")
            print("")
            print(Output.bold("Cost, API calls and tokens by \(by)") + Output.dim(" (failed attempts count: they were paid for)"))
            RecordsReport.print(c, empty: "nothing recorded")
            return
        }
        let s = try await connection.with { try await $0.stats() }
        if json { Output.printJSON(Output.json(s)); return }
        let runs = s.runsByStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let rows: [(String, String)] = [
            ("runs", runs.isEmpty ? "none" : runs), ("workers", "\(s.workers)"), ("queue depth", "\(s.queueDepth)"),
            ("tasks dispatched", "\(s.tasksDispatched)"), ("tasks completed", "\(s.tasksCompleted)"),
            ("tasks failed", "\(s.tasksFailed)"), ("tasks retried", "\(s.tasksRetried)"),
            ("tasks reassigned", "\(s.tasksReassigned) (leases fenced \(s.leasesFenced), expired \(s.leasesExpired))"),
            ("stale results rejected", "\(s.staleResults)"), ("poisonous tasks", "\(s.tasksPoisoned)"),
            ("state sent to workers", "\(s.stateBytesSent) bytes (\(s.stateBytesKept) more already in workers' caches)"),
            ("store transactions", "\(s.storeBatches) (\(s.storeRows) rows)"), ("SQLite WAL", "\(s.walBytes) bytes"),
            ("hot tier", !s.redisConfigured ? "off (SQLite alone)" : s.redisUp
                ? "Redis up, \(s.hotWaitingBatches) batches waiting (oldest \(Output.duration(s.hotOldestSeconds))), \(s.flushes) flushes"
                : Output.color("Redis DOWN: writing SQLite directly (\(s.redisFailures) failures)", "31")),
            ("auth", s.auth == "none" ? Output.color("none: any peer that reaches the port may submit and run work", "33") : s.auth),
            ("uptime", Output.duration(s.uptimeSeconds)),
        ] + (s.role.isEmpty ? [] : [("role", "\(s.role), leading with epoch \(s.leaderEpoch) (standby coordinators share the store)")])
          + (s.storeError.isEmpty ? [] : [("store error", Output.color(s.storeError, "31"))])
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(Output.dim(k.padding(toLength: width, withPad: " ", startingAt: 0)) + "  " + v) }
    }
}
