import NIOCore

/// What a coordinator allows a connection before and between frames, so that strangers cannot
/// hold its sockets or memory: a `Hello` within `handshakeTimeout` of connecting and at most
/// `maxHelloBytes` long, and every frame, once begun, whole within `frameTimeout` (a peer that
/// announces 16 MiB and trickles bytes is cut off). Between frames an authenticated connection may
/// stay quiet as long as it likes: heartbeats judge workers, and a client may wait on a watch.
///
/// A pure state machine fed the bytes as they arrive and asked with the time, tested with no
/// socket and no sleep; `ConnectionGuardHandler` carries out what it decides.
public struct ConnectionWatch: Sendable {
    public struct Limits: Sendable, Equatable {
        public var handshakeTimeout: Double
        public var frameTimeout: Double
        public var maxHelloBytes: Int
        public init(handshakeTimeout: Double = 10, frameTimeout: Double = 60, maxHelloBytes: Int = 64 * 1024) {
            self.handshakeTimeout = handshakeTimeout
            self.frameTimeout = frameTimeout
            self.maxHelloBytes = maxHelloBytes
        }
    }

    public enum Verdict: Equatable, Sendable {
        case fine
        /// Close the connection, telling the peer why.
        case cut(code: Cairn_V1_ErrorCode, reason: String)
    }

    public let limits: Limits
    let openedAt: Double
    var authenticated = false
    /// The frame being read: how many of its length bytes and body bytes have arrived.
    var lengthBytes = 0
    var length = 0
    var bodyLeft = 0
    var frameStartedAt: Double?
    var framesDone = 0

    public init(limits: Limits, now: Double) {
        self.limits = limits
        self.openedAt = now
    }

    /// The handshake passed: from now on only frames are timed.
    public mutating func handshakeDone() { authenticated = true }

    /// Bytes arrived at `now`.
    public mutating func received(_ buffer: ByteBuffer, now: Double) -> Verdict {
        var view = buffer.readableBytesView[...]
        while !view.isEmpty {
            if bodyLeft > 0 {
                let take = min(bodyLeft, view.count)
                view = view.dropFirst(take)
                bodyLeft -= take
                if bodyLeft == 0 { frameDone() }
                continue
            }
            if lengthBytes == 0 { frameStartedAt = now; length = 0 }
            length = length << 8 | Int(view.first!)
            view = view.dropFirst()
            lengthBytes += 1
            guard lengthBytes == 4 else { continue }
            if framesDone == 0 && !authenticated && length > limits.maxHelloBytes {
                if FrameError.tooLarge(length: length, limit: limits.maxHelloBytes).isTLSRecord {
                    return .cut(code: .errorProtocol, reason: "a TLS handshake reached this plaintext port: this coordinator has no --tls-cert (connect without --tls-ca)")
                }
                return .cut(code: .errorFrameTooLarge,
                            reason: "the first frame announces \(length) bytes: a Hello is at most \(limits.maxHelloBytes) bytes")
            }
            bodyLeft = length
            // A length under 2 is the frame decoder's to refuse; here it simply ends.
            if bodyLeft == 0 { frameDone() }
        }
        return .fine
    }

    mutating func frameDone() {
        lengthBytes = 0
        frameStartedAt = nil
        framesDone += 1
    }

    /// Whether the connection has overstayed at `now`.
    public func check(now: Double) -> Verdict {
        if !authenticated && now - openedAt > limits.handshakeTimeout {
            return .cut(code: .errorUnauthenticated, reason: "no Hello within \(Self.seconds(limits.handshakeTimeout)) of connecting")
        }
        if let started = frameStartedAt, now - started > limits.frameTimeout {
            let got = lengthBytes < 4 ? "\(lengthBytes) of its 4 length bytes" : "\(length - bodyLeft) of its \(length) bytes"
            return .cut(code: .errorProtocol,
                        reason: "a frame begun \(Self.seconds(now - started)) ago is still incomplete (\(got)); a frame must arrive whole within \(Self.seconds(limits.frameTimeout))")
        }
        return .fine
    }

    static func seconds(_ s: Double) -> String {
        s < 10 ? "\((s * 10).rounded() / 10)s" : "\(Int(s.rounded()))s"
    }
}

/// The first handler of a coordinator's connection: feeds `ConnectionWatch` the bytes as they
/// arrive, checks it on a timer, and when it says so writes an `Error` frame and closes. The
/// connection's handler tells it the handshake passed with `ConnectionGuardHandler.handshakeDone`
/// (an outbound user event).
public final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The outbound user event that says the handshake passed.
    public struct HandshakeDone: Sendable { public init() {} }
    public static let handshakeDone = HandshakeDone()

    private var watch: ConnectionWatch
    private var timer: RepeatedTask?
    private var cut = false
    private let onCut: @Sendable (Cairn_V1_ErrorCode, String) -> Void

    /// `onCut` hears each connection cut off: the code its peer was sent, and why (for the log and metrics).
    public init(limits: ConnectionWatch.Limits, onCut: @escaping @Sendable (Cairn_V1_ErrorCode, String) -> Void = { _, _ in }) {
        self.watch = ConnectionWatch(limits: limits, now: Self.now())
        self.onCut = onCut
    }

    static func now() -> Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let every = max(0.05, min(1.0, min(watch.limits.handshakeTimeout, watch.limits.frameTimeout) / 4))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: .nanoseconds(Int64(every * 1e9)), delay: .nanoseconds(Int64(every * 1e9))) { _ in
            let (handler, context) = loopBound.value
            handler.act(handler.watch.check(now: Self.now()), context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel(); timer = nil }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel(); timer = nil
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !cut else { return }
        let verdict = watch.received(unwrapInboundIn(data), now: Self.now())
        guard verdict == .fine else { act(verdict, context); return }
        context.fireChannelRead(data)
    }

    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is HandshakeDone {
            watch.handshakeDone()
            promise?.succeed()
            return
        }
        context.triggerUserOutboundEvent(event, promise: promise)
    }

    private func act(_ verdict: ConnectionWatch.Verdict, _ context: ChannelHandlerContext) {
        guard case .cut(let code, let reason) = verdict, !cut else { return }
        cut = true
        timer?.cancel(); timer = nil
        onCut(code, reason)
        // The Error frame is written here, at the head of the pipeline, past the frame encoder.
        var out = context.channel.allocator.buffer(capacity: 256)
        if let frame = try? WireCodec().encode(.error(code, reason)) {
            try? FrameEncoder().encode(data: frame, out: &out)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
    }
}
