import CairnProtocol
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@Suite struct FrameCodecTests {
    static func wire(_ frames: [Frame]) -> ByteBuffer {
        var out = ByteBuffer()
        for f in frames { try! FrameEncoder().encode(data: f, out: &out) }
        return out
    }

    static let samples: [Frame] = [
        Frame(type: 1, payload: ByteBuffer(string: "hello")),
        Frame(type: 12, flags: .compressed, payload: ByteBuffer(bytes: [0, 1, 2, 255])),
        Frame(type: 3, payload: ByteBuffer()),
        Frame(type: 30, payload: ByteBuffer(repeating: 7, count: 70_000)),
    ]

    @Test func verifierWholeDripFedAndCoalesced() throws {
        let pairs = Self.samples.map { (Self.wire([$0]), [$0]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { FrameDecoder(maxFrameSize: 1 << 20) }
    }

    @Test(arguments: [1, 3, 7, 64, 4096])
    func chunkedInputGivesTheSameFrames(chunk: Int) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1 << 20)))
        var all = Self.wire(Self.samples)
        while all.readableBytes > 0 {
            let slice = all.readSlice(length: min(chunk, all.readableBytes))!
            try channel.writeInbound(slice)
        }
        var got: [Frame] = []
        while let f: Frame = try channel.readInbound() { got.append(f) }
        #expect(got == Self.samples)
        #expect(try channel.finish().isClean)
    }

    @Test func oversizedFrameIsRefusedAsSoonAsTheHeaderArrives() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1024)))
        var header = ByteBuffer()
        header.writeInteger(UInt32(1025))  // only the length: no payload sent
        #expect(throws: FrameError.tooLarge(length: 1025, limit: 1024)) { try channel.writeInbound(header) }
        _ = try? channel.finish()
    }

    @Test(arguments: [UInt32.max, UInt32(Int32.max), UInt32(16 * 1024 * 1024 + 1)])
    func maliciousLengths(length: UInt32) throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        var b = ByteBuffer()
        b.writeInteger(length)
        b.writeBytes([1, 0, 1, 2, 3])
        #expect(throws: FrameError.self) { try channel.writeInbound(b) }
        _ = try? channel.finish()
    }

    @Test func lengthShorterThanTheHeaderIsAnError() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        var b = ByteBuffer()
        b.writeInteger(UInt32(1))
        b.writeBytes([9])
        #expect(throws: FrameError.tooShort(length: 1)) { try channel.writeInbound(b) }
        _ = try? channel.finish()
    }

    @Test func unknownFlagBitsAreAnError() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        var b = ByteBuffer()
        b.writeInteger(UInt32(2))
        b.writeBytes([1, 0b1000_0000])
        #expect(throws: FrameError.unknownFlags(0b1000_0000)) { try channel.writeInbound(b) }
        _ = try? channel.finish()
    }

    @Test func encoderWritesTheDocumentedHeader() throws {
        var out = ByteBuffer()
        try FrameEncoder().encode(data: Frame(type: 10, flags: .compressed, payload: ByteBuffer(bytes: [0xAA, 0xBB])), out: &out)
        #expect(out.readableBytesView.elementsEqual([0, 0, 0, 4, 10, 1, 0xAA, 0xBB]))
    }
}

@Suite struct WireCodecTests {
    @Test func messagesRoundTrip() throws {
        let codec = WireCodec()
        var hello = Cairn_V1_Hello()
        hello.protocolVersion = 1
        hello.role = .worker
        hello.token = "t"
        hello.worker.slots = 4
        hello.worker.kinds = ["echo", "exec"]
        guard case .hello(let back) = try codec.decode(try codec.encode(.hello(hello))) else {
            Issue.record("not a hello"); return
        }
        #expect(back == hello)
    }

    @Test func largePayloadsAreCompressedAndRestored() throws {
        let codec = WireCodec(compressionThreshold: 1024)
        var a = Cairn_V1_TaskAssignment()
        a.stateJson = .init(repeating: UInt8(ascii: "x"), count: 200_000)
        let frame = try codec.encode(.taskAssignment(a))
        #expect(frame.flags.contains(.compressed))
        #expect(frame.payload.readableBytes < 10_000)
        guard case .taskAssignment(let back) = try codec.decode(frame) else { Issue.record("wrong type"); return }
        #expect(back == a)
    }

    @Test func unknownTypesAndGarbageAreTypedErrors() throws {
        let codec = WireCodec()
        #expect(throws: ProtocolError.unknownMessageType(99)) { try codec.decode(Frame(type: 99, payload: ByteBuffer())) }
        #expect(throws: ProtocolError.self) { try codec.decode(Frame(type: 1, payload: ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]))) }
        #expect(throws: ProtocolError.self) { try codec.decode(Frame(type: 1, flags: .compressed, payload: ByteBuffer(bytes: [1, 2, 3]))) }
    }

    @Test func compressionBombIsRefused() throws {
        let codec = WireCodec(compressionThreshold: 16, maxDecompressedSize: 1_000)
        var a = Cairn_V1_TaskAssignment()
        a.stateJson = .init(repeating: 0, count: 100_000)
        let frame = try WireCodec(compressionThreshold: 16).encode(.taskAssignment(a))
        #expect(throws: ProtocolError.self) { try codec.decode(frame) }
    }
}
