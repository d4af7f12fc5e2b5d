import Dispatch
import Foundation
import CairnCore
import Logging

/// Where a Redis is and how to log in: `redis://[:password@]host[:port][/db]`.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var password: String?
    public var database: Int

    public init(_ text: String) throws {
        guard text.hasPrefix("redis://") else { throw RedisError.badURL(text) }
        var rest = Substring(text.dropFirst("redis://".count))
        password = nil
        if let at = rest.lastIndex(of: "@") {
            var auth = rest[..<at]
            if auth.hasPrefix(":") { auth = auth.dropFirst() } else if let colon = auth.firstIndex(of: ":") { auth = auth[auth.index(after: colon)...] }
            password = auth.isEmpty ? nil : String(auth)
            rest = rest[rest.index(after: at)...]
        }
        database = 0
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            if !db.isEmpty { guard let d = Int(db) else { throw RedisError.badURL(text) }; database = d }
            rest = rest[..<slash]
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { throw RedisError.badURL(text) }
            port = p
            host = String(rest[..<colon])
        } else {
            port = 6379
            host = String(rest)
        }
        if host.isEmpty { host = "127.0.0.1" }
    }

    /// The URL without its password, for logs.
    public var description: String { "redis://\(host):\(port)/\(database)" }
}

/// A Redis client whose blocking hiredis calls run on a private serial queue: never on NIO's
/// event loops or Swift's cooperative pool (the actor's executor is that queue).
public actor RedisClient {
    private let executor: DispatchQueueExecutor
    public nonisolated let url: RedisURL
    private let timeout: Double
    private let logger: Logger
    private var connection: RedisConnection?

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    public init(url: RedisURL, timeout: Double = 2.0, logger: Logger) {
        self.url = url
        self.timeout = timeout
        self.logger = logger
        self.executor = DispatchQueueExecutor(label: "cairn.redis")
    }

    /// Runs commands in one round trip, connecting (and logging in) first if needed. On an I/O
    /// error the connection is dropped and the next call reconnects.
    public func pipeline(_ commands: [[[UInt8]]]) throws -> [RedisReply] {
        if commands.isEmpty { return [] }
        let conn = try connected()
        do {
            return try conn.pipeline(commands)
        } catch {
            connection?.close()
            connection = nil
            throw error
        }
    }

    public func command(_ args: String...) throws -> RedisReply {
        try pipeline([args.map { Array($0.utf8) }])[0]
    }

    /// Drops the connection (the next call reconnects).
    public func disconnect() {
        connection?.close()
        connection = nil
    }

    private func connected() throws -> RedisConnection {
        if let c = connection, !c.isBroken { return c }
        connection?.close()
        connection = nil
        let c = try RedisConnection(host: url.host, port: url.port, timeout: timeout)
        var setup: [[[UInt8]]] = []
        if let p = url.password { setup.append([Array("AUTH".utf8), Array(p.utf8)]) }
        if url.database != 0 { setup.append([Array("SELECT".utf8), Array(String(url.database).utf8)]) }
        for reply in try c.pipeline(setup) {
            if case .error(let e) = reply { throw RedisError.server(e) }
        }
        connection = c
        return c
    }
}
