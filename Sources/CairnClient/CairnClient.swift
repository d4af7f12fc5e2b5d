import CairnCore
import CairnProtocol
import CairnTLS
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftProtobuf

/// Where and how to reach a coordinator.
public struct ClientConfig: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 7400
    /// More coordinators of the same store (standbys): tried in turn when one cannot be reached.
    public var others: [(host: String, port: Int)] = []
    public var token: String?
    public var connectTimeout: Double = 5
    /// How long a coordinator that accepted the connection may take to say anything: one that
    /// never does (frozen, wedged) is given up, and with standbys the next one is asked.
    public var answerTimeout: Double = 5
    public var maxFrameSize: Int = Frame.defaultMaxSize
    /// TLS to the coordinator (`--tls-ca`, and `--tls-cert`/`--tls-key` for mutual TLS); nil: plaintext.
    public var tls: TLSFiles?

    public init() {}

    /// Parses `HOST:PORT` (or `HOST`, or `:PORT`).
    public static func parseAddress(_ text: String, defaultPort: Int = 7400) -> (host: String, port: Int)? {
        var t = text
        if t.hasPrefix("tcp://") { t.removeFirst(6) }
        guard let colon = t.lastIndex(of: ":") else { return t.isEmpty ? nil : (t, defaultPort) }
        let host = String(t[..<colon])
        guard let port = Int(t[t.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// A comma-separated list of addresses (standby coordinators), or nil when any is malformed.
    public static func parseAddresses(_ text: String, defaultPort: Int = 7400) -> [(host: String, port: Int)]? {
        let parts = text.split(separator: ",").map { parseAddress($0.trimmingCharacters(in: .whitespaces), defaultPort: defaultPort) }
        guard !parts.isEmpty, !parts.contains(where: { $0 == nil }) else { return nil }
        return parts.compactMap { $0 }
    }
}

/// A failure talking to the coordinator, phrased for a person.
public enum ClientError: Error, CustomStringConvertible {
    case unreachable(address: String, reason: String)
    case rejected(code: Cairn_V1_ErrorCode, message: String)
    case server(code: Cairn_V1_ErrorCode, message: String)
    case protocolError(String)
    /// TLS could not be set up or its handshake failed: what to do about it, in one line.
    case tls(String)
    /// The coordinator closed the connection during the TLS handshake (stopping or stepping
    /// down just then, or a plaintext port): of several, the next is asked.
    case tlsClosed(address: String, message: String)
    /// An open connection died under us: the coordinator went silent (a partition, a host down) or reset it.
    case lost(address: String, reason: String)
    /// A standby coordinator answered: `leader` is where the active one serves (empty: none leads now).
    case standby(address: String, leader: String)
    /// Of several coordinators, some stand by and the rest cannot be reached: a fail-over under way.
    case failingOver(addresses: String, reasons: String)
    case closed

    public var description: String {
        switch self {
        case .unreachable(let a, let r): return "cannot reach the coordinator at \(a): \(r)"
        case .rejected(_, let m): return "the coordinator refused the connection: \(m)"
        case .server(_, let m): return m
        case .protocolError(let m): return "protocol error: \(m)"
        case .tls(let m): return m
        case .tlsClosed(_, let m): return m
        case .lost(let a, let r): return "lost the connection to the coordinator at \(a): \(r)"
        case .standby(let a, let l):
            return l.isEmpty ? "the coordinator at \(a) stands by, and no coordinator leads right now (one takes over within seconds)"
                             : "the coordinator at \(a) stands by; the active one is at \(l)"
        case .failingOver(let a, let r): return "cannot reach the coordinator at \(a): \(r); the rest stand by"
        case .closed: return "the coordinator closed the connection"
        }
    }

    enum Kind { case failover, noneAnswered, other }

    /// A standby answered and no coordinator served: what a fail-over looks like from outside.
    var kind: Kind {
        switch self {
        case .standby, .failingOver: return .failover
        case .unreachable: return .noneAnswered
        default: return .other
        }
    }

    public var code: Cairn_V1_ErrorCode? {
        switch self {
        case .rejected(let c, _), .server(let c, _): return c
        default: return nil
        }
    }
}

/// A client connection to a coordinator. Use it inside `CairnClient.withConnection`.
public final class CairnClient {
    private var frames: NIOAsyncChannelInboundStream<Frame>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<Frame>
    private let codec = WireCodec()
    private var nextID: UInt64 = 1
    /// Hello is sent and its answer not yet read: the first request goes out behind it without
    /// waiting (one round trip less for every command); the first read checks the answer.
    private var welcomePending = false
    /// The coordinator welcomed this connection: TLS ending uncleanly now is a lost connection.
    private var welcomed = false
    /// Whom this connection reaches, and with which TLS files: for a failed handshake's message.
    let peer: (host: String, port: Int, tls: TLSFiles?)

    init(frames: NIOAsyncChannelInboundStream<Frame>.AsyncIterator, outbound: NIOAsyncChannelOutboundWriter<Frame>,
         peer: (host: String, port: Int, tls: TLSFiles?)) {
        self.frames = frames
        self.outbound = outbound
        self.peer = peer
    }

    /// Connects, says Hello (its answer is read with the first response), runs `body`, and closes.
    /// With standbys (`others`), the first coordinator that can be reached serves.
    public static func withConnection<T: Sendable>(_ config: ClientConfig, _ body: (CairnClient) async throws -> T) async throws -> T {
        // During a fail-over (a standby answered, and no coordinator serves yet: up to 15 s), or
        // with none of several answering at all (the new leader between its standby port and its
        // own: up to 5 s), ask again: a standby takes over within seconds.
        let started = ContinuousClock.now
        while true {
            do {
                return try await withEach(config, body)
            } catch let e as ClientError {
                let waited = started.duration(to: .now)
                switch e.kind {
                case .failover where waited < .seconds(15): break
                case .noneAnswered where !config.others.isEmpty && waited < .seconds(5): break
                default: throw e
                }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    static func withEach<T: Sendable>(_ config: ClientConfig, _ body: (CairnClient) async throws -> T) async throws -> T {
        var queue = [(config.host, config.port)] + config.others
        let several = queue.count > 1
        var tried: [String] = []
        var reasons: [String] = []
        var lastStandby: ClientError?
        while !queue.isEmpty {
            let (host, port) = queue.removeFirst()
            guard !tried.contains("\(host):\(port)") else { continue }
            tried.append("\(host):\(port)")
            var one = config
            (one.host, one.port, one.others) = (host, port, [])
            if several { one.answerTimeout = min(config.answerTimeout, 2) }  // a standby is about to take over: ask it soon
            do {
                return try await withOneConnection(one, body)
            } catch ClientError.unreachable(let address, let reason) where several {
                reasons.append("\(address): \(reason)")
            } catch ClientError.tlsClosed(let address, _) where several {
                reasons.append("\(address): it closed the connection during the TLS handshake")
            } catch ClientError.standby(let address, let leader) {
                // Asked a standby: the active one next (a standby names it), else the rest.
                lastStandby = .standby(address: address, leader: leader)
                if let next = ClientConfig.parseAddress(leader), !tried.contains("\(next.host):\(next.port)") { queue.insert(next, at: 0) }
            }
        }
        if reasons.isEmpty, let lastStandby { throw lastStandby }
        if !several, let lastStandby { throw lastStandby }
        let addresses = "any of " + tried.joined(separator: ", ")
        if lastStandby != nil { throw ClientError.failingOver(addresses: addresses, reasons: reasons.joined(separator: "; ")) }
        throw ClientError.unreachable(address: addresses, reason: reasons.joined(separator: "; "))
    }

    static func withOneConnection<T: Sendable>(_ config: ClientConfig, _ body: (CairnClient) async throws -> T) async throws -> T {
        let address = "\(config.host):\(config.port)"
        let group = MultiThreadedEventLoopGroup.singleton
        let channel: FramedChannel.AsyncChannel
        var tlsContext: NIOSSLContext?
        if let files = config.tls {
            do { tlsContext = try CairnTLS.clientContext(files) } catch { throw ClientError.tls("\(error)") }
        }
        do {
            let maxFrame = config.maxFrameSize
            let host = config.host
            let answerTimeout = config.answerTimeout
            let tls = tlsContext
            channel = try await ClientBootstrap(group: group)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.milliseconds(Int64(config.connectTimeout * 1000)))
                .connect(host: config.host, port: config.port) { (ch: any Channel) -> EventLoopFuture<FramedChannel.AsyncChannel> in
                    // A watch on a coordinator that vanished (a partition) ends within about 11 s.
                    do {
                        try DeadPeer.arm(ch, idle: 5, interval: 2, count: 3, timeout: 10)
                        try ch.pipeline.syncOperations.addHandler(AnswerDeadline(timeout: .milliseconds(Int64(answerTimeout * 1000))))
                    } catch {
                        return ch.eventLoop.makeFailedFuture(error)
                    }
                    if let tls {
                        do { try ch.pipeline.syncOperations.addHandler(try CairnTLS.clientHandler(tls, host: host)) } catch {
                            return ch.eventLoop.makeFailedFuture(error)
                        }
                    }
                    return FramedChannel.configure(ch, maxFrameSize: maxFrame)
                }
        } catch {
            throw ClientError.unreachable(address: address, reason: Self.describe(error))
        }
        return try await channel.executeThenClose { inbound, outbound in
            let client = CairnClient(frames: inbound.makeAsyncIterator(), outbound: outbound, peer: (config.host, config.port, config.tls))
            try await client.handshake(token: config.token)
            return try await body(client)
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("refused") || text.contains("ECONNREFUSED") { return "connection refused (is cairn-coordinator running there?)" }
        if text.contains("timeout") || text.contains("Timeout") { return "timed out" }
        return text
    }

    func handshake(token: String?) async throws {
        var hello = Cairn_V1_Hello()
        hello.protocolVersion = cairnProtocolVersion
        hello.role = .client
        hello.token = token ?? ""
        hello.clientName = "cairn"
        try await outbound.send(.hello(hello), codec: codec)
        welcomePending = true
    }

    func receive() async throws -> WireMessage {
        if welcomePending {
            welcomePending = false
            let first: WireMessage
            do { first = try await receiveFrame() } catch ClientError.closed {
                throw ClientError.unreachable(address: "\(peer.host):\(peer.port)", reason: "it took the connection but did not answer (frozen, wedged or stopping)")
            }
            switch first {
            case .welcome: welcomed = true
            case .error(let e): throw refusal(e)
            case let other: throw ClientError.protocolError("expected Welcome, got \(other.type)")
            }
        }
        return try await receiveFrame()
    }

    private func receiveFrame() async throws -> WireMessage {
        do {
            guard let frame = try await frames.next() else { throw ClientError.closed }
            return try codec.decode(frame)
        } catch let e as ClientError {
            throw e
        } catch {
            // A failed TLS handshake, or TLS on one side only, surfaces at the first read.
            if CairnTLS.closedDuringHandshake(error) {
                // Welcomed: the coordinator went away (killed, or stepping down) without ending TLS.
                if welcomed { throw ClientError.lost(address: "\(peer.host):\(peer.port)", reason: "it closed the connection (did it stop?)") }
                throw ClientError.tlsClosed(address: "\(peer.host):\(peer.port)",
                                            message: CairnTLS.describeClientFailure(error, files: peer.tls ?? TLSFiles(), host: peer.host))
            }
            if CairnTLS.isTLSError(error) {
                throw ClientError.tls(CairnTLS.describeClientFailure(error, files: peer.tls ?? TLSFiles(), host: peer.host))
            }
            if let io = error as? IOError {
                let address = "\(peer.host):\(peer.port)"
                switch io.errnoCode {
                case ETIMEDOUT: throw ClientError.lost(address: address, reason: "no answer for 10s (a network partition, or its host is down)")
                case ECONNRESET, EPIPE: throw ClientError.lost(address: address, reason: "it reset the connection (did it restart?)")
                case EHOSTUNREACH, ENETUNREACH: throw ClientError.lost(address: address, reason: "its network is unreachable")
                default: break
                }
            }
            if let f = error as? FrameError, f.isTLSRecord {
                throw ClientError.tls("the coordinator at \(peer.host):\(peer.port) speaks TLS: pass --tls-ca (or CAIRN_TLS_CA)")
            }
            throw ClientError.protocolError("\(error)")
        }
    }

    /// Sends one request and returns its response.
    public func call(_ body: Cairn_V1_ClientRequest.OneOf_Body) async throws -> Cairn_V1_ClientResponse {
        let id = try await send(body)
        return try await response(for: id)
    }

    /// The coordinator's answer to the Hello when it is not a welcome: a standby naming the
    /// active coordinator (asked next), or a refusal (wrong token, other version). The same
    /// whether it is read as the first response or after a request met the closed connection.
    func refusal(_ e: Cairn_V1_Error) -> ClientError {
        e.code == .errorStandby ? .standby(address: "\(peer.host):\(peer.port)", leader: e.leader) : .rejected(code: e.code, message: e.message)
    }

    func send(_ body: Cairn_V1_ClientRequest.OneOf_Body) async throws -> UInt64 {
        var req = Cairn_V1_ClientRequest()
        req.id = nextID
        nextID += 1
        req.body = body
        do {
            try await outbound.send(.clientRequest(req), codec: codec)
        } catch {
            // A coordinator that refuses the Hello (wrong token, other version) answers and
            // closes; a request already behind the Hello then meets a closed channel. The
            // refusal is what the user needs to see, and it is waiting in the inbound stream.
            if welcomePending, case .error(let e)? = try? await receiveFrame() { throw refusal(e) }
            throw ClientError.closed
        }
        return req.id
    }

    func response(for id: UInt64) async throws -> Cairn_V1_ClientResponse {
        while true {
            switch try await receive() {
            case .clientResponse(let r) where r.id == id: return r
            case .clientResponse: continue
            case .error(let e) where e.requestID == id || e.requestID == 0:
                throw ClientError.server(code: e.code, message: e.message)
            case .error: continue
            case let other: throw ClientError.protocolError("unexpected \(other.type)")
            }
        }
    }

    /// Submits many runs at once: every request is sent before any answer is read, so the
    /// coordinator handles them together. Results come back in the order of `requests`.
    public func submitAll(_ requests: [Cairn_V1_SubmitRequest]) async throws -> [Result<Cairn_V1_RunInfo, ClientError>] {
        var ids: [UInt64] = []
        for r in requests { ids.append(try await send(.submit(r))) }
        var results: [UInt64: Result<Cairn_V1_RunInfo, ClientError>] = [:]
        let wanted = Set(ids)
        while results.count < ids.count {
            switch try await receive() {
            case .clientResponse(let r) where wanted.contains(r.id): results[r.id] = .success(r.run)
            case .error(let e) where wanted.contains(e.requestID): results[e.requestID] = .failure(.server(code: e.code, message: e.message))
            case .error(let e) where e.requestID == 0: throw ClientError.server(code: e.code, message: e.message)
            case .clientResponse, .error: continue
            case let other: throw ClientError.protocolError("unexpected \(other.type)")
            }
        }
        return ids.map { results[$0]! }
    }

    /// Submits many runs and waits for all of them to end, pipelined both ways: every submit is
    /// sent at once, and each run's watch is sent the moment its submit is answered. Results (the
    /// run as it ended, or why it was refused) come back in the order of `requests`.
    public func submitAllAndWait(_ requests: [Cairn_V1_SubmitRequest]) async throws -> [Result<Cairn_V1_RunInfo, ClientError>] {
        var submitIndex: [UInt64: Int] = [:]
        for (i, r) in requests.enumerated() { submitIndex[try await send(.submit(r))] = i }
        var watchIndex: [UInt64: Int] = [:]
        var results: [Int: Result<Cairn_V1_RunInfo, ClientError>] = [:]
        while results.count < requests.count {
            switch try await receive() {
            case .clientResponse(let r):
                if let i = submitIndex.removeValue(forKey: r.id) {
                    let runID = r.run.runID
                    watchIndex[try await send(.watch(.with { $0.runID = runID; $0.finalOnly = true }))] = i
                } else if let i = watchIndex[r.id], r.event.final {
                    watchIndex[r.id] = nil
                    results[i] = .success(r.event.run)
                }
            case .error(let e):
                if e.requestID == 0 { throw ClientError.server(code: e.code, message: e.message) }
                if let i = submitIndex.removeValue(forKey: e.requestID) ?? watchIndex.removeValue(forKey: e.requestID) {
                    results[i] = .failure(.server(code: e.code, message: e.message))
                }
            case let other: throw ClientError.protocolError("unexpected \(other.type)")
            }
        }
        return requests.indices.map { results[$0]! }
    }

    // MARK: - typed calls

    public func submit(_ req: Cairn_V1_SubmitRequest) async throws -> Cairn_V1_RunInfo {
        try await call(.submit(req)).run
    }

    public func status(_ runID: String) async throws -> Cairn_V1_RunInfo {
        try await call(.status(.with { $0.runID = runID })).run
    }

    public func cancel(_ runID: String) async throws -> Cairn_V1_RunInfo {
        try await call(.cancel(.with { $0.runID = runID })).run
    }

    public func resume(_ req: Cairn_V1_ResumeRequest) async throws -> Cairn_V1_RunInfo {
        try await call(.resume(req)).run
    }

    public func update(_ req: Cairn_V1_UpdateRequest) async throws -> Cairn_V1_RunInfo {
        try await call(.update(req)).run
    }

    /// A fork, or with `inPlace` a rewind.
    public func fork(_ req: Cairn_V1_ForkRequest) async throws -> Cairn_V1_RunInfo {
        try await call(.fork(req)).run
    }

    public func list(_ req: Cairn_V1_ListRequest) async throws -> [Cairn_V1_RunInfo] {
        try await page(req).runs
    }

    /// One page of runs, with the cursor of the next (empty when this was the last).
    public func page(_ req: Cairn_V1_ListRequest) async throws -> Cairn_V1_RunList {
        try await call(.list(req)).runs
    }

    public func history(_ runID: String) async throws -> Cairn_V1_History {
        try await call(.history(.with { $0.runID = runID })).history
    }

    public func state(_ runID: String, checkpoint: String?) async throws -> Cairn_V1_StateReply {
        try await call(.state(.with { $0.runID = runID; $0.checkpointID = checkpoint ?? "" })).state
    }

    public func workers() async throws -> [Cairn_V1_WorkerStatus] {
        try await workerList().workers
    }

    /// The workers, and how the coordinator lets workers and clients in (`auth`).
    public func workerList() async throws -> Cairn_V1_WorkerList {
        try await call(.workers(Cairn_V1_Empty())).workers
    }

    public func stats() async throws -> Cairn_V1_Stats {
        try await call(.stats(Cairn_V1_Empty())).stats
    }

    /// An operator's question about stored runs (`RecordsRequest.report`): named columns, and
    /// rows of JSON values in column order.
    public func records(_ request: Cairn_V1_RecordsRequest) async throws -> (columns: [String], rows: [[JSONValue]]) {
        let reply = try await call(.records(request)).records
        let parsed = try JSONValue.parse([UInt8](reply.rowsJson))
        guard case .array(let rows) = parsed else { throw ClientError.protocolError("a records reply whose rows are not a list") }
        return (reply.columns, rows.map { $0.arrayValue ?? [] })
    }

    /// Checks every stored byte of these runs (none: every run, and rows no run owns).
    public func verify(_ runIDs: [String]) async throws -> Cairn_V1_VerifyReply {
        try await call(.verify(.with { $0.runIds = runIDs })).verify
    }

    /// Deletes finished runs as the request's filters say (or, with `dryRun`, says which it would).
    public func cleanup(_ request: Cairn_V1_CleanupRequest) async throws -> Cairn_V1_CleanupReply {
        try await call(.cleanup(request)).cleanup
    }

    /// Pins a run (kept by every cleanup) or unpins it.
    public func pin(_ runID: String, _ pinned: Bool) async throws -> Cairn_V1_RunInfo {
        try await call(.pin(.with { $0.runID = runID; $0.pinned = pinned })).run
    }

    /// One run, whole, as its part of an export file.
    public func exportRun(_ runID: String) async throws -> Cairn_V1_ExportReply {
        try await call(.exportRun(.with { $0.runID = runID })).exportRun
    }

    /// Loads one run's part of an export file (`dryRun`: only checks that it can be, counting
    /// the runs `before` it in the file as there). `ExportArchive.importAll` sends a file's runs.
    public func importRun(_ request: Cairn_V1_ImportRequest) async throws -> Cairn_V1_ImportReply {
        try await call(.importRun(request)).importRun
    }

    /// Everything about one step of a run, as a JSON document (nil step: where the run stopped).
    public func debug(_ runID: String, step: Int?) async throws -> JSONValue {
        let reply = try await call(.debug(.with { r in r.runID = runID; if let step { r.step = UInt32(clamping: step); r.stepGiven = true } })).debug
        return try JSONValue.parse([UInt8](reply.json))
    }

    /// Streams a run's events until the run finishes or pauses; returns the last event.
    @discardableResult
    public func watch(_ runID: String, finalOnly: Bool = false,
                      onEvent: (Cairn_V1_RunEvent) throws -> Void = { _ in }) async throws -> Cairn_V1_RunEvent {
        let id = try await send(.watch(.with { $0.runID = runID; $0.finalOnly = finalOnly }))
        while true {
            let r = try await response(for: id)
            try onEvent(r.event)
            if r.event.final { return r.event }
        }
    }
}

extension Cairn_V1_SubmitRequest {
    /// A submit request for a graph file: its text, and its folder packed as a bundle when the
    /// graph runs programs (`exec` nodes) so that any worker can run them.
    public static func forFile(_ path: String, input: String?, runID: String?, durability: String?,
                               bundleLimit: Int = BundleArchive.defaultLimit) throws -> Cairn_V1_SubmitRequest {
        let url = URL(fileURLWithPath: path)
        let data = try Data(contentsOf: url)
        var req = Cairn_V1_SubmitRequest()
        req.graphFileName = url.lastPathComponent
        req.graphSource = data
        if let input { req.inputJson = Data(input.utf8) }
        req.runID = runID ?? ""
        req.durability = durability ?? ""
        let text = String(decoding: data, as: UTF8.self)
        if text.contains("exec") {
            let archive = try BundleArchive.pack(folder: url.deletingLastPathComponent().path, limit: bundleLimit)
            req.bundle = Data(archive.packed)
            req.bundleHash = archive.hash
        }
        return req
    }
}
