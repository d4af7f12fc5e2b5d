import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `cairn health`: asks a coordinator's or a worker's `/healthz` (served on its `--metrics`
/// address) and exits 0 when it answers 200. A container health check that is one program with
/// plain arguments: no shell, no Python, no curl in the image.
struct Health: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a coordinator's or worker's /healthz (its --metrics address): exit 0 when healthy.",
        discussion: """
            Prints what /healthz answered. Exit status 0 when it answered 200, 1 when it answered anything else (the coordinator says why: the store, the writer, Redis), 2 when nothing answered within --timeout.

            Examples:
              cairn health                                  # http://127.0.0.1:9400/healthz
              cairn health http://coordinator:9400/healthz
              cairn health 127.0.0.1:9401                   # a worker started with --metrics 127.0.0.1:9401
            """
    )

    @Argument(help: "The /healthz URL, or HOST:PORT of a --metrics address.")
    var url = "http://127.0.0.1:9400/healthz"

    @Option(help: "Give up after this many seconds.")
    var timeout: Double = 3

    @Flag(name: .shortAndLong, help: "Print nothing; only the exit status tells.")
    var quiet = false

    func run() throws {
        guard let target = HealthTarget(url) else {
            throw ValidationError("'\(url)' is not an http:// URL or HOST:PORT (HTTPS is not spoken here: /healthz is plain HTTP)")
        }
        let answer: (status: Int, body: String)
        do {
            answer = try HealthTarget.get(target, timeout: timeout)
        } catch {
            if !quiet { FileHandle.standardError.write(Data("cairn health: \(target.host):\(target.port): \(error)\n".utf8)) }
            throw ExitCode(2)
        }
        if !quiet { print(answer.body.isEmpty ? "HTTP \(answer.status)" : answer.body) }
        if answer.status != 200 { throw ExitCode(1) }
    }
}

/// Where `cairn health` asks, and the one plain HTTP/1.1 GET it makes.
struct HealthTarget: Equatable {
    var host: String
    var port: Int
    var path: String

    init?(_ text: String) {
        var rest = Substring(text)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.contains("://") { return nil }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/healthz" : String(rest[slash...])
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            host = String(authority[..<colon])
            port = p
        } else {
            host = String(authority)
            port = 80
        }
        host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if host.isEmpty { return nil }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// GETs the path and returns the status and body, within `timeout` seconds in all.
    static func get(_ t: HealthTarget, timeout: Double) throws -> (status: Int, body: String) {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(t.host, String(t.port), &hints, &list)
        guard rc == 0, let first = list else { throw Failure(description: "cannot resolve \(t.host): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let whole = max(0.1, timeout)
        var tv = timeval(tv_sec: Int(whole), tv_usec: Int((whole - Double(Int(whole))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            throw Failure(description: "nothing answered: \(String(cString: strerror(errno)))")
        }
        let request = Array("GET \(t.path) HTTP/1.1\r\nHost: \(t.host)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw Failure(description: "could not send the request: \(String(cString: strerror(errno)))")
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while reply.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            guard n > 0 else { throw Failure(description: "no answer within \(timeout)s: \(String(cString: strerror(errno)))") }
            reply += buffer[0..<n]
        }
        let text = String(decoding: reply, as: UTF8.self)
        guard text.hasPrefix("HTTP/"), let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap({ Int($0) }) else {
            throw Failure(description: "the answer is not HTTP: \(text.prefix(60))")
        }
        let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
        return (status, body.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
