import Foundation
import CairnCore
import CairnGraph
import Testing

@Suite struct GraphParserTests {
    static let video = """
        name: video-production
        version: 2
        state:
          messages:   { reducer: append }
          total_cost: { reducer: sum, default: 0 }
          assets:     { reducer: merge }
          scenes:     {}
          status:     {}
        nodes:
          initialize: { run: exec, command: ["./nodes/initialize.sh"], timeout: 30s }
          screenplay:
            run: exec
            command: ["python3", "./nodes/screenplay.py"]
            retry: { max_attempts: 3, initial_interval: 1s, backoff: 2.0, max_interval: 30s }
          shots:      { run: map, over: scenes, to: render_shot }
          render_shot: { run: exec, command: ["./nodes/render.sh"] }
          finalize:   { run: echo, writes: { status: done } }
        edges:
          - { from: START, to: initialize }
          - { from: initialize, to: screenplay }
          - from: screenplay
            route: { on: status, cases: { ok: shots, error: finalize }, default: finalize }
          - { from: [render_shot], to: finalize }
          - { from: finalize, to: END }
        interrupt_before: [finalize]
        limits: { max_steps: 200 }
        """

    @Test func parsesTheDesignExample() throws {
        let g = try GraphParser.parse(file: "video.yaml", text: Self.video)
        #expect(g.name == "video-production")
        #expect(g.version == 2)
        #expect(g.channels["messages"]?.reducer == .append)
        #expect(g.channels["total_cost"]?.defaultValue == .int(0))
        #expect(g.nodes["initialize"]?.timeoutMS == 30_000)
        #expect(g.nodes["screenplay"]?.retry.maxAttempts == 3)
        #expect(g.nodes["screenplay"]?.retry.maxIntervalMS == 30_000)
        #expect(g.interruptBefore == ["finalize"])
        #expect(g.limits.maxSteps == 200)
        #expect(g.edges.contains(.join(from: ["render_shot"], to: "finalize")))
        #expect(g.edges.contains(.route(from: "screenplay", on: "status", cases: ["ok": "shots", "error": "finalize"], defaultTarget: "finalize")))
    }

    @Test func interruptsMayCarryADeadline() throws {
        let base = Self.video.replacingOccurrences(of: "interrupt_before: [finalize]", with: "") + "\n"
        let g = try GraphParser.parse(file: "v.yaml", text: base + """
            interrupt_before: [initialize, {node: finalize, timeout: 24h, on_timeout: fail}]
            interrupt_after: [{node: screenplay, timeout: 90s, on_timeout: {resume: {approved: true}}}]
            """)
        #expect(g.interruptBefore == ["initialize", "finalize"] && g.interruptAfter == ["screenplay"])
        #expect(g.interruptDeadlines["interrupt_before:finalize"] == InterruptDeadline(timeoutMS: 86_400_000, onTimeout: .fail))
        #expect(g.interruptDeadlines["interrupt_after:screenplay"] == InterruptDeadline(timeoutMS: 90_000, onTimeout: .resume(["approved": true])))
        #expect(g.interruptDeadlines["interrupt_before:initialize"] == nil)
        let bad = problems(base + "interrupt_before: [{node: finalize, timeout: soon}, {node: ghost}]\n")
        #expect(bad.contains("interrupt_before[0].timeout: 'soon' is not a duration"), "\(bad)")
        #expect(bad.contains("interrupt_before[1]: unknown node 'ghost'"), "\(bad)")
        let worse = problems(base + "interrupt_before: [{node: finalize, timeout: 1h, on_timeout: explode}]\n")
        #expect(worse.contains("interrupt_before[0].on_timeout: must be fail or {resume: VALUE}"), "\(worse)")
    }

    @Test func jsonGraphsParseToo() throws {
        let text = #"{"name": "j", "state": {"n": {"reducer": "sum"}}, "nodes": {"a": {"run": "echo", "writes": {"n": 1}}},"#
            + #" "edges": [{"from": "START", "to": "a"}, {"from": "a", "to": "END"}]}"#
        let g = try GraphParser.parse(file: "j.json", text: text)
        #expect(g.nodes["a"]?.config["writes"]?["n"] == .int(1))
    }

