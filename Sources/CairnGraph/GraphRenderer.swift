import CairnCore
import Foundation

/// Renders a graph as Graphviz DOT or a Mermaid flowchart.
public enum GraphRenderer {
    public enum Format: String, Sendable, CaseIterable { case dot, mermaid }

    public static func render(_ graph: Graph, format: Format) -> String {
        switch format {
        case .dot: return dot(graph)
        case .mermaid: return mermaid(graph)
        }
    }

    /// One arrow of the picture: a direct edge, a route's case (dashed), a join, a map's fan-out.
    public struct Arrow: Sendable {
        public var from: String; public var to: String; public var label: String?; public var dashed: Bool
    }

    public static func arrows(_ graph: Graph) -> [Arrow] {
        var out: [Arrow] = []
        for edge in graph.edges {
            switch edge {
            case .direct(let from, let to):
                for t in to { out.append(Arrow(from: from, to: t, label: nil, dashed: false)) }
            case .route(let from, let on, let cases, let def):
                for (value, t) in cases.sorted(by: { $0.key < $1.key }) {
                    out.append(Arrow(from: from, to: t, label: "\(on)=\(value)", dashed: true))
                }
                if let def { out.append(Arrow(from: from, to: def, label: "\(on): default", dashed: true)) }
            case .join(let from, let to):
                for f in from { out.append(Arrow(from: f, to: to, label: from.count > 1 ? "join" : "all done", dashed: false)) }
            }
        }
        for node in graph.nodes.values.sorted(by: { $0.name < $1.name }) where node.kind == "map" {
            if let to = node.config["to"]?.stringValue {
                let over = node.config["over"]?.stringValue ?? "items"
                out.append(Arrow(from: node.name, to: to, label: "each of \(over)", dashed: true))
            }
        }
        return out
    }

    static func label(_ node: NodeSpec, _ graph: Graph) -> String {
        var l = "\(node.name)\\n(\(node.kind))"
        if graph.interruptBefore.contains(node.name) { l += "\\n⏸ before" }
        if graph.interruptAfter.contains(node.name) { l += "\\n⏸ after" }
        return l
    }

    static func dot(_ graph: Graph) -> String {
        var lines = ["digraph \"\(graph.name)\" {", "  rankdir=TB;", "  node [shape=box, style=rounded, fontname=\"Helvetica\"];",
                     "  START [shape=circle, label=\"start\", style=filled, fillcolor=\"#dddddd\"];",
                     "  END [shape=doublecircle, label=\"end\", style=filled, fillcolor=\"#dddddd\"];"]
        for node in graph.nodes.values.sorted(by: { $0.name < $1.name }) {
            let shape = node.kind == "map" ? ", shape=parallelogram" : ""
            lines.append("  \"\(node.name)\" [label=\"\(label(node, graph))\"\(shape)];")
        }
        for a in arrows(graph) {
            var attrs: [String] = []
            if let l = a.label { attrs.append("label=\"\(l)\"") }
            if a.dashed { attrs.append("style=dashed") }
            lines.append("  \"\(a.from)\" -> \"\(a.to)\"" + (attrs.isEmpty ? "" : " [\(attrs.joined(separator: ", "))]") + ";")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    static func mermaidID(_ name: String) -> String {
        if name == Graph.start { return "START" }
        if name == Graph.end { return "END" }
        return "n_" + String(name.map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    static func mermaid(_ graph: Graph) -> String {
        var lines = ["flowchart TD", "  START((start))", "  END(((end)))"]
        for node in graph.nodes.values.sorted(by: { $0.name < $1.name }) {
            let text = label(node, graph).replacingOccurrences(of: "\\n", with: "<br/>")
            if node.kind == "map" {
                lines.append("  \(mermaidID(node.name))[/\"\(text)\"/]")
            } else {
                lines.append("  \(mermaidID(node.name))[\"\(text)\"]")
            }
        }
        for a in arrows(graph) {
            let arrow = a.dashed ? "-.->" : "-->"
            if let l = a.label {
                let mid = a.dashed ? "-. \"\(l)\" .->" : "-- \"\(l)\" -->"
                lines.append("  \(mermaidID(a.from)) \(mid) \(mermaidID(a.to))")
            } else {
                lines.append("  \(mermaidID(a.from)) \(arrow) \(mermaidID(a.to))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
