/// What one attempt of a task reports about itself besides its writes: what it cost, the API
/// calls it made, and the assets it produced. A node program puts these in its result line
/// (`metrics`, `api_calls`, `assets`); a Swift handler in its `NodeOutput`. The worker checks
/// them and sends them as JSON beside the result; the coordinator stores them with the attempt.
///
/// `cost`, `api_calls`, `tokens_in` and `tokens_out` are the well-known metrics. When a result
/// gives an `api_calls` log but not the metric, the metric follows from the log: its length,
/// and its entries' cost and tokens summed. Any other numeric metric is kept by name.
public struct TaskRecords: Sendable, Equatable {
    public var cost: Double = 0
    public var apiCalls: Int = 0
    public var tokensIn: Int = 0
    public var tokensOut: Int = 0
    /// Every other numeric metric, by name.
    public var metrics: [String: Double] = [:]
    public var apiCallLog: [APICall] = []
    public var assets: [Asset] = []

    public init() {}

    public var isEmpty: Bool {
        cost == 0 && apiCalls == 0 && tokensIn == 0 && tokensOut == 0 && metrics.isEmpty && apiCallLog.isEmpty && assets.isEmpty
    }

    /// Beyond the two figures every attempt has room for (cost and calls).
    public var hasDetail: Bool { tokensIn != 0 || tokensOut != 0 || !metrics.isEmpty || !apiCallLog.isEmpty || !assets.isEmpty }

    public struct APICall: Sendable, Equatable {
        public var provider: String
        public var model: String
        public var operation: String
        public var tokensIn: Int
        public var tokensOut: Int
        public var cost: Double
        public var latencyMS: Double
        /// `ok`, `error`, an HTTP status, …: whatever the node says.
        public var status: String

        public init(provider: String, model: String = "", operation: String = "", tokensIn: Int = 0, tokensOut: Int = 0,
                    cost: Double = 0, latencyMS: Double = 0, status: String = "ok") {
            self.provider = provider; self.model = model; self.operation = operation; self.tokensIn = tokensIn
            self.tokensOut = tokensOut; self.cost = cost; self.latencyMS = latencyMS; self.status = status
        }
    }

    public struct Asset: Sendable, Equatable {
        public var name: String
        public var kind: String
        public var uri: String
        public var bytes: Int64?
        /// Hex SHA-256 of the asset's content, when the node knows it.
        public var sha256: String?
        public var meta: JSONValue?

