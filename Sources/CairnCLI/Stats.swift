import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

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
            ("auth", s.auth == "none" ? Output.color("none: any peer that reaches the port may submit and run work", "33") : s.auth),
            ("uptime", Output.duration(s.uptimeSeconds)),
        ] + (s.storeError.isEmpty ? [] : [("store error", Output.color(s.storeError, "31"))])
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(Output.dim(k.padding(toLength: width, withPad: " ", startingAt: 0)) + "  " + v) }
    }
}
