import NIOCore

/// Serves chosen message types right on the event loop, ahead of the channel's async stream.
///
/// The hot path (a worker's results at the coordinator, immediate assignments at a worker) is
/// handled where the bytes arrive: no hop to a task and back for each message. Everything else,
/// and any frame of a tapped type that does not decode, goes on to the async stream unchanged
/// (which answers a bad frame with an `Error` and a close, as for any other frame).
///
/// What the handler writes through `context` is flushed once per read burst, so messages that
/// arrive together are answered with one write to the socket.
public final class MessageTap: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Frame
    public typealias InboundOut = Frame
    /// Returns true when it consumed the message.
    public typealias Handler = (WireMessage, ChannelHandlerContext) -> Bool

    private let types: Set<UInt8>
    private let codec: WireCodec
    private var needsFlush = false
    /// Set (on the event loop) once the connection is ready for its hot path.
    public var handler: Handler?

    public init(types: Set<MessageType>, codec: WireCodec = WireCodec(), handler: Handler? = nil) {
        self.types = Set(types.map(\.rawValue))
        self.codec = codec
        self.handler = handler
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // A frame that does not decode goes on to the async stream, which answers it with an Error.
        if let handler, types.contains(frame.type), let message = try? codec.decode(frame), handler(message, context) {
            needsFlush = true
            return
        }
        context.fireChannelRead(data)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }
}