        public init(name: String, kind: String = "", uri: String, bytes: Int64? = nil, sha256: String? = nil, meta: JSONValue? = nil) {
            self.name = name; self.kind = kind; self.uri = uri; self.bytes = bytes; self.sha256 = sha256; self.meta = meta
        }
    }

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(_ d: String) { description = d }
    }

    public static let maxAPICalls = 10_000
    public static let maxAssets = 10_000

    /// Reads what a result line or a handler reported, checking every field. Nothing here is
    /// guessed: a field of the wrong type is an error naming it.
    public static func parse(metrics: JSONValue?, apiCalls: JSONValue?, assets: JSONValue?) throws -> TaskRecords {
        var r = TaskRecords()
        var given = Set<String>()
        if let metrics, !metrics.isNull {
            guard case .object(let o) = metrics else { throw Invalid("'metrics' must be an object of name to number, not \(metrics.kindName)") }
            for (name, v) in o {
                guard let d = v.doubleValue, d.isFinite else { throw Invalid("metric '\(name)' must be a number, not \(v.kindName)") }
                given.insert(name)
                switch name {
                case "cost": r.cost = d
                case "api_calls", "tokens_in", "tokens_out":
                    guard let i = v.intValue, i >= 0, i <= Int64(Int32.max) else {
                        throw Invalid("metric '\(name)' must be a whole number ≥ 0, not \(d)")
                    }
                    switch name {
                    case "api_calls": r.apiCalls = Int(i)
                    case "tokens_in": r.tokensIn = Int(i)
                    default: r.tokensOut = Int(i)
                    }
                default:
                    guard name.utf8.count <= 100, !name.isEmpty else { throw Invalid("a metric's name must be 1 to 100 bytes") }
                    r.metrics[name] = d
                }
            }
        }
        if let apiCalls, !apiCalls.isNull {
            guard case .array(let a) = apiCalls else { throw Invalid("'api_calls' must be a list of calls, not \(apiCalls.kindName)") }
            guard a.count <= maxAPICalls else { throw Invalid("'api_calls' has \(a.count) entries (at most \(maxAPICalls))") }
            for (i, e) in a.enumerated() {
                let at = "api_calls[\(i)]"
                guard case .object(let o) = e else { throw Invalid("\(at) must be an object, not \(e.kindName)") }
                let known: Set<String> = ["provider", "model", "operation", "tokens_in", "tokens_out", "cost", "latency_ms", "status"]
                if let bad = o.keys.sorted().first(where: { !known.contains($0) }) {
                    throw Invalid("\(at) has an unknown field '\(bad)' (known: \(known.sorted().joined(separator: ", ")))")
                }
                r.apiCallLog.append(APICall(
                    provider: try text(o["provider"], "\(at).provider", required: true),
                    model: try text(o["model"], "\(at).model"), operation: try text(o["operation"], "\(at).operation"),
                    tokensIn: try count(o["tokens_in"], "\(at).tokens_in"), tokensOut: try count(o["tokens_out"], "\(at).tokens_out"),
                    cost: try number(o["cost"], "\(at).cost"), latencyMS: try number(o["latency_ms"], "\(at).latency_ms"),
                    status: o["status"].map { $0.stringValue ?? $0.routeKey } ?? "ok"))
            }
            if !given.contains("api_calls") { r.apiCalls = r.apiCallLog.count }
            if !given.contains("cost") { r.cost = r.apiCallLog.reduce(0) { $0 + $1.cost } }
            if !given.contains("tokens_in") { r.tokensIn = r.apiCallLog.reduce(0) { $0 + $1.tokensIn } }
            if !given.contains("tokens_out") { r.tokensOut = r.apiCallLog.reduce(0) { $0 + $1.tokensOut } }
        }
        if let assets, !assets.isNull {
            guard case .array(let a) = assets else { throw Invalid("'assets' must be a list, not \(assets.kindName)") }
            guard a.count <= maxAssets else { throw Invalid("'assets' has \(a.count) entries (at most \(maxAssets))") }
            for (i, e) in a.enumerated() {
                let at = "assets[\(i)]"
                guard case .object(let o) = e else { throw Invalid("\(at) must be an object, not \(e.kindName)") }
                let known: Set<String> = ["name", "kind", "uri", "bytes", "sha256", "meta"]
                if let bad = o.keys.sorted().first(where: { !known.contains($0) }) {
                    throw Invalid("\(at) has an unknown field '\(bad)' (known: \(known.sorted().joined(separator: ", ")))")
                }
                let uri = try text(o["uri"], "\(at).uri", required: true)
                var sha: String?
                if let s = o["sha256"], !s.isNull {
                    guard let hex = s.stringValue?.lowercased(), hex.count == 64, hex.allSatisfy(\.isHexDigit) else {
                        throw Invalid("\(at).sha256 must be 64 hex digits")
                    }
                    sha = hex
                }
                var bytes: Int64?
                if let b = o["bytes"], !b.isNull {
                    guard let n = b.intValue, n >= 0 else { throw Invalid("\(at).bytes must be a whole number ≥ 0") }
                    bytes = n
                }
                let name = try text(o["name"], "\(at).name")
                r.assets.append(Asset(name: name.isEmpty ? uri : name, kind: try text(o["kind"], "\(at).kind"), uri: uri,
                                      bytes: bytes, sha256: sha, meta: o["meta"].flatMap { $0.isNull ? nil : $0 }))
            }
        }
        return r
    }

    /// `{"metrics": …, "api_calls": […], "assets": […]}`, the parts that are not empty; `parse`
    /// reads it back as it was.
    public func json() -> JSONValue {
        var o: [String: JSONValue] = [:]
        var m: [String: JSONValue] = metrics.mapValues { .double($0) }
        if cost != 0 { m["cost"] = .double(cost) }
        if apiCalls != 0 || !apiCallLog.isEmpty { m["api_calls"] = .int(Int64(apiCalls)) }
        if tokensIn != 0 || !apiCallLog.isEmpty { m["tokens_in"] = .int(Int64(tokensIn)) }
        if tokensOut != 0 || !apiCallLog.isEmpty { m["tokens_out"] = .int(Int64(tokensOut)) }
        if !apiCallLog.isEmpty { m["cost"] = .double(cost) }
        if !m.isEmpty { o["metrics"] = .object(m) }
        if !apiCallLog.isEmpty {
            o["api_calls"] = .array(apiCallLog.map { c in
                .object(["provider": .string(c.provider), "model": .string(c.model), "operation": .string(c.operation),
                         "tokens_in": .int(Int64(c.tokensIn)), "tokens_out": .int(Int64(c.tokensOut)), "cost": .double(c.cost),
                         "latency_ms": .double(c.latencyMS), "status": .string(c.status)])
            })
        }
        if !assets.isEmpty {
            o["assets"] = .array(assets.map { a in
                var e: [String: JSONValue] = ["name": .string(a.name), "kind": .string(a.kind), "uri": .string(a.uri)]
                if let b = a.bytes { e["bytes"] = .int(b) }
                if let s = a.sha256 { e["sha256"] = .string(s) }
                if let m = a.meta { e["meta"] = m }
                return .object(e)
            })
        }
        return .object(o)
    }

    public static func parse(json: JSONValue) throws -> TaskRecords {
        try parse(metrics: json["metrics"], apiCalls: json["api_calls"], assets: json["assets"])
    }

    private static func text(_ v: JSONValue?, _ field: String, required: Bool = false) throws -> String {
        guard let v, !v.isNull else {
            if required { throw Invalid("\(field) is required") }
            return ""
        }
        guard let s = v.stringValue else { throw Invalid("\(field) must be a string, not \(v.kindName)") }
        guard s.utf8.count <= 4096 else { throw Invalid("\(field) is longer than 4096 bytes") }
        if required && s.isEmpty { throw Invalid("\(field) must not be empty") }
        return s
    }

    private static func number(_ v: JSONValue?, _ field: String) throws -> Double {
        guard let v, !v.isNull else { return 0 }
        guard let d = v.doubleValue, d.isFinite else { throw Invalid("\(field) must be a number, not \(v.kindName)") }
        return d
    }

    private static func count(_ v: JSONValue?, _ field: String) throws -> Int {
        guard let v, !v.isNull else { return 0 }
        guard let i = v.intValue, i >= 0, i <= Int64(Int32.max) else { throw Invalid("\(field) must be a whole number ≥ 0") }
        return Int(i)
    }
}

/// Something that carries an attempt's records: its cost and API-call count read through them.
public protocol CarriesTaskRecords {
    var records: TaskRecords { get set }
}

extension CarriesTaskRecords {
    public var cost: Double {
        get { records.cost }
        set { records.cost = newValue }
    }
    public var apiCalls: Int {
        get { records.apiCalls }
        set { records.apiCalls = newValue }
    }
}
