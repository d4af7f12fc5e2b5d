import CairnCore
import NIOCore
import SwiftProtobuf

/// The protocol version this build speaks.
public let cairnProtocolVersion: UInt32 = 1

/// The `type` byte of a frame: which message its payload holds.
public enum MessageType: UInt8, Sendable, CaseIterable {
    case hello = 1
    case welcome = 2
    case error = 3
    case taskAssignment = 10
    case heartbeat = 11
    case taskResult = 12
    case resultAck = 13
    case bundleRequest = 14
    case bundleData = 15
    case drain = 16
    case clientRequest = 30
    case clientResponse = 31
}

/// A decoded protocol message. One case per `MessageType`.
public enum WireMessage: Sendable, Equatable {
    case hello(Cairn_V1_Hello)
    case welcome(Cairn_V1_Welcome)
    case error(Cairn_V1_Error)
    case taskAssignment(Cairn_V1_TaskAssignment)
    case heartbeat(Cairn_V1_Heartbeat)
    case taskResult(Cairn_V1_TaskResult)
    case resultAck(Cairn_V1_ResultAck)
    case bundleRequest(Cairn_V1_BundleRequest)
    case bundleData(Cairn_V1_BundleData)
    case drain(Cairn_V1_Drain)
    case clientRequest(Cairn_V1_ClientRequest)
    case clientResponse(Cairn_V1_ClientResponse)

    public var type: MessageType {
        switch self {
        case .hello: return .hello
        case .welcome: return .welcome
        case .error: return .error
        case .taskAssignment: return .taskAssignment
        case .heartbeat: return .heartbeat
        case .taskResult: return .taskResult
        case .resultAck: return .resultAck
        case .bundleRequest: return .bundleRequest
        case .bundleData: return .bundleData
        case .drain: return .drain
        case .clientRequest: return .clientRequest
        case .clientResponse: return .clientResponse
        }
    }

    var body: any SwiftProtobuf.Message {
        switch self {
        case .hello(let m): return m
        case .welcome(let m): return m
        case .error(let m): return m
        case .taskAssignment(let m): return m
        case .heartbeat(let m): return m
        case .taskResult(let m): return m
        case .resultAck(let m): return m
        case .bundleRequest(let m): return m
        case .bundleData(let m): return m
        case .drain(let m): return m
        case .clientRequest(let m): return m
        case .clientResponse(let m): return m
        }
    }

    /// An error message with a code and text.
    public static func error(_ code: Cairn_V1_ErrorCode, _ message: String, requestID: UInt64 = 0) -> WireMessage {
        var e = Cairn_V1_Error()
        e.code = code
        e.message = message
        e.requestID = requestID
        return .error(e)
    }
}

/// Errors in a frame's payload. Each one is answered with an `Error` frame and a close.
public enum ProtocolError: Error, Equatable, CustomStringConvertible {
    case unknownMessageType(UInt8)
    case malformed(type: String, reason: String)
    case badCompression(String)
    case unexpected(expected: String, got: String)
    case versionMismatch(got: UInt32, supported: UInt32)

    public var description: String {
        switch self {
        case .unknownMessageType(let t): return "unknown message type \(t)"
        case .malformed(let type, let reason): return "malformed \(type) message: \(reason)"
        case .badCompression(let m): return "bad compressed payload: \(m)"
        case .unexpected(let expected, let got): return "expected \(expected), got \(got)"
        case .versionMismatch(let got, let supported):
            return "protocol version \(got) is not supported (this side speaks \(supported))"
        }
    }
}

/// Turns messages into frames and back: protobuf encoding, and zstd for large payloads.
public struct WireCodec: Sendable {
    /// Payloads at least this large are compressed when sent.
    public var compressionThreshold: Int
    /// The largest payload accepted after decompression.
    public var maxDecompressedSize: Int

    public init(compressionThreshold: Int = 64 * 1024, maxDecompressedSize: Int = 64 * 1024 * 1024) {
        self.compressionThreshold = compressionThreshold
        self.maxDecompressedSize = maxDecompressedSize
    }

    public func encode(_ message: WireMessage, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> Frame {
        let bytes: [UInt8] = try message.body.serializedBytes()
        if bytes.count >= compressionThreshold {
            let packed = try Zstd.compress(bytes, level: 1)
            if packed.count < bytes.count {
                return Frame(type: message.type.rawValue, flags: .compressed, payload: allocator.buffer(bytes: packed))
            }
        }
        return Frame(type: message.type.rawValue, flags: [], payload: allocator.buffer(bytes: bytes))
    }

    public func decode(_ frame: Frame) throws -> WireMessage {
        guard let type = MessageType(rawValue: frame.type) else {
            throw ProtocolError.unknownMessageType(frame.type)
        }
        var bytes = frame.payload.getBytes(at: frame.payload.readerIndex, length: frame.payload.readableBytes) ?? []
        if frame.flags.contains(.compressed) {
            do {
                bytes = try Zstd.decompress(bytes, limit: maxDecompressedSize)
            } catch {
                throw ProtocolError.badCompression(String(describing: error))
            }
        }
        do {
            switch type {
            case .hello: return .hello(try Cairn_V1_Hello(serializedBytes: bytes))
            case .welcome: return .welcome(try Cairn_V1_Welcome(serializedBytes: bytes))
            case .error: return .error(try Cairn_V1_Error(serializedBytes: bytes))
            case .taskAssignment: return .taskAssignment(try Cairn_V1_TaskAssignment(serializedBytes: bytes))
            case .heartbeat: return .heartbeat(try Cairn_V1_Heartbeat(serializedBytes: bytes))
            case .taskResult: return .taskResult(try Cairn_V1_TaskResult(serializedBytes: bytes))
            case .resultAck: return .resultAck(try Cairn_V1_ResultAck(serializedBytes: bytes))
            case .bundleRequest: return .bundleRequest(try Cairn_V1_BundleRequest(serializedBytes: bytes))
            case .bundleData: return .bundleData(try Cairn_V1_BundleData(serializedBytes: bytes))
            case .drain: return .drain(try Cairn_V1_Drain(serializedBytes: bytes))
            case .clientRequest: return .clientRequest(try Cairn_V1_ClientRequest(serializedBytes: bytes))
            case .clientResponse: return .clientResponse(try Cairn_V1_ClientResponse(serializedBytes: bytes))
            }
        } catch {
            throw ProtocolError.malformed(type: "\(type)", reason: String(describing: error))
        }
    }
}
