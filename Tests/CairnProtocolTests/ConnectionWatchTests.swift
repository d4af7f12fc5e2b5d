import CairnProtocol
import NIOCore
import Testing

/// The rules for strangers' bytes, with an injected clock: a Hello in time and small, every frame
/// whole in time, an authenticated connection free to stay quiet between frames.
@Suite struct ConnectionWatchTests {
    static let limits = ConnectionWatch.Limits(handshakeTimeout: 10, frameTimeout: 60, maxHelloBytes: 1024)

    static func frame(_ bodyLength: Int) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt32(bodyLength))
        b.writeRepeatingByte(7, count: bodyLength)
        return b
    }

    static func slice(_ b: ByteBuffer, _ range: Range<Int>) -> ByteBuffer {
        b.getSlice(at: b.readerIndex + range.lowerBound, length: range.count)!
    }

    @Test func aConnectionThatNeverSaysHelloIsCutAfterTheHandshakeTimeout() {
        let w = ConnectionWatch(limits: Self.limits, now: 100)
        #expect(w.check(now: 109.9) == .fine)
        guard case .cut(let code, let reason) = w.check(now: 110.1) else { Issue.record("not cut"); return }
        #expect(code == .errorUnauthenticated && reason == "no Hello within 10s of connecting", "\(reason)")
    }

    @Test func aHelloLargerThanAllowedIsRefusedAsSoonAsItsLengthArrives() {
        var w = ConnectionWatch(limits: Self.limits, now: 0)
        var header = ByteBuffer()
        header.writeInteger(UInt32(16 * 1024 * 1024))
        #expect(w.received(Self.slice(header, 0..<2), now: 0) == .fine)
        guard case .cut(let code, let reason) = w.received(Self.slice(header, 2..<4), now: 0) else { Issue.record("not cut"); return }
        #expect(code == .errorFrameTooLarge && reason.contains("16777216") && reason.contains("1024"), "\(reason)")
    }

    @Test func aTrickledFrameIsCutOffAndAWholeOneIsNot() {
        var w = ConnectionWatch(limits: Self.limits, now: 0)
        #expect(w.received(Self.frame(100), now: 0) == .fine)
        w.handshakeDone()
        // Quiet between frames, for as long as it likes.
        #expect(w.check(now: 10_000) == .fine)
        // A big frame, one byte a second: cut 60 s after it began, however steadily it trickles.
        let big = Self.frame(8 * 1024 * 1024)
        #expect(w.received(Self.slice(big, 0..<6), now: 10_000) == .fine)
        for t in 1...59 { #expect(w.received(Self.slice(big, (5 + t)..<(6 + t)), now: 10_000 + Double(t)) == .fine) }
        #expect(w.check(now: 10_059.5) == .fine)
        guard case .cut(let code, let reason) = w.check(now: 10_060.5) else { Issue.record("not cut"); return }
        #expect(code == .errorProtocol && reason.contains("61 of its 8388608 bytes"), "\(reason)")
    }

    @Test func framesSplitAnywhereAndBackToBackAreFollowedExactly() {
        var w = ConnectionWatch(limits: Self.limits, now: 0)
        var stream = ByteBuffer()
        for n in [10, 2, 3000, 0, 5] { var f = Self.frame(n); stream.writeBuffer(&f) }
        // Byte by byte at t = 0 … and after it all, no frame is in progress.
        for i in 0..<stream.readableBytes { #expect(w.received(Self.slice(stream, i..<(i + 1)), now: 0) == .fine) }
        w.handshakeDone()
        #expect(w.check(now: 1_000) == .fine, "a frame seen as unfinished")
        // Ending mid-header counts as a frame begun.
        var w2 = ConnectionWatch(limits: Self.limits, now: 0)
        #expect(w2.received(stream, now: 0) == .fine)
        w2.handshakeDone()
        #expect(w2.received(Self.slice(Self.frame(4), 0..<3), now: 1) == .fine)
        guard case .cut(_, let reason) = w2.check(now: 62) else { Issue.record("not cut"); return }
        #expect(reason.contains("3 of its 4 length bytes"), "\(reason)")
    }

    @Test func onlyTheFirstFrameIsHeldToTheHelloLimit() {
        var w = ConnectionWatch(limits: Self.limits, now: 0)
        #expect(w.received(Self.frame(200), now: 0) == .fine)
        // A request pipelined behind the Hello, before the handshake has passed, may be large.
        var header = ByteBuffer()
        header.writeInteger(UInt32(4 * 1024 * 1024))
        #expect(w.received(header, now: 0) == .fine)
    }
}
