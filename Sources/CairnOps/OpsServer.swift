import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A small HTTP endpoint for operators: `GET /metrics` (Prometheus text format) and
/// `GET /healthz` (200 when the process can do its work, 503 with the reason otherwise).
public final class OpsServer: Service, Sendable {
    public typealias Metrics = @Sendable () async -> String
    public typealias Health = @Sendable () async -> (healthy: Bool, detail: String)

    let host: String
    let port: Int
    let metrics: Metrics
    let health: Health
    let logger: Logger

    public init(address: String, metrics: @escaping Metrics, health: @escaping Health, logger: Logger) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw OpsError("the metrics address must be HOST:PORT, not '\(address)'")
        }
        self.host = address[..<colon].isEmpty ? "0.0.0.0" : String(address[..<colon])
        self.port = port
        self.metrics = metrics
        self.health = health
        self.logger = logger
    }

    public struct OpsError: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    public func run() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        logger.notice("metrics and health endpoint listening", metadata: ["address": "\(host):\(server.channel.localAddress?.port ?? port)"])
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
        }
    }

    func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        // A scraper that hangs up mid-request ends only its own connection: nothing to report.
        try? await connection.executeThenClose { inbound, outbound in
            var path = ""
            for try await part in inbound {
                switch part {
                case .head(let head): path = head.uri
                case .body: break
                case .end:
                    let (status, contentType, body): (HTTPResponseStatus, String, String)
                    switch path.split(separator: "?").first.map(String.init) ?? "" {
                    case "/metrics":
                        (status, contentType, body) = (.ok, "text/plain; version=0.0.4", await metrics())
                    case "/healthz":
                        let h = await health()
                        (status, contentType, body) = (h.healthy ? .ok : .serviceUnavailable, "application/json", h.detail + "\n")
                    default:
                        (status, contentType, body) = (.notFound, "text/plain", "try /metrics or /healthz\n")
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: contentType)
                    headers.add(name: "Content-Length", value: String(body.utf8.count))
                    headers.add(name: "Connection", value: "close")
                    try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }
}
