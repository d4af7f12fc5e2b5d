import Foundation

/// Whether the coordinator may listen where it was asked to (Redis's protected mode, for a port
/// that runs code): without a token, only loopback addresses, unless the operator says they mean
/// it. Decided here, once, from the address and the configuration; the coordinator refuses to
/// start or warns as this says.
public enum ProtectedMode: Equatable, Sendable {
    /// A token is required from every peer, or the address is reachable from this machine only.
    case allowed
    /// No credentials on a reachable address, as `--insecure-no-auth` asked: every start warns.
    case insecure(warning: String)
    case refused(reason: String)

    public static func decide(host: String, hasToken: Bool, insecureNoAuth: Bool) -> ProtectedMode {
        if hasToken || isLoopback(host) { return .allowed }
        let danger = "anyone who can reach \(host) may submit a graph whose exec nodes run any command on every worker"
        if insecureNoAuth { return .insecure(warning: "listening on \(host) without a token (--insecure-no-auth): \(danger)") }
        return .refused(reason: """
            refusing to listen on \(host) without a token: \(danger). Make one and give it to the coordinator, \
            its workers and clients (head -c 32 /dev/urandom | base64 > cairn.token; --token-file cairn.token, or CAIRN_TOKEN), \
            listen on 127.0.0.1, or pass --insecure-no-auth if this network is yours alone
            """)
    }

    /// 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: ["[", "]"])
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
