/// The file `cairn export` writes and `cairn import` reads: one or more runs, self-contained.
///
/// Layout: the magic line `CAIRN-EXPORT-1\n`, the SHA-256 (32 bytes) of everything after it,
/// then zstd of: a 4-byte big-endian manifest length, the manifest (JSON: format, version,
/// created_at, and per run its id, graph, status, byte count and SHA-256), and each run's part
/// (its records as JSON, in manifest order; a fork's parent comes before the fork). A file cut
/// short or altered anywhere fails the outer SHA-256, or a part's, and is refused whole.
public struct ExportArchive: Sendable, Equatable {
    public struct Part: Sendable, Equatable {
        public var runID: String
        public var graph: String
        public var status: String
        /// The run's records as JSON (what the coordinator exported).
        public var bytes: [UInt8]
        public var sha256: String
        public init(runID: String, graph: String, status: String, bytes: [UInt8], sha256: String) {
            self.runID = runID; self.graph = graph; self.status = status; self.bytes = bytes; self.sha256 = sha256
        }
    }

    public var createdAt: Double
    public var parts: [Part]

    public init(createdAt: Double, parts: [Part]) { self.createdAt = createdAt; self.parts = parts }

    public static let magic = Array("CAIRN-EXPORT-1\n".utf8)
    /// The largest export a file may unpack to.
    public static let maxBytes = 1 << 34

    public struct Invalid: Error, CustomStringConvertible, Equatable {
        public var description: String
        init(_ d: String) { description = d }
    }

    public var manifest: JSONValue {
        .object(["format": .string("cairn-export"), "version": .int(1), "created_at": .double(createdAt),
                 "runs": .array(parts.map { p in
                     .object(["run_id": .string(p.runID), "graph": .string(p.graph), "status": .string(p.status),
                              "bytes": .int(Int64(p.bytes.count)), "sha256": .string(p.sha256)])
                 })])
    }

    public func encode() throws -> [UInt8] {
        for p in parts where Hashing.sha256Hex(p.bytes) != p.sha256 {
            throw Invalid("run \(p.runID)'s part does not match its SHA-256")
        }
        let m = manifest.jsonBytes()
        var body: [UInt8] = [UInt8(truncatingIfNeeded: m.count >> 24), UInt8(truncatingIfNeeded: m.count >> 16),
                             UInt8(truncatingIfNeeded: m.count >> 8), UInt8(truncatingIfNeeded: m.count)]
        body += m
        for p in parts { body += p.bytes }
        let z = try Zstd.compress(body, level: 3)
        return Self.magic + Hashing.sha256(z) + z
    }

    public static func decode(_ file: [UInt8]) throws -> ExportArchive {
        guard file.count >= magic.count, Array(file.prefix(magic.count)) == magic else {
            throw Invalid("not a Cairn export file (it does not start with \"CAIRN-EXPORT-1\")")
        }
        guard file.count > magic.count + 32 else { throw Invalid("the file is truncated (\(file.count) bytes)") }
        let sha = Array(file[magic.count..<(magic.count + 32)])
        let z = Array(file[(magic.count + 32)...])
        guard Hashing.sha256(z) == sha else {
            throw Invalid("the file is damaged, truncated or altered: the SHA-256 of its contents does not match the one it was written with")
        }
        let body: [UInt8]
        do { body = try Zstd.decompress(z, limit: maxBytes) } catch { throw Invalid("the file's contents cannot be decompressed (\(error))") }
        guard body.count >= 4 else { throw Invalid("the file has no manifest") }
        let n = body[0..<4].reduce(0) { $0 << 8 | Int($1) }
        guard n <= body.count - 4 else { throw Invalid("the manifest is cut short") }
        let m: JSONValue
        do { m = try JSONValue.parse(Array(body[4..<(4 + n)])) } catch { throw Invalid("the manifest is not JSON (\(error))") }
        guard m["format"]?.stringValue == "cairn-export" else { throw Invalid("the manifest is not a Cairn export's") }
        guard m["version"]?.intValue == 1 else { throw Invalid("export format version \(m["version"].map { "\($0.jsonBytes())" } ?? "?") is not one this Cairn reads (1)") }
        guard let createdAt = m["created_at"]?.doubleValue, let runs = m["runs"]?.arrayValue else { throw Invalid("the manifest lacks created_at or runs") }
        var parts: [Part] = []
        var at = 4 + n
        for r in runs {
            guard let id = r["run_id"]?.stringValue, let graph = r["graph"]?.stringValue, let status = r["status"]?.stringValue,
                  let count = r["bytes"]?.intValue, count >= 0, let sha = r["sha256"]?.stringValue else {
                throw Invalid("a run in the manifest lacks run_id, graph, status, bytes or sha256")
            }
            guard Int(count) <= body.count - at else { throw Invalid("run \(id)'s part is cut short") }
            let bytes = Array(body[at..<(at + Int(count))])
            at += Int(count)
            guard Hashing.sha256Hex(bytes) == sha else { throw Invalid("run \(id)'s part does not match its SHA-256") }
            parts.append(Part(runID: id, graph: graph, status: status, bytes: bytes, sha256: sha))
        }
        guard at == body.count else { throw Invalid("the file holds \(body.count - at) bytes the manifest does not name") }
        return ExportArchive(createdAt: createdAt, parts: parts)
    }
}
