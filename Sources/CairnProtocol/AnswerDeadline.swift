import NIOCore

/// Closes a connection whose peer has sent nothing within `timeout` of its start: a coordinator
/// that accepted the connection but never answers the Hello (frozen by SIGSTOP or a debugger,
/// wedged), which TCP keepalive cannot tell from a live one because the kernel still answers for
/// it. The first bytes disarm it; what follows is the heartbeats' and the caller's to judge.
public final class AnswerDeadline: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var answered = false

    public init(timeout: TimeAmount) { self.timeout = timeout }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard timer == nil, !answered else { return }
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !answered {
            answered = true
            timer?.cancel()
            timer = nil
        }
        context.fireChannelRead(data)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}
