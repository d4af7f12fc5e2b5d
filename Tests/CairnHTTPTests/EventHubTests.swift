@testable import CairnHTTP
import CairnProtocol
import Foundation
import Testing

/// The log every `/api/events` reader shares: each takes all since its last take, in order; a
/// reader too far behind is dropped; the log lets go of what every reader has taken.
@Suite struct EventHubTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func eachReaderTakesEverythingSinceItsLastTakeInOneWrite() async {
        let f = Fanout(maxPending: 1 << 20)
        let a = f.add()
        f.broadcast(bytes("1;"))
        let b = f.add()  // joins after the first event: it does not get it
        f.broadcast(bytes("2;"))
        f.broadcast(bytes("3;"))
        let fromA = await a.next()
        #expect(String(decoding: fromA.bytes, as: UTF8.self) == "1;2;3;" && fromA.state == .open)
        b.prepend(bytes("snap;"))
        #expect(String(decoding: await b.next().bytes, as: UTF8.self) == "snap;2;3;")
        f.broadcast(bytes("4;"))
        #expect(String(decoding: await a.next().bytes, as: UTF8.self) == "4;")
        f.endAll()
        let last = await b.next()
        #expect(String(decoding: last.bytes, as: UTF8.self) == "4;" && last.state == .ended)
    }

    /// Until a reader waits (or 10 s pass).
    func untilWaiting(_ f: Fanout) async {
        let deadline = ContinuousClock.now + .seconds(10)
        while f.waitingReaders == 0 && ContinuousClock.now < deadline { await Task.yield() }
    }

    @Test func aReaderThatWaitsIsWokenByTheNextEvent() async {
        let f = Fanout(maxPending: 1 << 20)
        let r = f.add()
        let got = Task { await r.next() }
        await untilWaiting(f)
        f.broadcast(bytes("x"))
        #expect(await got.value.bytes == bytes("x"))
    }

    @Test func aReaderTooFarBehindIsDroppedAndTheOthersGoOn() async {
        let f = Fanout(maxPending: 1000)
        let slow = f.add()
        let fast = f.add()
        for i in 0..<600 {
            f.broadcast(Array(repeating: UInt8(ascii: "a"), count: 10))
            if i % 50 == 0 { _ = await fast.next() }
        }
        #expect(await slow.next().state == .overflowed)
        let r = await fast.next()
        #expect(r.state == .open && r.bytes.count <= 1000)
    }

    @Test func aCancelledWaitReturns() async {
        let f = Fanout(maxPending: 1 << 20)
        let r = f.add()
        let t = Task { await r.next() }
        await untilWaiting(f)
        t.cancel()
        #expect(await t.value.bytes.isEmpty)
        #expect(f.remove(r))
    }
}
