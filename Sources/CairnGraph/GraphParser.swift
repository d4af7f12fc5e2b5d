import CairnCore
import Foundation
import Yams

/// A problem in a graph file, naming the file, where in it, and what is wrong.
public struct GraphIssue: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Every problem found in one graph file.
public struct GraphError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var issues: [GraphIssue]

    public var description: String {
        if issues.count == 1 { return "\(file): \(issues[0])" }
        return "\(file): \(issues.count) problems\n" + issues.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// Reads graph files (YAML or JSON) into validated `Graph`s.
public enum GraphParser {
    static let commonNodeKeys: Set<String> = ["run", "retry", "timeout", "description", "with"]
    static let topKeys: Set<String> = ["name", "version", "description", "state", "nodes", "edges",
                                       "interrupt_before", "interrupt_after", "limits"]

    public static func parse(file: String, text: String, customKinds: Set<String> = []) throws -> Graph {
        let doc: JSONValue
        do {
            doc = try decodeDocument(file: file, text: text)
        } catch let e as GraphError {
            throw e
        } catch {
            throw GraphError(file: file, issues: [GraphIssue(path: "", message: "not valid YAML or JSON: \(error)")])
        }
        var v = Validator(customKinds: customKinds)
        let graph = v.build(doc)
        if !v.issues.isEmpty || graph == nil {
            throw GraphError(file: file, issues: v.issues)
        }
        return graph!
    }

    static func decodeDocument(file: String, text: String) throws -> JSONValue {
        let trimmed = text.drop(while: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
        if file.hasSuffix(".json") || trimmed.first == "{" {
            return try JSONValue.parse(text)
        }
        guard let node = try Yams.compose(yaml: text) else {
            throw GraphError(file: file, issues: [GraphIssue(path: "", message: "the file is empty")])
        }
        return try yamlToJSON(node)
    }

    static func yamlToJSON(_ node: Node) throws -> JSONValue {
        switch node {
        case .scalar(let s):
            switch node.tag.description {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return .bool(node.bool ?? false)
            case Tag.Name.int.rawValue:
                if let i = node.int { return .int(Int64(i)) }
                return .string(s.string)
            case Tag.Name.float.rawValue:
                if let d = node.float { return .double(d) }
                return .string(s.string)
            default: return .string(s.string)
            }
        case .sequence(let seq):
            return .array(try seq.map { try yamlToJSON($0) })
        case .mapping(let map):
            var out: [String: JSONValue] = [:]
            for (k, v) in map {
                guard let key = k.string else { throw JSONValueError.invalid("mapping keys must be strings") }
                out[key] = try yamlToJSON(v)
            }
            return .object(out)
        case .alias:
            throw JSONValueError.invalid("YAML aliases are not supported")
        }
    }
}

/// Builds a `Graph` from a decoded document, collecting every issue instead of stopping at the first.
struct Validator {
    var customKinds: Set<String>
    var issues: [GraphIssue] = []

    init(customKinds: Set<String>) { self.customKinds = customKinds }

    mutating func issue(_ path: String, _ message: String) {
        issues.append(GraphIssue(path: path, message: message))
    }

    mutating func duration(_ value: JSONValue?, _ path: String) -> Int64? {
        guard let value else { return nil }
        switch value {
        case .string(let s):
            if let ms = Durations.parseMillis(s) { return ms }
        case .int(let i) where i >= 0: return i * 1000
        case .double(let d) where d >= 0: return Int64(d * 1000)
        default: break
        }
        issue(path, "'\(value.routeKey)' is not a duration (write it like 500ms, 30s, 5m or 1h)")
        return nil
    }

    mutating func build(_ doc: JSONValue) -> Graph? {
        guard case .object(let top) = doc else {
            issue("", "a graph file must be a mapping with name, state, nodes and edges")
            return nil
        }
        for key in top.keys.sorted() where !GraphParser.topKeys.contains(key) {
            issue(key, "unknown key (expected one of: \(GraphParser.topKeys.sorted().joined(separator: ", ")))")
        }
        var graph = Graph(name: "", version: 1, channels: [:], nodes: [:], edges: [],
                          interruptBefore: [], interruptAfter: [], limits: Limits())
        if let name = top["name"]?.stringValue, !name.isEmpty {
            graph.name = name
        } else {
            issue("name", "every graph needs a name")
        }
        if let v = top["version"] {
            if let i = v.intValue { graph.version = Int(i) } else { issue("version", "must be a whole number") }
        }
        parseChannels(top["state"], into: &graph)
        parseNodes(top["nodes"], into: &graph)
        parseEdges(top["edges"], into: &graph)
        graph.interruptBefore = interruptList(top["interrupt_before"], "interrupt_before", &graph)
        graph.interruptAfter = interruptList(top["interrupt_after"], "interrupt_after", &graph)
        parseLimits(top["limits"], into: &graph)
        checkNodeReferences(graph)
        checkReachability(graph)
        return issues.isEmpty ? graph : nil
    }

    mutating func parseChannels(_ value: JSONValue?, into graph: inout Graph) {
        guard let value else { return }
        guard case .object(let channels) = value else { issue("state", "must be a mapping of channel names"); return }
        for (name, spec) in channels.sorted(by: { $0.key < $1.key }) {
            let path = "state.\(name)"
            var reducer = Reducer.replace
            var defaultValue: JSONValue?
            switch spec {
            case .null: break
            case .object(let o):
                for k in o.keys.sorted() where k != "reducer" && k != "default" && k != "description" {
                    issue("\(path).\(k)", "unknown key (a channel takes reducer, default)")
                }
                if let r = o["reducer"] {
                    if let rs = r.stringValue, let known = Reducer(rawValue: rs) {
                        reducer = known
                    } else {
                        issue("\(path).reducer", "unknown reducer '\(r.routeKey)' (use one of: \(Reducer.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                }
                defaultValue = o["default"]
            default:
                issue(path, "must be a mapping like { reducer: append, default: [] }")
            }
            if let d = defaultValue {
                switch (reducer, d) {
                case (.append, .array), (.merge, .object), (.sum, .int), (.sum, .double), (.replace, _): break
                default: issue("\(path).default", "\(d.kindName) does not suit reducer '\(reducer.rawValue)'")
                }
            }
            graph.channels[name] = ChannelSpec(name: name, reducer: reducer, defaultValue: defaultValue)
        }
    }

    mutating func parseNodes(_ value: JSONValue?, into graph: inout Graph) {
        guard case .object(let nodes)? = value, !nodes.isEmpty else {
            issue("nodes", "a graph needs at least one node")
            return
        }
        for (name, spec) in nodes.sorted(by: { $0.key < $1.key }) {
            let path = "nodes.\(name)"
            if name == Graph.start || name == Graph.end { issue(path, "'\(name)' is reserved"); continue }
            guard case .object(let o) = spec else { issue(path, "must be a mapping like { run: echo }"); continue }
            guard let kind = o["run"]?.stringValue else {
                issue("\(path).run", "every node needs 'run' (one of: \(NodeKinds.builtin.keys.sorted().joined(separator: ", ")))")
                continue
            }
            var node = NodeSpec(name: name, kind: kind, config: spec, retry: RetryPolicy(), timeoutMS: nil)
            if let allowed = NodeKinds.builtin[kind] {
                for k in o.keys.sorted() where !allowed.contains(k) && !GraphParser.commonNodeKeys.contains(k) {
                    issue("\(path).\(k)", "unknown key for a '\(kind)' node (it takes: \((allowed.union(GraphParser.commonNodeKeys)).sorted().joined(separator: ", ")))")
                }
                checkKindConfig(kind: kind, o, path: path, graph: graph)
            } else if !customKinds.contains(kind) && !customKinds.contains("*") && !kind.contains(".") {
                issue("\(path).run", "unknown node kind '\(kind)' (built in: \(NodeKinds.builtin.keys.sorted().joined(separator: ", ")); a Swift handler's kind must be registered by a worker)")
            }
            if let w = o["with"], w.objectValue == nil { issue("\(path).with", "must be a mapping of parameter names to values") }
            if let r = o["reads"], NodeKinds.builtin[kind] == nil || kind == "exec" {
                if case .array(let names) = r, names.allSatisfy({ $0.stringValue != nil }) {
                    for n in names.compactMap(\.stringValue) where graph.channels[n] == nil {
                        issue("\(path).reads", "reads '\(n)', which is not a channel in 'state'")
                    }
                } else {
                    issue("\(path).reads", "must be a list of channel names, like [messages, topic]")
                }
            }
            node.timeoutMS = duration(o["timeout"], "\(path).timeout")
            if let r = o["retry"] { node.retry = parseRetry(r, "\(path).retry") }
            graph.nodes[name] = node
        }
    }

    mutating func checkKindConfig(kind: String, _ o: [String: JSONValue], path: String, graph: Graph) {
        switch kind {
        case "exec":
            switch o["command"] {
            case .array(let parts)? where !parts.isEmpty && parts.allSatisfy({ $0.stringValue != nil }): break
            case .string(let s)? where !s.isEmpty: break
            default: issue("\(path).command", "an exec node needs 'command', a list like [\"python3\", \"./node.py\"]")
            }
            switch o["serve"] {
            case nil, .bool?: break
            case .object(let so)?:
                for k in so.keys.sorted() where k != "max_tasks" && k != "max_memory" {
                    issue("\(path).serve.\(k)", "unknown key (serve takes max_tasks, max_memory)")
                }
                if let m = so["max_tasks"], (m.intValue ?? 0) < 1 { issue("\(path).serve.max_tasks", "must be a whole number of at least 1") }
                if let m = so["max_memory"], ByteSizes.parse(m) == nil { issue("\(path).serve.max_memory", "must be a size with a unit, like 512MB") }
            default: issue("\(path).serve", "must be true, false, or a mapping {max_tasks, max_memory}")
            }
        case "echo", "sleep", "flaky":
            if let w = o["writes"] {
                if case .object(let writes) = w {
                    for ch in writes.keys.sorted() where graph.channels[ch] == nil {
                        issue("\(path).writes.\(ch)", "writes to '\(ch)', which is not a channel in 'state'")
                    }
                } else {
                    issue("\(path).writes", "must be a mapping of channel to value")
                }
            }
            if kind == "sleep" {
                if o["duration"] == nil { issue("\(path).duration", "a sleep node needs 'duration'") }
                _ = duration(o["duration"], "\(path).duration")
            }
            if kind == "flaky", let f = o["failures"], f.intValue == nil {
                issue("\(path).failures", "must be a whole number")
            }
        case "map":
            if let over = o["over"]?.stringValue {
                if graph.channels[over] == nil { issue("\(path).over", "'\(over)' is not a channel in 'state'") }
            } else {
                issue("\(path).over", "a map node needs 'over', the list channel to fan out over")
            }
            if o["to"]?.stringValue == nil { issue("\(path).to", "a map node needs 'to', the node to run per item") }
        default: break
        }
    }

    mutating func parseRetry(_ value: JSONValue, _ path: String) -> RetryPolicy {
        var r = RetryPolicy()
        guard case .object(let o) = value else { issue(path, "must be a mapping like { max_attempts: 3 }"); return r }
        let known: Set<String> = ["max_attempts", "initial_interval", "backoff", "max_interval", "jitter", "non_retryable"]
        for k in o.keys.sorted() where !known.contains(k) {
            issue("\(path).\(k)", "unknown key (retry takes: \(known.sorted().joined(separator: ", ")))")
        }
        if let m = o["max_attempts"] {
            if let i = m.intValue, i >= 1, i <= 1000 { r.maxAttempts = Int(i) } else { issue("\(path).max_attempts", "must be a whole number from 1 to 1000") }
        }
        if let ms = duration(o["initial_interval"], "\(path).initial_interval") { r.initialIntervalMS = ms }
        if let ms = duration(o["max_interval"], "\(path).max_interval") { r.maxIntervalMS = ms }
        if let b = o["backoff"] {
            if let d = b.doubleValue, d >= 1 { r.backoff = d } else { issue("\(path).backoff", "must be a number ≥ 1") }
        }
        if let j = o["jitter"] {
            if let b = j.boolValue { r.jitter = b } else { issue("\(path).jitter", "must be true or false") }
        }
        if let n = o["non_retryable"] {
            if let a = n.arrayValue, a.allSatisfy({ $0.stringValue != nil }) { r.nonRetryable = a.compactMap(\.stringValue) }
            else { issue("\(path).non_retryable", "must be a list of error kinds") }
        }
        return r
    }

    func isNodeOrEnd(_ name: String, _ graph: Graph) -> Bool { name == Graph.end || graph.nodes[name] != nil }

    mutating func target(_ value: JSONValue?, _ path: String, _ graph: Graph) -> [String] {
        switch value {
        case .string(let s)?:
            if !isNodeOrEnd(s, graph) { issue(path, unknownNode(s, graph)) }
            return [s]
        case .array(let a)? where !a.isEmpty && a.allSatisfy({ $0.stringValue != nil }):
            let names = a.compactMap(\.stringValue)
            for n in names where !isNodeOrEnd(n, graph) { issue(path, unknownNode(n, graph)) }
            return names
        default:
            issue(path, "must name a node, a list of nodes, or END")
            return []
        }
    }

    func unknownNode(_ name: String, _ graph: Graph) -> String {
        if name == Graph.start { return "START can only be an edge's 'from'" }
        let close = graph.nodes.keys.map { ($0, editDistance($0, name)) }.filter { $0.1 <= 2 }
            .sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map(\.0)
        return "unknown node '\(name)'" + (close.isEmpty ? "" : " (did you mean '\(close[0])'?)")
    }

    mutating func parseEdges(_ value: JSONValue?, into graph: inout Graph) {
        guard case .array(let edges)? = value, !edges.isEmpty else {
            issue("edges", "a graph needs edges, starting with { from: START, to: <node> }")
            return
        }
        for (i, e) in edges.enumerated() {
            let path = "edges[\(i)]"
            guard case .object(let o) = e else { issue(path, "must be a mapping like { from: a, to: b }"); continue }
            for k in o.keys.sorted() where !["from", "to", "route"].contains(k) {
                issue("\(path).\(k)", "unknown key (an edge takes from, to, route)")
            }
            let froms: [String]
            var isJoin = false
            switch o["from"] {
            case .string(let s)?: froms = [s]
            case .array(let a)? where !a.isEmpty && a.allSatisfy({ $0.stringValue != nil }):
                froms = a.compactMap(\.stringValue); isJoin = true
            default:
                issue("\(path).from", "every edge needs 'from': a node, START, or a list of nodes to join")
                continue
            }
            for f in froms where f != Graph.start && graph.nodes[f] == nil {
                issue("\(path).from", f == Graph.end ? "END cannot be an edge's 'from'" : unknownNode(f, graph))
            }
            if isJoin && froms.contains(Graph.start) { issue("\(path).from", "START cannot be part of a join") }
            if let route = o["route"] {
                if o["to"] != nil { issue(path, "an edge has either 'to' or 'route', not both") }
                if isJoin { issue("\(path).route", "a route needs a single 'from' node") }
                guard case .object(let r) = route, let on = r["on"]?.stringValue else {
                    issue("\(path).route", "must be a mapping like { on: status, cases: { ok: next }, default: END }")
                    continue
                }
                if graph.channels[on] == nil { issue("\(path).route.on", "'\(on)' is not a channel in 'state'") }
                var cases: [String: String] = [:]
                if case .object(let c)? = r["cases"] {
                    for (k, v) in c.sorted(by: { $0.key < $1.key }) {
                        guard let t = v.stringValue else { issue("\(path).route.cases.\(k)", "must name a node or END"); continue }
                        if !isNodeOrEnd(t, graph) { issue("\(path).route.cases.\(k)", "routes to nowhere: " + unknownNode(t, graph)) }
                        cases[k] = t
                    }
                } else {
                    issue("\(path).route.cases", "a route needs 'cases', a mapping of value to node")
                }
                var def: String?
                if let d = r["default"] {
                    if let t = d.stringValue {
                        if !isNodeOrEnd(t, graph) { issue("\(path).route.default", "routes to nowhere: " + unknownNode(t, graph)) }
                        def = t
                    } else { issue("\(path).route.default", "must name a node or END") }
                }
                graph.edges.append(.route(from: froms[0], on: on, cases: cases, defaultTarget: def))
            } else {
                let to = target(o["to"], "\(path).to", graph)
                if isJoin {
                    if to.count != 1 { issue("\(path).to", "a join leads to exactly one node") } else {
                        graph.edges.append(.join(from: froms, to: to[0]))
                    }
                } else {
                    graph.edges.append(.direct(from: froms[0], to: to))
                }
            }
        }
    }

    /// `[approve, {node: publish, timeout: 24h, on_timeout: fail}]`: node names, or a node with a
    /// deadline (`on_timeout`: `fail`, or `{resume: VALUE}` to go on as if answered with VALUE).
    mutating func interruptList(_ value: JSONValue?, _ path: String, _ graph: inout Graph) -> Set<String> {
        guard let value else { return [] }
        guard let a = value.arrayValue else { issue(path, "must be a list of node names (or {node, timeout, on_timeout})"); return [] }
        var out = Set<String>()
        for (i, item) in a.enumerated() {
            let at = "\(path)[\(i)]"
            var name: String?
            switch item {
            case .string(let n): name = n
            case .object(let o):
                for k in o.keys.sorted() where !["node", "timeout", "on_timeout"].contains(k) {
                    issue("\(at).\(k)", "unknown key (an interrupt takes node, timeout, on_timeout)")
                }
                guard let n = o["node"]?.stringValue else { issue(at, "needs a node"); continue }
                name = n
                guard let timeout = o["timeout"] else {
                    if o["on_timeout"] != nil { issue("\(at).on_timeout", "needs a timeout") }
                    break
                }
                guard let ms = duration(timeout, "\(at).timeout") else { continue }
                guard ms > 0 else { issue("\(at).timeout", "must be longer than 0"); continue }
                var onTimeout = InterruptDeadline.OnTimeout.fail
                switch o["on_timeout"] {
                case nil, .string("fail")?: break
                case .object(let r)? where r.count == 1 && r["resume"] != nil: onTimeout = .resume(r["resume"]!)
                default: issue("\(at).on_timeout", "must be fail or {resume: VALUE}"); continue
                }
                if graph.nodes[n] != nil { graph.interruptDeadlines["\(path):\(n)"] = InterruptDeadline(timeoutMS: ms, onTimeout: onTimeout) }
            default:
                issue(at, "must be a node name or {node, timeout, on_timeout}")
            }
            if let n = name {
                if graph.nodes[n] == nil { issue(at, unknownNode(n, graph)) } else { out.insert(n) }
            }
        }
        return out
    }

    mutating func parseLimits(_ value: JSONValue?, into graph: inout Graph) {
        guard let value else { return }
        guard case .object(let o) = value else { issue("limits", "must be a mapping like { max_steps: 200 }"); return }
        for k in o.keys.sorted() where k != "max_steps" && k != "max_tasks_per_step" {
            issue("limits.\(k)", "unknown key (limits take max_steps, max_tasks_per_step)")
        }
        if let m = o["max_steps"] {
            if let i = m.intValue, i >= 1 { graph.limits.maxSteps = Int(i) } else { issue("limits.max_steps", "must be a whole number ≥ 1") }
        }
        if let m = o["max_tasks_per_step"] {
            if let i = m.intValue, i >= 1, i <= 1_000_000 { graph.limits.maxTasksPerStep = Int(i) } else { issue("limits.max_tasks_per_step", "must be a whole number from 1 to 1000000") }
        }
    }

    mutating func checkNodeReferences(_ graph: Graph) {
        for node in graph.nodes.values where node.kind == "map" {
            if let to = node.config["to"]?.stringValue, graph.nodes[to] == nil {
                issue("nodes.\(node.name).to", unknownNode(to, graph))
            }
        }
    }

    /// START must lead somewhere, every node must be reachable, and END must be reachable.
    mutating func checkReachability(_ graph: Graph) {
        guard issues.isEmpty else { return }
        var successors: [String: Set<String>] = [:]
        for edge in graph.edges {
            for s in edge.sources { successors[s, default: []].formUnion(edge.targets) }
        }
        for node in graph.nodes.values where node.kind == "map" {
            if let to = node.config["to"]?.stringValue { successors[node.name, default: []].insert(to) }
        }
        // exec and Swift handlers may route anywhere at run time (goto, sends).
        let everywhere = Set(graph.nodeNames).union([Graph.end])
        for node in graph.nodes.values where NodeKinds.builtin[node.kind] == nil || node.kind == "exec" {
            successors[node.name, default: []].formUnion(everywhere)
        }
        guard let first = successors[Graph.start], !first.isEmpty else {
            issue("edges", "nothing starts: add an edge { from: START, to: <node> }")
            return
        }
        var seen: Set<String> = [Graph.start]
        var frontier = [Graph.start]
        while let n = frontier.popLast() {
            for s in successors[n, default: []] where !seen.contains(s) {
                seen.insert(s); frontier.append(s)
            }
        }
        for name in graph.nodeNames where !seen.contains(name) {
            issue("nodes.\(name)", "unreachable: no edge leads to it from START")
        }
        // A node with no way out ends the run when it finishes, exactly like an edge to END.
        let dangling = graph.nodeNames.filter { seen.contains($0) && successors[$0, default: []].isEmpty }
        if !seen.contains(Graph.end) && dangling.isEmpty {
            issue("edges", "unreachable END: no path from START ends the run (add an edge to END)")
        }
    }
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}
