/// A value as it sits in a store: encoded JSON, zstd-compressed above a threshold, with its SHA-256.
///
/// The hash covers the uncompressed JSON bytes and is checked on every read, so a flipped byte
/// anywhere (data or hash) is reported, never turned into a silently wrong state.
public struct StoredBlob: Sendable, Equatable {
    public enum Codec: UInt8, Sendable {
        case json = 0
        case jsonZstd = 1
    }

    public var codec: Codec
    public var sha256: [UInt8]
    public var data: [UInt8]

    /// Values whose JSON is at least this many bytes are compressed.
    public static let compressionThreshold = 512
    /// The largest value a blob may decode to.
    public static let maxValueBytes = 64 * 1024 * 1024

    public init(codec: Codec, sha256: [UInt8], data: [UInt8]) {
        self.codec = codec; self.sha256 = sha256; self.data = data
    }

    public init(_ value: JSONValue) {
        let bytes = value.jsonBytes()
        self.sha256 = Hashing.sha256(bytes)
        // Compression is only a saving: if zstd fails, the value is stored as is (codec json),
        // which reads back the same.
        if bytes.count >= Self.compressionThreshold, let packed = try? Zstd.compress(bytes, level: 3), packed.count < bytes.count {
            self.codec = .jsonZstd
            self.data = packed
        } else {
            self.codec = .json
            self.data = bytes
        }
    }

    public struct IntegrityError: Error, CustomStringConvertible, Equatable {
        public var context: String
        public var reason: String
        public init(context: String, reason: String) { self.context = context; self.reason = reason }
        public var description: String { "integrity check failed for \(context): \(reason)" }
    }

    /// Decodes and verifies the blob; `context` names what it belongs to (run, checkpoint, channel).
    public func decode(context: @autoclosure () -> String) throws -> JSONValue {
        let bytes: [UInt8]
        switch codec {
        case .json: bytes = data
        case .jsonZstd:
            do { bytes = try Zstd.decompress(data, limit: Self.maxValueBytes) } catch {
                throw IntegrityError(context: context(), reason: "cannot decompress (\(error))")
            }
        }
        guard Hashing.sha256(bytes) == sha256 else {
            throw IntegrityError(context: context(), reason: "SHA-256 mismatch: stored data was altered or corrupted")
        }
        do { return try JSONValue.parse(bytes) } catch {
            throw IntegrityError(context: context(), reason: "not valid JSON (\(error))")
        }
    }
}
