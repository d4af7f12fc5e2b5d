import CairnCore
import CairnProtocol
import CairnStore
import Foundation
import Logging
import NIOCore

/// Serves one TCP connection: the Hello handshake, then the worker or client conversation.
///
/// Any framing or decoding error is answered with an `Error` frame and a close; it never
/// touches other connections.
struct ConnectionHandler: Sendable {
    let engine: Engine
    let store: any CheckpointStore
    let config: CoordinatorConfig
    let logger: Logger
    let codec = WireCodec()

    func handle(_ connection: FramedChannel.AsyncChannel) async {
        let address = connection.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        do {
            try await connection.executeThenClose { inbound, outbound in
                var frames = inbound.makeAsyncIterator()
                do {
                    let (hello, credential) = try await handshake(&frames, outbound)
                    connection.channel.triggerUserOutboundEvent(ConnectionGuardHandler.handshakeDone, promise: nil)
                    switch hello.role {
                    case .worker:
                        guard credential.grants.contains(.register) else {
                            logger.warning("refused a worker whose token may not register", metadata: ["peer": "\(address)", "role": "\(credential.grants)"])
                            throw EngineError(.errorPermissionDenied, "this token's role (\(credential.grants)) may not register as a worker: that takes a worker token")
                        }
                        try await serveWorker(hello, address: address, channel: connection.channel, credential: credential, &frames, outbound)
                    case .client:
                        guard !credential.grants.isDisjoint(with: Access.clientGrants) else {
                            logger.warning("refused a client whose token is a worker's", metadata: ["peer": "\(address)"])
                            throw EngineError(.errorPermissionDenied, "this token's role (\(credential.grants)) may only register as a worker: a client needs a reader, submitter or admin token")
                        }
                        try await serveClient(credential, &frames, outbound)
                    default:
                        try await outbound.send(.error(.errorProtocol, "role must be worker or client"))
                    }
                } catch let e as EngineError {
                    // The error frames here are a courtesy before the close: a peer already gone cannot hear them.
                    try? await outbound.send(.error(e.code, e.message))
                } catch is CancellationError {
                } catch let e where e is FrameError || e is ProtocolError {
                    logger.notice("closing connection after a protocol error", metadata: ["peer": "\(address)", "error": "\(e)"])
                    try? await outbound.send(.error(ProtocolError.code(for: e), "\(e)"))
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["peer": "\(address)", "error": "\(error)"])
        }
    }

    func handshake(_ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
                   _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws -> (Cairn_V1_Hello, Credential) {
        guard let frame = try await frames.next() else { throw CancellationError() }
        guard case .hello(let hello) = try codec.decode(frame) else {
            throw ProtocolError.unexpected(expected: "Hello as the first message", got: "message type \(frame.type)")
        }
        guard hello.protocolVersion == cairnProtocolVersion else {
            throw EngineError(.errorVersion, ProtocolError.versionMismatch(got: hello.protocolVersion, supported: cairnProtocolVersion).description)
        }
        guard let keyring = config.keyring else { return (hello, Credential(digest: nil, grants: .all)) }
        guard let grants = keyring.grants(for: hello.token) else {
            logger.warning("rejected a peer with a wrong token", metadata: ["role": "\(hello.role)"])
            throw EngineError(.errorUnauthenticated, hello.token.isEmpty ? "this coordinator requires a token (--token-file or CAIRN_TOKEN)" : "wrong token")
        }
        return (hello, Credential(digest: Hashing.sha256(Array(hello.token.utf8)), grants: grants))
    }

    /// The token a connection authenticated with. It is looked up again on every request (and
    /// worker heartbeat), so a token removed from the token file and re-read (SIGHUP) stops
    /// working on connections already open, and a changed role takes effect at once.
    struct Credential: Sendable {
        /// The token's SHA-256; nil when the coordinator asks for no token.
        let digest: [UInt8]?
        let grants: Grants
    }

    /// What the connection's token grants now; a token since removed is refused.
    func current(_ credential: Credential) throws -> Grants {
        guard let digest = credential.digest, let keyring = config.keyring else { return credential.grants }
        guard let grants = keyring.grants(digest: digest) else {
            throw EngineError(.errorUnauthenticated, "this connection's token was removed from the coordinator's token file")
        }
        return grants
    }

    func welcome(workerID: String = "") -> WireMessage {
        var w = Cairn_V1_Welcome()
        w.protocolVersion = cairnProtocolVersion
        w.coordinatorID = "cairn-coordinator"
        w.workerID = workerID
        w.epoch = engine.epoch
        w.heartbeatIntervalMs = UInt32(config.heartbeatInterval * 1000)
        w.maxFrameBytes = UInt32(config.maxFrameSize)
        return .welcome(w)
    }

    // MARK: worker

    /// A worker's session. Its results never come through here: once registered, the channel's
    /// `MessageTap` hands them to the engine on the event loop, and the engine writes
    /// assignments and acks to the channel itself. This loop serves the rest (heartbeats,
    /// bundle requests, drain) and notices the connection ending.
    func serveWorker(_ hello: Cairn_V1_Hello, address: String, channel: any Channel, credential: Credential,
                     _ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
                     _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        let welcome = { (id: String) in self.welcome(workerID: id) }
        let workerID = await engine.register(hello: hello.worker, address: address, channel: channel, welcome: welcome)
        do {
            receiving: while let frame = try await frames.next() {
                switch try codec.decode(frame) {
                case .taskResult(let r):
                    // Only before the tap is armed (never in practice): handled the same way.
                    await engine.handle(.result(workerID: workerID, r))
                case .heartbeat(let hb):
                    guard (try? current(credential))?.contains(.register) == true else {
                        logger.notice("closing a worker whose token was removed or lost its worker role", metadata: ["worker": "\(workerID)"])
                        try await outbound.send(.error(.errorUnauthenticated, "this worker's token was removed from the coordinator's token file (or no longer has the worker role)"), codec: codec)
                        break receiving
                    }
                    let registered = await engine.heartbeat(workerID, hb)
                    if !registered && hb.tasks.isEmpty {
                        // Presumed lost (silent past the heartbeat timeout): its late results
                        // have arrived and been rejected; now it must reconnect as a new worker.
                        try await outbound.send(.error(.errorUnavailable, "this worker was presumed lost (no heartbeat for \(Int(config.heartbeatTimeout))s) and its tasks were handed to others; reconnect"), codec: codec)
                        break receiving
                    }
                    // Answered, so that a worker can tell a live coordinator from a frozen one
                    // (whose kernel still acknowledges every byte): it leaves one that stops answering.
                    try await outbound.send(.heartbeat(Cairn_V1_Heartbeat()), codec: codec)
                case .bundleRequest(let req):
                    var reply = Cairn_V1_BundleData()
                    reply.hash = req.hash
                    do {
                        if let data = try await store.bundle(req.hash) {
                            reply.data = Data(data)
                            reply.found = true
                        }
                    } catch {
                        reply.error = "\(error)"
                    }
                    try await outbound.send(.bundleData(reply), codec: codec)
                case .drain:
                    await engine.drain(workerID)
                case let other:
                    throw ProtocolError.unexpected(expected: "a worker message", got: "\(other.type)")
                }
            }
        } catch {
            await engine.disconnected(workerID, reason: "\(error)")
            throw error
        }
        await engine.disconnected(workerID, reason: "connection closed")
    }

    // MARK: client

    func serveClient(_ credential: Credential, _ frames: inout NIOAsyncChannelInboundStream<Frame>.AsyncIterator,
                     _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        try await outbound.send(welcome())
        // Requests are answered concurrently (each response names its request), so a client can
        // pipeline: 200 submits sent at once share transactions instead of waiting in line.
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            while let frame = try await frames.next() {
                guard case .clientRequest(let req) = try codec.decode(frame) else {
                    throw ProtocolError.unexpected(expected: "ClientRequest", got: "message type \(frame.type)")
                }
                if inFlight >= Self.maxRequestsInFlight {
                    try await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                group.addTask { try await self.answerReportingErrors(req, credential, outbound) }
            }
            try await group.waitForAll()
        }
    }

    static let maxRequestsInFlight = 256

    func answerReportingErrors(_ req: Cairn_V1_ClientRequest, _ credential: Credential,
                               _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        do {
            guard let body = req.body else { throw EngineError(.errorInvalidArgument, "empty request") }
            try Access.check(body, try current(credential))
            try await answer(req, outbound)
        } catch {
            let (code, message) = ClientDoor.failure(error)
            try await outbound.send(.error(code, message, requestID: req.id))
        }
    }

    func respond(_ id: UInt64, _ outbound: NIOAsyncChannelOutboundWriter<Frame>, _ fill: (inout Cairn_V1_ClientResponse) -> Void) async throws {
        var r = Cairn_V1_ClientResponse()
        r.id = id
        fill(&r)
        try await outbound.send(.clientResponse(r), codec: codec)
    }

    func answer(_ req: Cairn_V1_ClientRequest, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        if case .watch(let q) = req.body {
            try await watch(req.id, q.runID, finalOnly: q.finalOnly, outbound)
            return
        }
        guard let body = req.body else { throw EngineError(.errorInvalidArgument, "empty request") }
        let answer = try await reply(body)
        try await respond(req.id, outbound) { $0.body = answer }
    }

    /// One request's answer (every request but `watch`, which streams): what every door calls.
    func reply(_ body: Cairn_V1_ClientRequest.OneOf_Body) async throws -> Cairn_V1_ClientResponse.OneOf_Body {
        switch body {
        case .submit(let s): return .run(try await engine.submit(s))
        case .status(let q): return .run(try await engine.runInfo(q.runID))
        case .cancel(let q): return .run(try await engine.cancel(q.runID))
        case .list(let l):
            var filter = RunFilter(limit: l.limit == 0 ? 50 : Int(min(l.limit, 10_000)))
            if !l.status.isEmpty {
                guard let s = RunStatus(rawValue: l.status) else {
                    throw EngineError(.errorInvalidArgument, "unknown status '\(l.status)' (one of: \(RunStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                filter.status = s
            }
            if !l.graph.isEmpty { filter.graphName = l.graph }
            if l.sinceMs > 0 { filter.createdAfter = Date().timeIntervalSince1970 - Double(l.sinceMs) / 1000 }
            if !l.cursor.isEmpty {
                guard let c = RunCursor(text: l.cursor) else {
                    throw EngineError(.errorInvalidArgument, "'\(l.cursor)' is not a cursor: pass a list's next_cursor as it was given")
                }
                filter.after = c
            }
            var list = Cairn_V1_RunList()
            let listings = try await store.runs(filter)
            for listing in listings {
                switch listing {
                case .run(let r):
                    do { list.runs.append(try await engine.runInfo(record: r)) } catch where StoreFailure.isDamage(error) {
                        list.runs.append(Engine.damagedInfo(runID: r.runID, error))
                    }
                case .damaged(let runID, let error):
                    list.runs.append(Engine.damagedInfo(runID: runID, error))
                }
            }
            // A full page may have a next one. A damaged row has no creation time to go on
            // from; the last readable row's does.
            if listings.count >= filter.limit, let r = listings.lazy.compactMap({ if case .run(let r) = $0 { r } else { nil } }).last {
                list.nextCursor = RunCursor(createdAt: r.createdAt, runID: r.runID).text
            }
            return .runs(list)
        case .history(let q): return .history(try await history(q.runID))
        case .state(let q): return .state(try await stateAt(q.runID, q.checkpointID))
        case .workers: return .workers(await engine.workerList())
        case .stats: return .stats(await engine.stats())
        case .watch: throw EngineError(.errorInvalidArgument, "watch streams its answer: ask for its events")
        case .resume(let r): return .run(try await engine.resume(r))
        case .update(let u): return .run(try await engine.update(u))
        case .fork(let f): return .run(try await engine.fork(f))
        case .records(let q): return .records(try await engine.records(q))
        case .verify(let v): return .verify(try await engine.verify(v))
        case .cleanup(let c): return .cleanup(try await engine.cleanup(c))
        case .pin(let p): return .run(try await engine.pin(p))
        case .exportRun(let e): return .exportRun(try await engine.exportRun(e))
        case .importRun(let i): return .importRun(try await engine.importRun(i))
        case .debug(let d): return .debug(try await engine.debug(d))
        }
    }

    /// The run's events, as the door streams them; a connection gone ends the stream (and its subscription).
    func watch(_ id: UInt64, _ runID: String, finalOnly: Bool, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        for await event in try await ClientDoor(handler: self).events(runID, finalOnly: finalOnly) {
            try await respond(id, outbound) { $0.event = event }
            if event.final { break }
        }
    }

    /// A run's checkpoints, newest first; a fork's go on with its parent's, from the fork point
    /// back (and so on up, for a fork of a fork).
    func history(_ runID: String) async throws -> Cairn_V1_History {
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        var h = try await ownHistory(runID, from: nil)
        h.forkedFrom = rec.forkedFrom ?? ""
        var origin = rec.forkedFrom
        var seen: Set<String> = [runID]
        while let o = origin, let at = o.lastIndex(of: "@") {
            let parent = String(o[..<at]), cp = String(o[o.index(after: at)...])
            guard seen.insert(parent).inserted, let parentRecord = try await store.run(parent) else { break }
            h.checkpoints += try await ownHistory(parent, from: cp).checkpoints
            origin = parentRecord.forkedFrom
        }
        return h
    }

    /// One run's checkpoints, newest first; with `from`, only that checkpoint and its ancestors.
    func ownHistory(_ runID: String, from: String?) async throws -> Cairn_V1_History {
        var cps = try await store.checkpoints(runID: runID, namespace: "", limit: 100_000)
        if let from {
            let byID = Dictionary(cps.map { ($0.checkpointID, $0) }, uniquingKeysWith: { a, _ in a })
            var chain: [CheckpointRecord] = []
            var next: String? = from
            while let id = next, let c = byID[id], chain.count < cps.count {
                chain.append(c)
                next = c.parentID
            }
            cps = chain
        }
        let execs = try await store.taskExecutions(runID: runID)
        // Each attempt is shown under the first checkpoint of its step written after it ended (a
        // step resumed or rewound has several); attempts after the last are the step in progress.
        var byCheckpoint: [String: [TaskExecutionRecord]] = [:]
        var pendingByStep: [Int: [TaskExecutionRecord]] = [:]
        let cpsByStep = Dictionary(grouping: cps, by: \.step).mapValues { $0.sorted { $0.createdAt < $1.createdAt } }
        for e in execs {
            if let cp = cpsByStep[e.step]?.first(where: { $0.createdAt >= e.finishedAt - 0.000_5 }) {
                byCheckpoint[cp.checkpointID, default: []].append(e)
            } else {
                pendingByStep[e.step, default: []].append(e)
            }
        }
        var h = Cairn_V1_History()
        h.runID = runID
        // Attempts of a step that has no checkpoint yet (running, or the step the run failed in).
        if from == nil, let newest = cps.first, let pending = pendingByStep[newest.step + 1], !pending.isEmpty {
            var c = Cairn_V1_CheckpointInfo()
            c.step = UInt32(newest.step + 1)
            c.parentID = newest.checkpointID
            c.source = "pending"
            c.tasks = pending.map(Self.execution)
            c.runID = runID
            h.checkpoints.append(c)
        }
        for cp in cps {
            var c = Cairn_V1_CheckpointInfo()
            c.checkpointID = cp.checkpointID
            c.parentID = cp.parentID ?? ""
            c.step = UInt32(cp.step)
            c.source = cp.source
            c.createdAt = cp.createdAt
            c.nextNodes = (cp.nextTasks.arrayValue ?? []).compactMap { $0["node"]?.stringValue }
            c.updatedChannels = cp.metadata["updated"]?.arrayValue?.compactMap(\.stringValue)
                ?? cp.channelVersions.filter { $0.value == cp.checkpointID }.keys.sorted()
            c.tasks = (byCheckpoint[cp.checkpointID] ?? []).map(Self.execution)
            c.runID = runID
            if case .object(let m) = cp.metadata, !m.isEmpty { c.metadataJson = Data(cp.metadata.jsonBytes()) }
            h.checkpoints.append(c)
        }
        return h
    }

    static func execution(_ e: TaskExecutionRecord) -> Cairn_V1_TaskExecution {
        var t = Cairn_V1_TaskExecution()
        t.taskID = e.taskID
        t.node = e.node
        t.attempt = UInt32(e.attempt)
        t.worker = e.worker
        t.status = e.status
        t.durationMs = UInt64(max(0, e.durationMS))
        t.error = e.error ?? ""
        t.cost = e.cost
        return t
    }

    func stateAt(_ runID: String, _ checkpointID: String) async throws -> Cairn_V1_StateReply {
        guard try await store.run(runID) != nil else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard let cp = try await store.checkpoint(runID: runID, namespace: "", checkpointID: checkpointID.isEmpty ? nil : checkpointID) else {
            throw EngineError(.errorNotFound, "run \(runID) has no checkpoint \(checkpointID)")
        }
        var state = try await engine.initialState(runID: runID)
        for (k, v) in try await store.state(at: cp) { state[k] = v }
        var s = Cairn_V1_StateReply()
        s.runID = runID
        s.checkpointID = cp.checkpointID
        s.step = UInt32(cp.step)
        s.stateJson = Data(JSONValue.object(state).jsonBytes())
        s.nextNodes = (cp.nextTasks.arrayValue ?? []).compactMap { $0["node"]?.stringValue }
        return s
    }
}
