import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// TLS for the coordinator's port, its workers and clients (swift-nio-ssl): the files each side
/// names, the contexts made from them, and what a failed handshake means to a person.
///
/// - coordinator: `--tls-cert`, `--tls-key`, and with `--tls-client-ca` mutual TLS (every worker
///   and client presents a certificate signed by that CA);
/// - worker and client: `--tls-ca` (the CA that signed the coordinator's certificate, whose names
///   must include the host they dial), and `--tls-cert`/`--tls-key` for mutual TLS.
public struct TLSFiles: Sendable, Equatable {
    public var certificate: String?
    public var key: String?
    /// Server: the CA client certificates must be signed by. Client: the CA the server's must be.
    public var ca: String?

    public init(certificate: String? = nil, key: String? = nil, ca: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
    }

    /// From `CAIRN_TLS_CA`, `CAIRN_TLS_CERT` and `CAIRN_TLS_KEY` where the flags gave nothing.
    public func withEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> TLSFiles {
        var f = self
        func pick(_ v: String?, _ k: String) -> String? { v ?? env[k].flatMap { $0.isEmpty ? nil : $0 } }
        f.ca = pick(ca, "CAIRN_TLS_CA")
        f.certificate = pick(certificate, "CAIRN_TLS_CERT")
        f.key = pick(key, "CAIRN_TLS_KEY")
        return f
    }

    public var isEmpty: Bool { certificate == nil && key == nil && ca == nil }
}

public struct TLSProblem: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public enum CairnTLS {
    /// The coordinator's context: its certificate chain and key; with a client CA, a client
    /// certificate signed by it is required.
    public static func serverContext(_ files: TLSFiles) throws -> NIOSSLContext {
        try context(try serverConfiguration(files))
    }

    /// The coordinator's TLS configuration (also what the HTTP API serves with). A certificate
    /// that has expired (or is not valid yet) is refused here: workers and clients would refuse it.
    public static func serverConfiguration(_ files: TLSFiles) throws -> TLSConfiguration {
        guard let certFile = files.certificate, let keyFile = files.key else {
            throw TLSProblem("TLS needs both --tls-cert and --tls-key")
        }
        let chain = try certificates(certFile, "--tls-cert")
        if let problem = validity(of: chain[0]) {
            throw TLSProblem("--tls-cert \(certFile): the certificate \(problem); workers and clients would refuse it")
        }
        let key = try privateKey(keyFile, "--tls-key")
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        config.minimumTLSVersion = .tlsv12
        if let ca = files.ca {
            config.trustRoots = .certificates(try certificates(ca, "--tls-client-ca"))
            config.certificateVerification = .noHostnameVerification
        }
        return config
    }

    /// A worker's or client's context: the coordinator's CA, and for mutual TLS its own certificate
    /// and key (refused here when it has expired: the coordinator would refuse it). `holder`
    /// names whose certificate it is, for that message.
    public static func clientContext(_ files: TLSFiles, holder: String = "client") throws -> NIOSSLContext {
        guard let ca = files.ca else { throw TLSProblem("TLS needs --tls-ca (or CAIRN_TLS_CA): the CA that signed the coordinator's certificate") }
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv12
        config.trustRoots = .certificates(try certificates(ca, "--tls-ca"))
        switch (files.certificate, files.key) {
        case (let c?, let k?):
            let chain = try certificates(c, "--tls-cert")
            if let problem = validity(of: chain[0]) {
                throw TLSProblem("--tls-cert \(c): this \(holder)'s certificate \(problem); the coordinator would refuse it")
            }
            config.certificateChain = chain.map { .certificate($0) }
            config.privateKey = .privateKey(try privateKey(k, "--tls-key"))
        case (nil, nil): break
        default: throw TLSProblem("a client certificate needs both --tls-cert and --tls-key")
        }
        return try context(config)
    }

    /// The handler a worker or client puts first on its connection to `host`. A name is checked
    /// against the certificate's DNS names (and sent as SNI); an IP address against its IP names.
    public static func clientHandler(_ context: NIOSSLContext, host: String) throws -> NIOSSLClientHandler {
        let isIP = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        return try NIOSSLClientHandler(context: context, serverHostname: isIP ? nil : host)
    }

    static func certificates(_ path: String, _ flag: String) throws -> [NIOSSLCertificate] {
        guard FileManager.default.isReadableFile(atPath: path) else { throw TLSProblem("\(flag) \(path): no such readable file") }
        do {
            let certs = try NIOSSLCertificate.fromPEMFile(path)
            guard !certs.isEmpty else { throw TLSProblem("\(flag) \(path): no PEM certificate in it") }
            return certs
        } catch let p as TLSProblem { throw p } catch {
            throw TLSProblem("\(flag) \(path): not a PEM certificate (\(error))")
        }
    }

