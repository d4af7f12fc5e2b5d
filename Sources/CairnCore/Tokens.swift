import Foundation

/// The shared secret every peer presents: from a file (`--token-file`) or `CAIRN_TOKEN`.
public enum Tokens {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// The token from `file` when given, else from `CAIRN_TOKEN`, else nil (no token).
    public static func read(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        if let file {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw Problem(description: "cannot read the token file \(file): \(error.localizedDescription)")
            }
            let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !t.isEmpty else { throw Problem(description: "the token file \(file) is empty") }
            return t
        }
        if let t = environment["CAIRN_TOKEN"], !t.isEmpty { return t }
        return nil
    }
}
