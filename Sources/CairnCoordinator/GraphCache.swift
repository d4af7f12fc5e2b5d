import CairnCore
import CairnGraph
import CairnStore
import Synchronization

/// Graphs parsed and validated, by the SHA-256 of their source: a batch of runs of one graph
/// file is parsed once, and a stored run's graph once per coordinator. Shared by every command
/// (submit, time travel, debug, import); at most 256 are kept.
final class GraphCache: Sendable {
    private let graphs = Mutex<[String: Graph]>([:])
    static let limit = 256

    /// The graph `text` (from `file`) describes, parsed once; `kinds` gives the custom node kinds
    /// a graph may use (from the connected workers), asked only when the graph is not cached. A
    /// parse error is thrown as it is.
    func parse(file: String, text: String, kinds: () async -> Set<String>) async throws -> Graph {
        let key = Hashing.sha256Hex(Array(text.utf8))
        if let cached = graphs.withLock({ $0[key] }) { return cached }
        let graph = try GraphParser.parse(file: file, text: text, customKinds: await kinds())
        graphs.withLock {
            if $0.count >= Self.limit { $0.removeAll() }
            $0[key] = graph
        }
        return graph
    }

    /// A stored graph, parsed: any node kind is accepted (it was validated when its run was submitted).
    func stored(_ g: GraphRecord) async throws -> Graph {
        try await parse(file: g.fileName, text: g.source) { ["*"] }
    }
}
