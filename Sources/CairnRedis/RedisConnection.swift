import CHiredis
import Foundation

/// A Redis reply, copied out of hiredis's memory (which is freed at once).
public enum RedisReply: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case null
    case array([RedisReply])
    case error(String)

    public var text: String? {
        switch self {
        case .string(let b): return String(decoding: b, as: UTF8.self)
        case .status(let s): return s
        default: return nil
        }
    }
}

public enum RedisError: Error, CustomStringConvertible, Equatable {
    /// The connection failed or broke; the client reconnects.
    case io(String)
    /// Redis answered with an error reply.
    case server(String)
    case badURL(String)

    public var description: String {
        switch self {
        case .io(let m): return "Redis connection error: \(m)"
        case .server(let m): return "Redis error: \(m)"
        case .badURL(let u): return "not a Redis URL: \(u) (use redis://[:password@]host:port[/db])"
        }
    }
}

/// One hiredis connection. Blocking: only `RedisClient` uses it, on its own serial queue.
///
/// Pipelining is `redisAppendCommandArgv` × N, then `redisGetReply` × N: one round trip for a
/// whole batch of commands.
final class RedisConnection {
    private var context: UnsafeMutablePointer<redisContext>?

    init(host: String, port: Int, timeout: Double) throws {
        let tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
        guard let c = redisConnectWithTimeout(host, Int32(port), tv) else { throw RedisError.io("cannot allocate a context") }
        if c.pointee.err != 0 {
            let msg = Self.errorText(c)
            redisFree(c)
            throw RedisError.io("cannot connect to \(host):\(port): \(msg)")
        }
        redisSetTimeout(c, tv)
        context = c
    }

    deinit { close() }

    func close() {
        if let c = context {
            // A connection that failed (a timeout in a partition) is reset, not closed: a graceful
            // close would still deliver the commands the kernel holds once the network heals, and
            // a write the caller has since sent elsewhere would land in Redis after all.
            if c.pointee.err != 0 && c.pointee.fd >= 0 {
                var l = linger(l_onoff: 1, l_linger: 0)
                _ = setsockopt(c.pointee.fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            }
            redisFree(c)
        }
        context = nil
    }

    var isBroken: Bool { context == nil || context!.pointee.err != 0 }

    static func errorText(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Sends every command, then reads every reply: one round trip.
    func pipeline(_ commands: [[[UInt8]]]) throws -> [RedisReply] {
        guard let c = context else { throw RedisError.io("not connected") }
        for command in commands {
            let argc = Int32(command.count)
            var lengths = command.map { $0.count }
            // Keep every argument's bytes alive while hiredis copies them into its output buffer.
            let pointers = command.map { arg -> UnsafeMutablePointer<CChar> in
                let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, arg.count))
                arg.withUnsafeBufferPointer { src in
                    if let base = src.baseAddress { p.withMemoryRebound(to: UInt8.self, capacity: arg.count) { $0.update(from: base, count: arg.count) } }
                }
                return p
            }
            defer { pointers.forEach { $0.deallocate() } }
            var argv: [UnsafePointer<CChar>?] = pointers.map { UnsafePointer($0) }
            let rc = argv.withUnsafeMutableBufferPointer { av in
                lengths.withUnsafeMutableBufferPointer { lens in
                    redisAppendCommandArgv(c, argc, av.baseAddress, lens.baseAddress)
                }
            }
            if rc != REDIS_OK { throw RedisError.io(Self.errorText(c)) }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            if redisGetReply(c, &raw) != REDIS_OK || raw == nil {
                let msg = Self.errorText(c)
                close()
                throw RedisError.io(msg.isEmpty ? "connection lost" : msg)
            }
            let reply = raw!.assumingMemoryBound(to: redisReply.self)
            replies.append(Self.copy(reply))
            freeReplyObject(raw)
        }
        return replies
    }

    static func copy(_ r: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let v = r.pointee
        switch v.type {
        case REDIS_REPLY_STRING:
            return .string(v.str == nil ? [] : Array(UnsafeRawBufferPointer(start: v.str, count: v.len)))
        case REDIS_REPLY_STATUS:
            return .status(v.str == nil ? "" : String(decoding: UnsafeRawBufferPointer(start: v.str, count: v.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(v.str == nil ? "" : String(decoding: UnsafeRawBufferPointer(start: v.str, count: v.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(v.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            for i in 0..<v.elements { if let e = v.element[i] { items.append(copy(e)) } }
            return .array(items)
        default:
            return .null
        }
    }
}

@available(*, unavailable)
extension RedisConnection: Sendable {}
