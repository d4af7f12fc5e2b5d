import NIOCore

/// One frame of the Cairn wire protocol.
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +---------------------------------------------------------------+
/// |            length (u32, big-endian): bytes that follow         |
/// +---------------+---------------+-------------------------------+
/// |   type (u8)   |  flags (u8)   |   payload (length - 2 bytes)  |
/// +---------------+---------------+                               +
/// |                              ...                              |
/// +---------------------------------------------------------------+
/// ```
///
/// Flag bit 0 (`compressed`) marks a zstd-compressed payload. Other flag bits are reserved
/// and must be zero.
public struct Frame: Sendable, Equatable {
    public var type: UInt8
    public var flags: Flags
    public var payload: ByteBuffer

    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let compressed = Flags(rawValue: 1 << 0)
        public static let known: Flags = [.compressed]
    }

    public init(type: UInt8, flags: Flags = [], payload: ByteBuffer) {
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    /// Bytes in the header: the length field, the type and the flags.
    public static let headerSize = 6
    /// The default largest frame (length field value) a peer accepts: 16 MiB.
    public static let defaultMaxSize = 16 * 1024 * 1024
}

/// Errors raised while framing. Each one ends the connection after an `Error` frame.
public enum FrameError: Error, Equatable, CustomStringConvertible {
    case tooLarge(length: Int, limit: Int)
    case tooShort(length: Int)
    case unknownFlags(UInt8)

    /// A "length" that is the start of a TLS record (an alert or a handshake, 0x15/0x16 then
    /// version 3.x): the peer speaks TLS where plaintext frames were expected.
    public var isTLSRecord: Bool {
        guard case .tooLarge(let length, _) = self else { return false }
        return (length >> 24 == 0x15 || length >> 24 == 0x16) && (length >> 16) & 0xFF == 0x03
    }

    public var description: String {
        switch self {
        case .tooLarge(let length, let limit): return "frame of \(length) bytes exceeds the limit of \(limit) bytes"
        case .tooShort(let length): return "frame length \(length) is shorter than the type and flags bytes"
        case .unknownFlags(let f): return "frame has unknown flag bits 0x\(String(f, radix: 16))"
        }
    }
}

/// Splits a byte stream into frames, refusing an oversized frame as soon as its length arrives
/// (NIOExtras' `LengthFieldBasedFrameDecoder` would buffer it first).
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame

    public let maxFrameSize: Int

    public init(maxFrameSize: Int = Frame.defaultMaxSize) {
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let len = Int(length)
        guard len <= maxFrameSize else { throw FrameError.tooLarge(length: len, limit: maxFrameSize) }
        guard len >= 2 else { throw FrameError.tooShort(length: len) }
        guard buffer.readableBytes >= 4 + len else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let (type, flags) = buffer.readMultipleIntegers(as: (UInt8, UInt8).self),
              let payload = buffer.readSlice(length: len - 2)
        else { return nil }
        let f = Frame.Flags(rawValue: flags)
        guard f.isSubset(of: .known) else { throw FrameError.unknownFlags(flags) }
        return Frame(type: type, flags: f, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }
}

/// Writes frames: header then payload.
public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        out.reserveCapacity(minimumWritableBytes: Frame.headerSize + data.payload.readableBytes)
        out.writeMultipleIntegers(UInt32(data.payload.readableBytes + 2), data.type, data.flags.rawValue)
        var payload = data.payload
        out.writeBuffer(&payload)
    }
}
