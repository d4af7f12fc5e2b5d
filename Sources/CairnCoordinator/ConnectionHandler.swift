import CairnCore
import CairnProtocol
import CairnStore
import Foundation
import Logging
import NIOCore

/// Serves one TCP connection: the Hello handshake, then the worker or client conversation.
/// Transport only: frames, authentication, the worker's messages to the engine, and a client's
/// requests to the one `ClientDoor` (which the HTTP API calls too).
///
/// Any framing or decoding error is answered with an `Error` frame and a close; it never
/// touches other connections.
struct ConnectionHandler: Sendable {
    let engine: Engine
    let config: CoordinatorConfig
    let logger: Logger
    let door: ClientDoor
    let codec = WireCodec()

    init(door: ClientDoor, logger: Logger) {
        self.engine = door.engine
        self.config = door.config
        self.logger = logger
        self.door = door
    }

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
                    // Decoded here, on the connection's own task: the engine gets domain values.
                    let report = TaskReport(wire: r)
                    await engine.handle(.result(workerID: workerID, report))
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
                        if let data = try await door.store.bundle(req.hash) {
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
        let answer = try await door.reply(body)
        try await respond(req.id, outbound) { $0.body = answer }
    }

    /// The run's events, as the door streams them; a connection gone ends the stream (and its subscription).
    func watch(_ id: UInt64, _ runID: String, finalOnly: Bool, _ outbound: NIOAsyncChannelOutboundWriter<Frame>) async throws {
        for await event in try await door.events(runID, finalOnly: finalOnly) {
            try await respond(id, outbound) { $0.event = event }
            if event.final { break }
        }
    }

}
