import CairnCore
import CairnProtocol
import CairnStore
import Foundation

extension Engine {
    /// An operator's question about stored runs, checked and handed to the store's SQL. The one
    /// rule every door (CLI, HTTP) calls.
    func records(_ r: Cairn_V1_RecordsRequest) async throws -> Cairn_V1_RecordsReply {
        guard let report = RecordsQuery.Report(rawValue: r.report) else {
            throw EngineError(.errorInvalidArgument, "unknown report '\(r.report)' (one of: \(RecordsQuery.Report.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        var by = RecordsQuery.Grouping.node
        if !r.by.isEmpty {
            guard let b = RecordsQuery.Grouping(rawValue: r.by) else {
                throw EngineError(.errorInvalidArgument, "unknown grouping '\(r.by)' (one of: \(RecordsQuery.Grouping.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            by = b
        }
        func text(_ s: String) -> String? { s.isEmpty ? nil : s }
        var q = RecordsQuery(report: report, by: by, graph: text(r.graph), runID: text(r.runID), taskID: text(r.taskID),
                             node: text(r.node), uri: text(r.uri), limit: r.limit == 0 ? 1000 : Int(min(r.limit, 100_000)))
        if r.sinceMs > 0 { q.since = Date().timeIntervalSince1970 - Double(r.sinceMs) / 1000 }
        if report == .attempts {
            guard let id = q.runID else { throw EngineError(.errorInvalidArgument, "a run id is needed for its attempts") }
            guard try await store.run(id) != nil else { throw EngineError(.errorNotFound, "no run with id \(id)") }
        }
        if report == .assets, let id = q.runID, try await store.run(id) == nil {
            throw EngineError(.errorNotFound, "no run with id \(id)")
        }
        let table: RecordsTable
        do { table = try await store.records(q) } catch let e as RecordsUnsupported {
            throw EngineError(.errorUnavailable, e.description)
        }
        var reply = Cairn_V1_RecordsReply()
        reply.columns = table.columns
        reply.rowsJson = Data(JSONValue.array(table.rows.map { .array($0) }).jsonBytes())
        return reply
    }
}
