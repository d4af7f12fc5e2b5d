import CairnCore
import CairnGraph
import Foundation
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

    init() {
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
        let svg: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                let r = try? await Subprocess.run(.path(FilePath(dot)), arguments: ["-Tsvg"], input: .string(dotText),
                                                  output: .string(limit: 8 << 20), error: .discarded)
                guard let r, r.terminationStatus.isSuccess, r.standardOutput.contains("<svg") else { return nil }
                let out = r.standardOutput
                return out
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let svg {
            if svgs.count >= 256 { svgs.removeAll() }
            svgs[dotText] = svg
        }
        return svg
    }
}