    func problems(_ text: String) -> String {
        do {
            _ = try GraphParser.parse(file: "bad.yaml", text: text)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    static let base = """
        name: t
        state:
          status: {}
        nodes:
          a: { run: echo }
          b: { run: echo }
        edges:
          - { from: START, to: a }
          - { from: a, to: b }
          - { from: b, to: END }

        """

    @Test func unknownNodeInAnEdgeIsNamed() {
        let text = Self.base.replacingOccurrences(of: "{ from: a, to: b }", with: "{ from: a, to: bb }")
        let e = problems(text)
        #expect(e.contains("bad.yaml"))
        #expect(e.contains("edges[1].to"))
        #expect(e.contains("unknown node 'bb'"))
        #expect(e.contains("did you mean 'b'"))
    }

    @Test func badReducerIsNamed() {
        let e = problems(Self.base.replacingOccurrences(of: "status: {}", with: "status: { reducer: concat }"))
        #expect(e.contains("state.status.reducer"))
        #expect(e.contains("unknown reducer 'concat'"))
    }

    @Test func execNodesTakeServeAndAnyNodeTakesParameters() throws {
        let ok = Self.base.replacingOccurrences(of: "a: { run: echo }", with:
            "a: { run: exec, command: [python3, n.py], serve: { max_tasks: 100, max_memory: 512MB }, with: { model: small, temperature: 0.2 } }")
        let g = try GraphParser.parse(file: "ok.yaml", text: ok)
        #expect(g.nodes["a"]?.config["with"]?["model"]?.stringValue == "small")
        #expect(g.nodes["a"]?.config["serve"]?["max_tasks"]?.intValue == 100)
        let e = problems(Self.base.replacingOccurrences(of: "a: { run: echo }", with:
            "a: { run: exec, command: [python3, n.py], serve: { max_tasks: 0, max_memory: 512, idle: 3 }, with: [1] }"))
        #expect(e.contains("nodes.a.serve.max_tasks: must be a whole number of at least 1"), "\(e)")
        #expect(e.contains("nodes.a.serve.max_memory: must be a size with a unit, like 512MB"))
        #expect(e.contains("nodes.a.serve.idle: unknown key"))
        #expect(e.contains("nodes.a.with: must be a mapping"))
        let reads = problems(Self.base.replacingOccurrences(of: "a: { run: echo }", with: "a: { run: exec, command: [x], reads: [status, nope] }"))
        #expect(reads.contains("nodes.a.reads: reads 'nope', which is not a channel in 'state'"), "\(reads)")
        #expect(problems(Self.base.replacingOccurrences(of: "a: { run: echo }", with: "a: { run: exec, command: [x], reads: status }"))
            .contains("nodes.a.reads: must be a list of channel names"))
        #expect(NodeKinds.stateInput(kind: "exec", config: ["reads": ["status"]]) == .channels(["status"]))
        #expect(NodeKinds.stateInput(kind: "exec", config: [:]) == .whole)
        let echo = problems(Self.base.replacingOccurrences(of: "a: { run: echo }", with: "a: { run: echo, serve: true }"))
        #expect(echo.contains("nodes.a.serve: unknown key for a 'echo' node"))
    }

    @Test func sizesNeedAUnit() {
        #expect(ByteSizes.parse(.string("512MB")) == 512_000_000)
        #expect(ByteSizes.parse(.string("1.5 GiB")) == 1_610_612_736)
        #expect(ByteSizes.parse(.string("64kib")) == 65_536)
        #expect(ByteSizes.parse(.string("512")) == nil)
        #expect(ByteSizes.parse(.int(512)) == nil)
        #expect(ByteSizes.parse(.string("lots")) == nil)
    }

    @Test func badDurationIsNamed() {
        let e = problems(Self.base.replacingOccurrences(of: "a: { run: echo }", with: "a: { run: echo, timeout: 3 weeks }"))
        #expect(e.contains("nodes.a.timeout"))
        #expect(e.contains("not a duration"))
    }

    @Test func routeCaseToNowhereIsNamed() {
        let text = Self.base.replacingOccurrences(of: "  - { from: a, to: b }", with: "  - from: a\n    route: { on: status, cases: { ok: b, bad: nowhere } }")
        let e = problems(text)
        #expect(e.contains("edges[1].route.cases.bad"))
        #expect(e.contains("routes to nowhere"))
    }

    @Test func unreachableEndIsReported() {
        let text = Self.base.replacingOccurrences(of: "  - { from: b, to: END }", with: "  - { from: b, to: a }")
        let e = problems(text)
        #expect(e.contains("unreachable END"))
    }

    @Test func unreachableNodeAndUnknownKindAndKeys() {
        var text = Self.base.replacingOccurrences(of: "b: { run: echo }", with: "b: { run: echo }\n  c: { run: teleport, colour: red }")
        text = text.replacingOccurrences(of: "name: t", with: "name: t\nnods: {}")
        let e = problems(text)
        #expect(e.contains("unknown node kind 'teleport'"))
        #expect(e.contains("nods: unknown key"))
        #expect(e.contains("problems"))
    }

    @Test func echoWritingAnUndeclaredChannelIsRefused() {
        let e = problems(Self.base.replacingOccurrences(of: "a: { run: echo }", with: "a: { run: echo, writes: { nope: 1 } }"))
        #expect(e.contains("nodes.a.writes.nope"))
    }

    @Test func malformedYAMLIsAClearError() {
        let e = problems("name: [unclosed\nnodes: {")
        #expect(e.contains("bad.yaml"))
        #expect(e.contains("not valid YAML or JSON"))
    }

    @Test func rendersDotAndMermaid() throws {
        let g = try GraphParser.parse(file: "video.yaml", text: Self.video)
        let dot = GraphRenderer.render(g, format: .dot)
        #expect(dot.hasPrefix("digraph \"video-production\""))
        #expect(dot.contains("\"screenplay\" -> \"shots\" [label=\"status=ok\", style=dashed];"))
        #expect(dot.contains("\"shots\" -> \"render_shot\""))
        let mermaid = GraphRenderer.render(g, format: .mermaid)
        #expect(mermaid.hasPrefix("flowchart TD"))
        #expect(mermaid.contains("START --> n_initialize"))
        #expect(mermaid.contains("n_finalize --> END"))
    }
}
