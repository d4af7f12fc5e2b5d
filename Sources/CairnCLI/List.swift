import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

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

    @Option(help: "The page after this one: the cursor a full page ends with (it is printed on stderr).")
    var cursor: String?

    @OptionGroup var connection: Connection

    /// The request these options ask for; a bad option is a usage error, before any connection.
    func request() throws -> Cairn_V1_ListRequest {
        var req = Cairn_V1_ListRequest()
        if let status, !Self.statuses.contains(status) {
            throw ValidationError("--status must be one of: \(Self.statuses.joined(separator: ", "))")
        }
        req.status = status ?? ""
        req.graph = graph ?? ""
        guard limit >= 1 else { throw ValidationError("--limit must be at least 1") }
        req.limit = UInt32(min(limit, 10_000))
        req.cursor = cursor ?? ""
        if let since {
            guard let ms = Durations.parseMillis(since) else { throw ValidationError("--since takes a duration like 30m, 24h or 7d") }
            req.sinceMs = UInt64(ms)
        }
        return req
    }

    static let statuses = ["queued", "running", "paused", "completed", "failed", "cancelled"]

    mutating func run() async throws {
        let req = try request()
        let json = connection.json
        let page = try await connection.with { [req] in try await $0.page(req) }
        if json {
            Output.printJSON(.array(page.runs.map(Output.json)))
        } else {
            for line in Self.lines(page.runs, now: Date().timeIntervalSince1970) { print(line) }
        }
        // The way on, where it does not disturb a table or JSON read by a script.
        if !page.nextCursor.isEmpty {
            FileHandle.standardError.write(Data("more: cairn list … --cursor \(page.nextCursor)\n".utf8))
        }
    }

    /// The table `cairn list` prints: a damaged run is marked, with why, among the others.
    static func lines(_ runs: [Cairn_V1_RunInfo], now: Double) -> [String] {
        if runs.isEmpty { return ["no runs match"] }
        return Output.tableLines(["RUN", "GRAPH", "STATUS", "STEP", "CREATED", "DURATION", "COST", "ERROR"], runs.map { r in
            if !r.damage.isEmpty {
                return [r.runID, "?", Output.color("damaged", "31"), "-", "-", "-", "-", String(r.damage.prefix(100))]
            }
            let end = r.finishedAt > 0 ? r.finishedAt : now
            return [r.runID, r.graphName, Output.status(r.status), "\(r.step)", Output.ago(r.createdAt, now: now),
                    Output.duration(end - r.createdAt), r.cost > 0 ? String(format: "$%.2f", r.cost) : "-",
                    String(r.error.prefix(60))]
        })
    }
}
