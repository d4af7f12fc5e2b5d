import Foundation

/// What a token lets its holder do. A role is a set of these (`Grants.role(named:)`).
public struct Grants: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Register as a worker and run tasks.
    public static let register = Grants(rawValue: 1)
    /// Read runs, their history, state, events, workers and stats; export.
    public static let read = Grants(rawValue: 2)
    /// Submit, cancel, resume, update, fork, rewind and pin runs.
    public static let submit = Grants(rawValue: 4)
    /// Delete runs (cleanup) and import them.
    public static let administer = Grants(rawValue: 8)

    public static let all: Grants = [.register, .read, .submit, .administer]

    /// The roles a token file names, and what each may do.
    public static let roles: [(name: String, grants: Grants)] = [
        ("worker", [.register]),
        ("reader", [.read]),
        ("submitter", [.read, .submit]),
        ("admin", [.read, .submit, .administer]),
    ]

    public static func role(named name: String) -> Grants? { roles.first { $0.name == name }?.grants }

    /// The roles these grants amount to, for messages: "submitter", "worker+admin", "any".
    public var description: String {
        if self == .all { return "any" }
        var names = Self.roles.filter { $0.grants == self }.map(\.name)
        if names.isEmpty {
            // The fewest whole roles that cover these grants, largest first.
            var left = self
            for r in Self.roles.reversed() where left.contains(r.grants) && !r.grants.isEmpty {
                names.insert(r.name, at: 0)
                left.subtract(r.grants)
            }
        }
        return names.isEmpty ? "none" : names.joined(separator: "+")
    }
}

/// The tokens a coordinator accepts, each with what it grants: one `CAIRN_TOKEN` (which grants
/// everything, as a single shared token always has), or a token file (`--token-file`) of lines
///
///     # role   token
///     worker    7Yf0…
///     submitter Qk2d…
///     reader    c9Lw…
///     admin     Zr4m…
///     worker,submitter Hh1p…   (several roles)
///     T0k3n…                   (a token alone grants everything)
///
/// The file can be re-read while the coordinator runs (`reload`, on SIGHUP), so a token is rotated
/// by adding the new one, moving its holders over and removing the old one, with no restart. A
/// file that fails to parse on reload leaves the tokens as they were.
///
/// Tokens are kept only as SHA-256 digests and compared in constant time against every entry;
/// no message or log line names a token, only its line number or role.
public final class Keyring: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public var digest: [UInt8]
        public var grants: Grants
        /// Where it came from: "line 3 of cairn.tokens", "CAIRN_TOKEN".
        public var origin: String
    }

    public struct Problem: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// The file to re-read on `reload`, when the tokens came from one.
    public let file: String?
    private var entries: [Entry]
    private let lock = NSLock()

    public init(entries: [Entry], file: String? = nil) {
        self.entries = entries
        self.file = file
    }

    /// One token that grants everything (`CAIRN_TOKEN`, a test's token).
    public convenience init(token: String) {
        self.init(entries: [Entry(digest: Hashing.sha256(Array(token.utf8)), grants: .all, origin: "the token")])
    }

    /// The tokens from `file` when given, else `CAIRN_TOKEN` (granting everything), else nil:
    /// the coordinator then asks for no token.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Keyring? {
        if let file { return Keyring(entries: try read(file: file), file: file) }
        if let t = environment["CAIRN_TOKEN"], !t.isEmpty {
            return Keyring(entries: [Entry(digest: Hashing.sha256(Array(t.utf8)), grants: .all, origin: "CAIRN_TOKEN")])
        }
        return nil
    }

    static func read(file: String) throws -> [Entry] {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            throw Problem("cannot read the token file \(file): \(error.localizedDescription)")
        }
        return try parse(text, name: (file as NSString).lastPathComponent)
    }

    /// Parses a token file's text. Errors name the line, never the token on it.
    public static func parse(_ text: String, name: String) throws -> [Entry] {
        var entries: [Entry] = []
        var lineOf: [[UInt8]: Int] = [:]
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let n = i + 1
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            let token: String
            var grants: Grants = []
            switch words.count {
            case 1:
                token = words[0]
                grants = .all
            case 2:
                token = words[1]
                for role in words[0].split(separator: ",", omittingEmptySubsequences: false) {
                    guard let g = Grants.role(named: String(role)) else {
                        // Never echo the word: a token written before its role would land in a log.
                        throw Problem("line \(n) of \(name): the first word is not a role (one of: \(Grants.roles.map(\.name).joined(separator: ", "))); a line is ROLE[,ROLE] TOKEN, or a token alone, which grants everything")
                    }
                    grants.formUnion(g)
                }
            default:
                throw Problem("line \(n) of \(name): expected ROLE[,ROLE] TOKEN or a token alone, found \(words.count) words")
            }
            let digest = Hashing.sha256(Array(token.utf8))
            if let earlier = lineOf[digest] {
                throw Problem("line \(n) of \(name) repeats the token of line \(earlier): give each token one line, with all its roles (worker,submitter TOKEN)")
            }
            lineOf[digest] = n
            entries.append(Entry(digest: digest, grants: grants, origin: "line \(n) of \(name)"))
        }
        guard !entries.isEmpty else { throw Problem("the token file \(name) holds no token") }
        return entries
    }

    /// What `presented` grants, or nil for no known token. Every entry is compared, in constant
    /// time, whether or not an earlier one matched.
    public func grants(for presented: String) -> Grants? {
        let digest = Hashing.sha256(Array(presented.utf8))
        let current = lock.withLock { entries }
        var found: Grants? = nil
        for e in current where Hashing.constantTimeEquals(e.digest, digest) {
            found = e.grants
        }
        return found
    }

    /// What the token with this digest grants now: nil once it has been removed (a rotation).
    public func grants(digest: [UInt8]) -> Grants? {
        lock.withLock { entries.first { $0.digest == digest }?.grants }
    }

    public var count: Int { lock.withLock { entries.count } }

    /// How many tokens hold each role, for the log: "2 tokens: worker 1, submitter 1".
    public var summary: String {
        let current = lock.withLock { entries }
        var parts: [String] = []
        var counts: [String: Int] = [:]
        for e in current { counts[e.grants.description, default: 0] += 1 }
        for (k, v) in counts.sorted(by: { $0.key < $1.key }) { parts.append("\(k) \(v)") }
        return "\(current.count) token\(current.count == 1 ? "" : "s") (\(parts.joined(separator: ", ")))"
    }

    /// Re-reads the token file. On any problem the tokens stay as they were and the problem is
    /// thrown; with no file (`CAIRN_TOKEN`) there is nothing to re-read.
    @discardableResult
    public func reload() throws -> String {
        guard let file else { throw Problem("the token came from CAIRN_TOKEN: there is no token file to re-read") }
        let fresh = try Self.read(file: file)
        lock.withLock { entries = fresh }
        return summary
    }
}
