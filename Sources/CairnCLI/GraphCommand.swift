import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

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
        let text: String
        do { text = try String(contentsOfFile: graph, encoding: .utf8) } catch {
            throw ValidationError("cannot read \(graph): \(error.localizedDescription)")
        }
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
