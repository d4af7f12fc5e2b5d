import ArgumentParser
import CairnCore
import CairnTLS

/// What a worker or a client presents to a coordinator: its token and, for TLS, the CA it
/// trusts and its own certificate. Declared once, for `cairn-worker` and every `cairn` command
/// that talks to a coordinator; each falls back to the environment (`CAIRN_TOKEN`,
/// `CAIRN_TLS_CA`, `CAIRN_TLS_CERT`, `CAIRN_TLS_KEY`).
public struct PeerCredentials: ParsableArguments {
    @Option(name: .customLong("token-file"), help: "A file holding the coordinator's token (or CAIRN_TOKEN).")
    public var tokenFile: String?

    @Option(name: .customLong("tls-ca"), help: "Connect with TLS, trusting the coordinator's certificate if this CA signed it (or CAIRN_TLS_CA).")
    public var tlsCA: String?

    @Option(name: .customLong("tls-cert"), help: "The certificate to present, for a coordinator that asks for one (mutual TLS; or CAIRN_TLS_CERT).")
    public var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The key of --tls-cert (or CAIRN_TLS_KEY).")
    public var tlsKey: String?

    public init() {}

    /// The token from --token-file, else CAIRN_TOKEN; nil when neither gives one.
    public func token() throws -> String? { try Tokens.read(file: tokenFile) }

    /// The TLS files from the options, else the environment; nil for plaintext.
    public var tls: TLSFiles? {
        let files = TLSFiles(certificate: tlsCert, key: tlsKey, ca: tlsCA).withEnvironment()
        return files.isEmpty ? nil : files
    }
}
