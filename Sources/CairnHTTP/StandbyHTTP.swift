import CairnCore
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOSSL

/// The HTTP port of a coordinator that stands by: every request is redirected (307, the method
/// kept) to the same path on the active coordinator's HTTP API when its address is known, and
/// answered 503 `{"code": "standby", …}` when none leads; the body says a standby answered
/// (`"role": "standby"`). Stopped when this coordinator takes the lead, which then serves the
/// API on the same port.
public enum StandbyHTTP {
    /// `leader` gives the active coordinator's HTTP address (HOST:PORT), when it has one.
    public static func application(host: String, port: Int, tls: TLSConfiguration?, logger: Logger,
                                   leader: @escaping @Sendable () async -> String?) throws -> some ApplicationProtocol {
        let router = Router()
        let scheme = tls == nil ? "http" : "https"
        router.add(middleware: StandbyAnswer(scheme: scheme, leader: leader))
        return Application(router: router, server: try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1(),
                           configuration: .init(address: .hostname(host, port: port), serverName: "cairn"), logger: logger)
    }

    struct StandbyAnswer<Context: RequestContext>: RouterMiddleware {
        let scheme: String
        let leader: @Sendable () async -> String?

        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            if let at = await leader(), !at.isEmpty {
                let target = "\(scheme)://\(at)\(request.uri.description)"
                var r = HTTPAPI.json(.object(["code": "standby", "role": "standby", "message": .string("this coordinator stands by; the active one serves \(scheme)://\(at)"),
                                              "leader": .string("\(scheme)://\(at)")]), status: .temporaryRedirect)
                r.headers[.location] = target
                return r
            }
            var r = HTTPAPI.json(.object(["code": "standby", "role": "standby", "message": "this coordinator stands by, and no coordinator leads right now (one takes over within seconds)"]),
                                 status: .serviceUnavailable)
            r.headers[.retryAfter] = "1"
            return r
        }
    }
}
