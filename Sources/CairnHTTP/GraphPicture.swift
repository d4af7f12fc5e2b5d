import CairnCore
import CairnGraph
import Foundation
import Logging
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A run's graph for the dashboard: its nodes and arrows (for a layout of the page's own when
/// Graphviz is missing), its DOT and Mermaid text, and an SVG drawn by Graphviz's `dot` when it
/// is on the PATH. Pictures are cached by their DOT text (graphs do not change once stored).
actor GraphPictures {
    private var svgs: [String: String] = [:]
    private let dot: String?
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
        dot = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .map { "\($0)/dot" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func json(_ graph: Graph) async -> JSONValue {
        let dotText = GraphRenderer.render(graph, format: .dot)
        var nodes: [JSONValue] = [.object(["name": .string(Graph.start), "kind": "start"]), .object(["name": .string(Graph.end), "kind": "end"])]
        for n in graph.nodes.values.sorted(by: { $0.name < $1.name }) {
            nodes.append(.object(["name": .string(n.name), "kind": .string(n.kind),
                                  "interrupt_before": .bool(graph.interruptBefore.contains(n.name)),
                                  "interrupt_after": .bool(graph.interruptAfter.contains(n.name))]))
        }
        let edges: [JSONValue] = GraphRenderer.arrows(graph).map { a in
            .object(["from": .string(a.from), "to": .string(a.to), "label": a.label.map { .string($0) } ?? .null, "dashed": .bool(a.dashed)])
        }
        let svg = await picture(dotText)
        return .object(["name": .string(graph.name), "version": .int(Int64(graph.version)), "nodes": .array(nodes), "edges": .array(edges),
                        "dot": .string(dotText), "mermaid": .string(GraphRenderer.render(graph, format: .mermaid)),
                        "svg": svg.map { .string($0) } ?? .null])
    }

    /// `dot -Tsvg`, or nil when Graphviz is missing, fails or takes over 5 seconds.
    private func picture(_ dotText: String) async -> String? {
        guard let dot else { return nil }
        if let cached = svgs[dotText] { return cached }
        let drawn: Result<String, Failure> = await withTaskGroup(of: Result<String, Failure>.self) { group in
            group.addTask {
                do {
                    let r = try await Subprocess.run(.path(FilePath(dot)), arguments: ["-Tsvg"], input: .string(dotText),
                                                     output: .string(limit: 8 << 20), error: .string(limit: 4096))
                    let out = r.standardOutput
                    guard r.terminationStatus.isSuccess, out.contains("<svg") else {
                        let why = r.standardError.trimmingCharacters(in: .whitespacesAndNewlines)
                        return .failure(Failure(reason: "\(r.terminationStatus)" + (why.isEmpty ? "" : ": \(why.prefix(300))")))
                    }
                    return .success(out)
                } catch {
                    return .failure(Failure(reason: "\(error)"))
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return .failure(Failure(reason: "it took over 5 s"))
            }
            let first = await group.next() ?? .failure(Failure(reason: "cancelled"))
            group.cancelAll()
            return first
        }
        let svg: String?
        switch drawn {
        case .success(let s): svg = s
        case .failure(let f):
            svg = nil
            logger.warning("Graphviz's dot did not draw a graph; the dashboard lays it out itself", metadata: ["dot": "\(dot)", "reason": "\(f.reason)"])
        }
        if let svg {
            if svgs.count >= 256 { svgs.removeAll() }
            svgs[dotText] = svg
        }
        return svg
    }
}

struct Failure: Error { var reason: String }
