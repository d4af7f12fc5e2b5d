import CairnProtocol
import CairnTLS
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// The protocol port of a coordinator that stands by: every connection's Hello is answered with
/// ERROR_STANDBY naming the active coordinator, then closed, so workers and clients go there at
/// once instead of timing out. Closed when this coordinator takes the lead, which then binds the
/// same port for real.
public final class StandbyDoor: Sendable {
    let server: NIOAsyncChannel<FramedChannel.AsyncChannel, Never>
    let serving: Task<Void, Never>

    /// Binds `host:port` (with the coordinator's TLS, if any); `leader` says where the active one is.
    public static func open(host: String, port: Int, tls: TLSFiles?, limits: ConnectionWatch.Limits,
                            leader: @escaping @Sendable () async -> String?, logger: Logger) async throws -> StandbyDoor {
        let context = try tls.map(CairnTLS.serverContext)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { (channel: any Channel) -> EventLoopFuture<FramedChannel.AsyncChannel> in
                if let context {
                    do { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) } catch {
                        return channel.eventLoop.makeFailedFuture(error)
                    }
                }
                return FramedChannel.configure(channel, maxFrameSize: 64 << 10, guarded: limits)
            }
        let serving = Task<Void, Never> {
            // Ends when the listening socket is closed (a closed socket ends its stream).
            _ = try? await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        tasks.addTask { await answer(connection, leader: leader) }
                    }
                }
            }
        }
        logger.notice("standing by on the protocol port: peers are told where the active coordinator is", metadata: ["address": "\(host):\(server.channel.localAddress?.port ?? port)"])
        return StandbyDoor(server: server, serving: serving)
    }

    init(server: NIOAsyncChannel<FramedChannel.AsyncChannel, Never>, serving: Task<Void, Never>) {
        self.server = server
        self.serving = serving
    }

    /// The bound port (port 0 picks one).
    public var port: Int? { server.channel.localAddress?.port }

    static func answer(_ connection: FramedChannel.AsyncChannel, leader: @Sendable () async -> String?) async {
        try? await connection.executeThenClose { inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            guard (try? await frames.next()) != nil else { return }  // the Hello (or whatever came first)
            var e = Cairn_V1_Error()
            e.code = .errorStandby
            let at = await leader()
            e.leader = at ?? ""
            e.message = at.map { "this coordinator stands by; the active one is at \($0)" } ?? "this coordinator stands by; no coordinator leads right now"
            try await outbound.send(.error(e))
        }
    }

    /// Stops answering and frees the port.
    public func close() async {
        try? await server.channel.close()
        serving.cancel()
        _ = await serving.value
    }
}
