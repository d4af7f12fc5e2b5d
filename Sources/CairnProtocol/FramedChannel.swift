import NIOCore

/// Sets up a channel's pipeline for Cairn frames and wraps it for async use.
/// Shared by the coordinator's server, the worker and the client; NIOCore only.
public enum FramedChannel {
    public typealias AsyncChannel = NIOAsyncChannel<Frame, Frame>

    /// `tap`, when given, sees frames before the async stream does (see `MessageTap`); it is
    /// created inside because a handler belongs to its channel's event loop.
    public static func configure(_ channel: any Channel, maxFrameSize: Int,
                                 tap: (@Sendable () -> MessageTap)? = nil,
                                 guarded: ConnectionWatch.Limits? = nil,
                                 onCut: @escaping @Sendable (Cairn_V1_ErrorCode, String) -> Void = { _, _ in }) -> EventLoopFuture<AsyncChannel> {
        channel.eventLoop.makeCompletedFuture {
            if let guarded { try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(limits: guarded, onCut: onCut)) }
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: maxFrameSize)))
            try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
            if let tap { try channel.pipeline.syncOperations.addHandler(tap()) }
            return try AsyncChannel(wrappingChannelSynchronously: channel)
        }
    }
}

extension NIOAsyncChannelOutboundWriter where OutboundOut == Frame {
    /// Encodes and writes one message.
    public func send(_ message: WireMessage, codec: WireCodec = WireCodec()) async throws {
        try await write(try codec.encode(message))
    }
}

extension ProtocolError {
    /// The error code a peer is told for a framing or decoding failure.
    public static func code(for error: any Error) -> Cairn_V1_ErrorCode {
        if case FrameError.tooLarge = error { return .errorFrameTooLarge }
        if error is ProtocolError || error is FrameError { return .errorProtocol }
        return .errorInternal
    }
}
