import CairnCore
import CairnCoordinator
import CairnProtocol
import Foundation
import Testing

/// Token files, what each role may do, and re-reading the file: the rules every door asks.
@Suite struct AccessTests {
    static let file = """
        # role   token
        worker    wrk-0123456789
        submitter sub-0123456789

        reader    rdr-0123456789
        admin     adm-0123456789
        worker,submitter both-0123456789
        all-0123456789
        """

    @Test func aTokenFileGivesEachTokenItsRoles() throws {
        let ring = Keyring(entries: try Keyring.parse(Self.file, name: "cairn.tokens"))
        #expect(ring.grants(for: "wrk-0123456789") == [.register])
        #expect(ring.grants(for: "sub-0123456789") == [.read, .submit])
        #expect(ring.grants(for: "rdr-0123456789") == [.read])
        #expect(ring.grants(for: "adm-0123456789") == [.read, .submit, .administer])
        #expect(ring.grants(for: "both-0123456789") == [.register, .read, .submit])
        #expect(ring.grants(for: "all-0123456789") == .all)
        #expect(ring.grants(for: "wrk-012345678") == nil)
        #expect(ring.grants(for: "") == nil)
        #expect(ring.count == 6)
        #expect(Grants([.register, .read, .submit]).description == "worker+submitter")
        #expect(Grants.all.description == "any" && Grants([.read]).description == "reader")
        #expect(ring.summary.hasPrefix("6 tokens"), "\(ring.summary)")
    }

    @Test func aBadTokenFileNamesTheLineAndNeverTheToken() {
        let cases: [(String, String)] = [
            ("worker ok-1\nwroker secret-token-1\n", "line 2 of t: the first word is not a role"),
            ("secret-token-1 worker\n", "line 1 of t: the first word is not a role"),
            ("worker a b\n", "line 1 of t: expected ROLE[,ROLE] TOKEN"),
            ("worker secret-token-1\nreader secret-token-1\n", "line 2 of t repeats the token of line 1"),
            ("# only a comment\n\n", "holds no token"),
            ("worker, secret-token-1\n", "line 1 of t: the first word is not a role"),
        ]
        for (text, expected) in cases {
            do {
                _ = try Keyring.parse(text, name: "t")
                Issue.record("parsed: \(text)")
            } catch {
                let message = "\(error)"
                #expect(message.contains(expected), "\(message)")
                #expect(!message.contains("secret-token"), "a token in an error: \(message)")
            }
        }
    }

    @Test func reloadingTakesTheNewFileAndKeepsTheOldOneWhenTheNewOneIsBad() throws {
        let path = NSTemporaryDirectory() + "cairn-keyring-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "submitter old-0123456789\n".write(toFile: path, atomically: true, encoding: .utf8)
        let ring = try #require(try Keyring.load(file: path, environment: [:]))
        #expect(ring.grants(for: "old-0123456789") == [.read, .submit])
        let digest = Hashing.sha256(Array("old-0123456789".utf8))

        try "submitter new-0123456789\nreader old-0123456789\n".write(toFile: path, atomically: true, encoding: .utf8)
        _ = try ring.reload()
        #expect(ring.grants(for: "new-0123456789") == [.read, .submit])
        #expect(ring.grants(digest: digest) == [.read], "a changed role applies to connections already open")

        try "submitter new-0123456789\nnobody x\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: Keyring.Problem.self) { try ring.reload() }
        #expect(ring.grants(for: "new-0123456789") == [.read, .submit], "a bad file leaves the tokens as they were")
        #expect(ring.grants(for: "old-0123456789") == [.read])

        try "submitter new-0123456789\n".write(toFile: path, atomically: true, encoding: .utf8)
        _ = try ring.reload()
        #expect(ring.grants(for: "old-0123456789") == nil && ring.grants(digest: digest) == nil, "a removed token stops working")
    }

    @Test func cairnTokenAloneGrantsEverythingAndNoTokenMeansNoKeyring() throws {
        let ring = try #require(try Keyring.load(file: nil, environment: ["CAIRN_TOKEN": "shared"]))
        #expect(ring.grants(for: "shared") == .all && ring.grants(for: "other") == nil)
        #expect(throws: Keyring.Problem.self) { try ring.reload() }
        #expect(try Keyring.load(file: nil, environment: [:]) == nil)
        #expect(throws: Keyring.Problem.self) { try Keyring.load(file: "/nonexistent/cairn.tokens", environment: ["CAIRN_TOKEN": "x"]) }
    }

    @Test func eachRequestNeedsWhatItsKindChanges() throws {
        let reads: [Cairn_V1_ClientRequest.OneOf_Body] = [
            .status(.init()), .list(.init()), .history(.init()), .state(.init()), .workers(.init()), .stats(.init()),
            .watch(.init()), .records(.init()), .verify(.init()), .debug(.init()), .exportRun(.init()),
            .cleanup({ var c = Cairn_V1_CleanupRequest(); c.dryRun = true; return c }()),
        ]
        let changes: [Cairn_V1_ClientRequest.OneOf_Body] = [
            .submit(.init()), .cancel(.init()), .resume(.init()), .update(.init()), .fork(.init()), .pin(.init()),
        ]
        let administers: [Cairn_V1_ClientRequest.OneOf_Body] = [.cleanup(.init()), .importRun(.init())]
        let reader = Grants.role(named: "reader")!, submitter = Grants.role(named: "submitter")!
        let admin = Grants.role(named: "admin")!, worker = Grants.role(named: "worker")!
        for body in reads {
            #expect(Access.needs(body) == .read)
            try Access.check(body, reader)
            #expect(throws: (any Error).self) { try Access.check(body, worker) }
        }
        for body in changes {
            #expect(Access.needs(body) == .submit)
            try Access.check(body, submitter)
            try Access.check(body, admin)
            #expect(throws: (any Error).self) { try Access.check(body, reader) }
        }
        for body in administers {
            #expect(Access.needs(body) == .administer)
            try Access.check(body, admin)
            #expect(throws: (any Error).self) { try Access.check(body, submitter) }
        }
        do {
            try Access.check(.submit(.init()), reader)
            Issue.record("a reader submitted")
        } catch {
            let (code, message) = ClientDoor.failure(error)
            #expect(code == .errorPermissionDenied)
            #expect(message == "this token's role (reader) may not submit a run: that takes a submitter or admin token", "\(message)")
        }
    }
}
