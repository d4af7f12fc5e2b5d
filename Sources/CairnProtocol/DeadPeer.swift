#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// TCP settings that end a connection whose peer vanished without a word (a host powered off, a
/// partition that does not heal, a half-open connection after a NAT forgot it): keepalive probes
/// once the connection is idle, and on Linux a limit on how long sent data may stay
/// unacknowledged (`TCP_USER_TIMEOUT`), so a worker whose heartbeats go nowhere, or a
/// `cairn watch` waiting on a silent coordinator, learns within `timeout` instead of the
/// kernel's quarter of an hour.
public enum DeadPeer {
    /// Arms `channel` (on its event loop, before it is used): probes after `idle` seconds of
    /// silence, every `interval`, `count` of them unanswered end it; data unacknowledged for
    /// `timeout` seconds ends it too.
    public static func arm(_ channel: any Channel, idle: Int, interval: Int, count: Int, timeout: Double) throws {
        guard let options = channel.syncOptions else { return }
        try options.setOption(.socketOption(.so_keepalive), value: 1)
        #if os(Linux)
        let tcp = NIOBSDSocket.OptionLevel(rawValue: CInt(IPPROTO_TCP))
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: CInt(TCP_KEEPIDLE))), value: idle)
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: CInt(TCP_KEEPINTVL))), value: interval)
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: CInt(TCP_KEEPCNT))), value: count)
        try options.setOption(ChannelOptions.Types.SocketOption(level: tcp, name: .init(rawValue: CInt(TCP_USER_TIMEOUT))),
                              value: Int(max(1, timeout * 1000)))
        #endif
    }
}
