import Foundation

/// The folder of a graph file, packed so that any worker can run its node programs.
///
/// ```
/// archive  = zstd( "CBN1" | u32 count | entry* )
/// entry    = u16 path length | path (UTF-8, relative, '/'-separated) | u32 mode | u32 size | bytes
/// ```
///
/// A bundle is addressed by the SHA-256 of its packed bytes. Hidden files and folders
/// (`.git`, `.venv`, …) are left out; the packed size is capped.
public struct BundleArchive: Sendable {
    public struct Entry: Sendable, Equatable {
        public var path: String
        public var mode: UInt32
        public var data: [UInt8]
        public init(path: String, mode: UInt32, data: [UInt8]) { self.path = path; self.mode = mode; self.data = data }
    }

    public enum Failure: Error, CustomStringConvertible {
        case tooLarge(bytes: Int, limit: Int, folder: String)
        case malformed(String)
        case unsafePath(String)

        public var description: String {
            switch self {
            case .tooLarge(let bytes, let limit, let folder):
                return "the graph's folder \(folder) holds \(bytes) bytes, over the bundle limit of \(limit) bytes; move large data out of it"
            case .malformed(let m): return "malformed bundle: \(m)"
            case .unsafePath(let p): return "bundle entry '\(p)' would land outside its folder"
            }
        }
    }

    public static let defaultLimit = 8 * 1024 * 1024

    public var entries: [Entry]
    public var packed: [UInt8]
    public var hash: String

    /// Packs every regular file under `folder` (skipping hidden ones), up to `limit` bytes of content.
    public static func pack(folder: String, limit: Int = defaultLimit) throws -> BundleArchive {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: folder).standardizedFileURL
        var entries: [Entry] = []
        var total = 0
        func walk(_ dir: URL, _ prefix: String) throws {
            let names = try fm.contentsOfDirectory(atPath: dir.path).sorted()
            for name in names where !name.hasPrefix(".") && name != "__pycache__" {
                let url = dir.appendingPathComponent(name)
                let rel = prefix.isEmpty ? name : prefix + "/" + name
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else { continue }
                if isDir.boolValue {
                    try walk(url, rel)
                } else {
                    let attrs = try fm.attributesOfItem(atPath: url.path)
                    let size = (attrs[.size] as? NSNumber)?.intValue ?? 0
                    total += size
                    if total > limit { throw Failure.tooLarge(bytes: total, limit: limit, folder: folder) }
                    let mode = (attrs[.posixPermissions] as? NSNumber)?.uint32Value ?? 0o644
                    let data = try [UInt8](Data(contentsOf: url))
                    entries.append(Entry(path: rel, mode: mode, data: data))
                }
            }
        }
        try walk(root, "")
        return try BundleArchive(entries: entries)
    }

    public init(entries: [Entry]) throws {
        self.entries = entries
        var raw: [UInt8] = Array("CBN1".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { raw.append(contentsOf: $0) } }
        u32(UInt32(entries.count))
        for e in entries {
            let p = Array(e.path.utf8)
            withUnsafeBytes(of: UInt16(p.count).bigEndian) { raw.append(contentsOf: $0) }
            raw.append(contentsOf: p)
            u32(e.mode)
            u32(UInt32(e.data.count))
            raw.append(contentsOf: e.data)
        }
        self.packed = try Zstd.compress(raw, level: 3)
        self.hash = Hashing.sha256Hex(packed)
    }

    /// Reads packed bytes, checking that they hash to `expectedHash` when one is given.
    public init(packed: [UInt8], expectedHash: String? = nil, limit: Int = 4 * defaultLimit) throws {
        let hash = Hashing.sha256Hex(packed)
        if let expectedHash, expectedHash != hash {
            throw Failure.malformed("content hashes to \(hash), expected \(expectedHash)")
        }
        let raw = try Zstd.decompress(packed, limit: limit)
        var i = 0
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, i + n <= raw.count else { throw Failure.malformed("truncated") }
            defer { i += n }
            return raw[i..<(i + n)]
        }
        func u32() throws -> UInt32 { try take(4).reduce(0) { $0 << 8 | UInt32($1) } }
        guard try Array(take(4)) == Array("CBN1".utf8) else { throw Failure.malformed("bad magic") }
        let count = try u32()
        var entries: [Entry] = []
        for _ in 0..<count {
            let plen = Int(try take(2).reduce(0) { $0 << 8 | UInt16($1) })
            let path = String(decoding: try take(plen), as: UTF8.self)
            let mode = try u32()
            let size = Int(try u32())
            entries.append(Entry(path: path, mode: mode, data: Array(try take(size))))
        }
        self.entries = entries
        self.packed = packed
        self.hash = hash
    }

    /// Writes the entries under `folder` (created if needed), refusing paths that escape it.
    public func unpack(into folder: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for e in entries {
            let parts = e.path.split(separator: "/")
            if e.path.hasPrefix("/") || parts.contains("..") || parts.isEmpty { throw Failure.unsafePath(e.path) }
            let dest = (folder as NSString).appendingPathComponent(e.path)
            try fm.createDirectory(atPath: (dest as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = fm.createFile(atPath: dest, contents: Data(e.data), attributes: [.posixPermissions: NSNumber(value: e.mode & 0o777)])
        }
    }
}