    static func privateKey(_ path: String, _ flag: String) throws -> NIOSSLPrivateKey {
        guard FileManager.default.isReadableFile(atPath: path) else { throw TLSProblem("\(flag) \(path): no such readable file") }
        do { return try NIOSSLPrivateKey(file: path, format: .pem) } catch {
            throw TLSProblem("\(flag) \(path): not a PEM private key (\(error))")
        }
    }

    static func context(_ config: TLSConfiguration) throws -> NIOSSLContext {
        do { return try NIOSSLContext(configuration: config) } catch {
            throw TLSProblem("the certificate and key do not go together, or are unusable: \(error)")
        }
    }

    /// Whether an error is a TLS one (a failed handshake, an alert from the peer).
    public static func isTLSError(_ error: any Error) -> Bool {
        error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
    }

    /// The peer closed the connection in the middle of the handshake: a coordinator stopping,
    /// restarting or stepping down just then, or a plaintext port that dropped the ClientHello.
    /// Of several coordinators, the next is asked; alone, it is said as a failed handshake.
    public static func closedDuringHandshake(_ error: any Error) -> Bool {
        isTLSError(error) && "\(error)".contains("uncleanShutdown")
    }

    /// A failed handshake, as the worker or client tells its person (one line).
    public static func describeClientFailure(_ error: any Error, files: TLSFiles, host: String) -> String {
        let text = "\(error)"
        if text.contains("CERTIFICATE_REQUIRED") || text.contains("HANDSHAKE_FAILURE_ON_CLIENT_HELLO") && files.certificate == nil {
            return "the coordinator requires a client certificate (mutual TLS): pass --tls-cert and --tls-key"
        }
        if text.contains("ALERT_CERTIFICATE_EXPIRED") {
            return "the coordinator refused this client's certificate \(files.certificate ?? ""): it has expired"
        }
        if text.contains("ALERT_UNKNOWN_CA") || text.contains("ALERT_BAD_CERTIFICATE") || text.contains("ALERT_CERTIFICATE_UNKNOWN") {
            return "the coordinator refused this client's certificate \(files.certificate ?? ""): it is not signed by the CA the coordinator trusts (--tls-client-ca)"
        }
        if let e = error as? NIOSSLExtraError, "\(e)".contains("failedToValidateHostname") || text.contains("hostname") {
            return "the coordinator's certificate does not name \(host): make it with that name (scripts/certs --host \(host)) or dial a name it has"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the coordinator's certificate was not accepted: \(files.ca.map { "it is not signed by the CA in \($0), or it has expired or is not yet valid" } ?? "no --tls-ca")"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") || text.contains("uncleanShutdown") {
            return "the coordinator at \(host) did not answer TLS (is it started with --tls-cert? a plaintext port takes no --tls-ca)"
        }
        return "TLS handshake failed: \(text)"
    }

    /// A failed handshake, as the coordinator logs it.
    public static func describeServerFailure(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") { return "a peer presented no client certificate (--tls-client-ca requires one)" }
        if text.contains("ALERT_UNKNOWN_CA") || text.contains("ALERT_BAD_CERTIFICATE") {
            return "a peer did not accept this coordinator's certificate (its --tls-ca is not the CA that signed --tls-cert)"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") { return "a peer's client certificate was not accepted (not signed by --tls-client-ca, expired or not yet valid)" }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("UNKNOWN_PROTOCOL") {
            return "a peer spoke plaintext to the TLS port (its worker or client needs --tls-ca)"
        }
        return "TLS handshake failed: \(text)"
    }

    /// Whether a certificate has expired (or is not valid yet), and when; nil while it is valid.
    static func validity(of cert: NIOSSLCertificate, now: Date = Date()) -> String? {
        let before = Date(timeIntervalSince1970: Double(cert.notValidBefore)), after = Date(timeIntervalSince1970: Double(cert.notValidAfter))
        let f = ISO8601DateFormatter()
        if now > after { return "expired \(f.string(from: after))" }
        if now < before { return "not valid until \(f.string(from: before))" }
        return nil
    }
}

/// Logs a connection's failed TLS handshake (through `onFailure`) and closes it; the
/// coordinator's other connections never notice.
public final class TLSFailureReporter: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny
    let onFailure: @Sendable (String) -> Void
    var handshook = false

    public init(onFailure: @escaping @Sendable (String) -> Void) { self.onFailure = onFailure }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { handshook = true }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !handshook && CairnTLS.isTLSError(error) {
            onFailure(CairnTLS.describeServerFailure(error))
            context.close(promise: nil)
            return
        }
        context.fireErrorCaught(error)
    }
}
