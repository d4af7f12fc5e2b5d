import Foundation
import NIOSSL
import PostgresNIO

/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]` (also
/// `postgresql://`), as `--db` takes it. Without `sslmode`, TLS is used when the server offers it
/// (libpq's `prefer`), with the certificate verified. Without a password in the URL, the
/// environment's `PGPASSWORD` is used, as libpq does (so it need not be on a command line, where
/// every user of the machine can read it). The password never appears in `description`.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    public var tls: TLSMode

    /// Whether `text` names a PostgreSQL database rather than a SQLite file.
    public static func isPostgres(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(_ text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func bad(_ why: String) -> Invalid {
            Invalid(description: "--db \(Self.redacted(text)): \(why); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        guard Self.isPostgres(text), let c = URLComponents(string: text) else { throw bad("not a PostgreSQL URL") }
        guard let user = c.percentEncodedUser.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else { throw bad("no user") }
        guard let host = c.host, !host.isEmpty else { throw bad("no host") }
        let db = String(c.path.drop(while: { $0 == "/" }))
        guard !db.isEmpty, !db.contains("/") else { throw bad("no database name") }
        self.user = user
        self.password = c.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
            ?? environment["PGPASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        self.host = host
        self.port = c.port ?? 5432
        self.database = db.removingPercentEncoding ?? db
        var tls = TLSMode.prefer  // libpq's default: TLS when the server offers it
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                switch item.value ?? "" {
                case "disable": tls = .disable
                case "prefer", "allow": tls = .prefer
                case "require", "verify-ca", "verify-full": tls = .require
                default: throw bad("sslmode must be disable, prefer or require")
                }
            default: throw bad("unknown parameter '\(item.name)'")
            }
        }
        self.tls = tls
    }

    /// The URL with its password replaced by `***`.
    public var description: String {
        "postgres://\(user)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
    }

    static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let scheme = text.range(of: "://"), scheme.upperBound < at else { return text }
        let auth = text[scheme.upperBound..<at]
        guard let colon = auth.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }
}

extension PostgresURL.TLSMode {
    /// The pool's TLS setting (the certificate verified against the system's roots).
    var client: PostgresClient.Configuration.TLS {
        switch self {
        case .disable: .disable
        case .prefer: .prefer(.makeClientConfiguration())
        case .require: .require(.makeClientConfiguration())
        }
    }

    /// The same for a single connection.
    func connection() throws -> PostgresConnection.Configuration.TLS {
        switch self {
        case .disable: .disable
        case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
    }
}
