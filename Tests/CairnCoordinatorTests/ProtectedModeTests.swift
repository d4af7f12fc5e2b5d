@testable import CairnCoordinator
import Testing

@Suite struct ProtectedModeTests {
    @Test func loopbackNeedsNoToken() {
        for host in ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"] {
            #expect(ProtectedMode.decide(host: host, hasToken: false, insecureNoAuth: false) == .allowed, "\(host)")
        }
    }

    @Test func aReachableAddressWithoutATokenIsRefusedSayingHowToMakeOne() {
        for host in ["0.0.0.0", "10.0.0.5", "::", "192.168.1.2", "127.0.0.1.example.com", "128.0.0.1"] {
            guard case .refused(let reason) = ProtectedMode.decide(host: host, hasToken: false, insecureNoAuth: false) else {
                Issue.record("\(host) was not refused")
                continue
            }
            #expect(reason.contains(host) && reason.contains("--token-file") && reason.contains("--insecure-no-auth"))
        }
    }

    @Test func aTokenOrTheFlagAllowsIt() {
        #expect(ProtectedMode.decide(host: "0.0.0.0", hasToken: true, insecureNoAuth: false) == .allowed)
        guard case .insecure(let warning) = ProtectedMode.decide(host: "0.0.0.0", hasToken: false, insecureNoAuth: true) else {
            Issue.record("the flag did not allow it")
            return
        }
        #expect(warning.contains("without a token"))
    }
}
