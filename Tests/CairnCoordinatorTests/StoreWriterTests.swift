@testable import CairnCoordinator
import CairnCore
import CairnSQLite
import CairnStore
import CairnTestSupport
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

/// The store's one writer: in order, group commit, hot batches lingering, failures held and said.
@Suite struct StoreWriterTests {
    static func tempPath() -> String { NSTemporaryDirectory() + "cairn-writer-\(UUID().uuidString).db" }

    /// A writer made on its loop, and handed out bound to it.
    static func writer(_ store: any CheckpointStore, _ loop: any EventLoop) async throws -> NIOLoopBound<StoreWriter> {
        try await loop.submit { NIOLoopBound(StoreWriter(store: store, loop: loop, logger: Logger(label: "test")), eventLoop: loop) }.get()
    }

    /// Enqueues `count` one-row batches on the writer's loop and collects the order their
    /// completions ran in.
    static func enqueue(_ bound: NIOLoopBound<StoreWriter>, _ count: Int, from: Int = 0) async throws -> [Int] {
        let loop = bound.eventLoop
        let promise = loop.makePromise(of: [Int].self)
        loop.execute {
            var order: [Int] = []
            for i in from..<(from + count) {
                var b = StoreBatch()
                b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c", taskID: "t\(i)", idx: 0, channel: "x", value: .int(Int64(i))))
                bound.value.enqueue(b) { result in
                    if case .success = result { order.append(i) }
                    if order.count == count { promise.succeed(order) }
                }
            }
        }
        return try await promise.futureResult.get()
    }

    @Test func groupCommitSharesTransactionsAndKeepsOrder() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let store = try SQLiteStore(path: Self.tempPath(), logger: Logger(label: "test"))
        let loop = group.next()
        let bound = try await Self.writer(store, loop)
        let order = try await Self.enqueue(bound, 200)
        #expect(order == Array(0..<200))
        #expect(try await store.pendingWrites(runID: "r", namespace: "", checkpointID: "c").count == 200)
        let (tx, rows) = try await loop.submit { (bound.value.transactions, bound.value.rowsWritten) }.get()
        #expect(tx < 200)  // one transaction per group, not per batch
        #expect(tx >= 2)   // the first batch commits alone; the rest queue behind it
        #expect(rows == 200)
    }

    /// Hot batches that arrive one loop turn apart (as a chain's steps do) wait out the linger
    /// and share one commit; a sync batch on an idle writer starts its commit at once.
    @Test func hotBatchesArrivingTogetherShareOneCommitAndSyncDoesNotWait() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let store = InMemoryStore()
        let loop = group.next()
        let bound = try await loop.submit {
            NIOLoopBound(StoreWriter(store: store, loop: loop, logger: Logger(label: "test"), hotLinger: .seconds(2)), eventLoop: loop)
        }.get()
        @Sendable func batch(_ i: Int) -> StoreBatch {
            var b = StoreBatch()
            b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c", taskID: "t\(i)", idx: 0, channel: "x", value: .int(Int64(i))))
            return b
        }
        let hotDone = loop.makePromise(of: Void.self)
        let remaining = try await loop.submit { NIOLoopBoundBox(5, eventLoop: loop) }.get()
        for i in 0..<5 {
            // Each on its own turn of the loop, as results arriving one after another are.
            try await loop.submit {
                bound.value.enqueue(batch(i), durability: .hot) { _ in
                    remaining.value -= 1
                    if remaining.value == 0 { hotDone.succeed(()) }
                }
            }.get()
        }
        try await hotDone.futureResult.get()
        #expect(try await loop.submit { bound.value.transactions }.get() == 1, "five hot batches, one commit")

        let started = ContinuousClock.now
        let syncDone = loop.makePromise(of: Void.self)
        try await loop.submit { bound.value.enqueue(batch(9), durability: .sync) { _ in syncDone.succeed(()) } }.get()
        try await syncDone.futureResult.get()
        #expect(ContinuousClock.now - started < .seconds(1), "a sync batch does not wait out the 2 s linger")
        #expect(try await loop.submit { bound.value.transactions }.get() == 2)
    }

    @Test func aFailingStoreLosesNothingAndSaysWhy() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let loop = group.next()
        let sqlite = try SQLiteStore(path: Self.tempPath(), logger: Logger(label: "test"))
        let faulty = FaultyStore(sqlite)
        let bound = try await Self.writer(faulty, loop)
        let told = loop.makePromise(of: String.self)
        let retried = loop.makePromise(of: Void.self)
        try await loop.submit {
            var failures = 0
            bound.value.onFailure = { why, _ in
                failures += 1
                if failures == 1 { told.succeed(why) }
                if failures == 2 { retried.succeed(()) }
            }
        }.get()
        faulty.failing = true
        let pending = Task { try await Self.enqueue(bound, 50) }
        // The disk is "full": nothing commits, and the writer says why (the scheduler holds new work).
        #expect(try await told.futureResult.get().contains("disk is full"))
        try await retried.futureResult.get()  // retried, not dropped
        #expect(try await loop.submit { bound.value.failure }.get()?.contains("disk is full") == true)
        #expect(try await sqlite.pendingWrites(runID: "r", namespace: "", checkpointID: "c").isEmpty)
        faulty.failing = false
        // Space again: every batch lands, in the order it was queued.
        let order = try await pending.value
        #expect(order == Array(0..<50))
        #expect(try await sqlite.pendingWrites(runID: "r", namespace: "", checkpointID: "c").count == 50)
        #expect(try await loop.submit { bound.value.failure }.get() == nil)
    }

    @Test func aDamagedStoreStopsTheWriterAndEveryBatchFailsAtOnce() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let loop = group.next()
        let faulty = FaultyStore(InMemoryStore())
        let bound = try await Self.writer(faulty, loop)
        let told = loop.makePromise(of: Bool.self)
        try await loop.submit { bound.value.onFailure = { _, permanent in told.succeed(permanent) } }.get()
        faulty.damaged = true
        let results = loop.makePromise(of: [Bool].self)
        loop.execute {
            var outcomes: [Bool] = []
            for i in 0..<20 {
                var b = StoreBatch()
                b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c", taskID: "t\(i)", idx: 0, channel: "x", value: 1))
                bound.value.enqueue(b) { r in
                    if case .success = r { outcomes.append(true) } else { outcomes.append(false) }
                    if outcomes.count == 20 { results.succeed(outcomes) }
                }
            }
        }
        #expect(try await told.futureResult.get() == true, "told it is permanent")
        #expect(try await results.futureResult.get() == Array(repeating: false, count: 20), "every queued batch fails at once")
        #expect(faulty.failedCommits == 1, "not retried")
        // A batch queued afterwards fails at once too, and nothing is ever written.
        faulty.damaged = false
        let late = loop.makePromise(of: Bool.self)
        loop.execute {
            var b = StoreBatch()
            b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c", taskID: "late", idx: 0, channel: "x", value: 1))
            bound.value.enqueue(b) { r in if case .success = r { late.succeed(true) } else { late.succeed(false) } }
        }
        #expect(try await late.futureResult.get() == false)
        #expect(try await faulty.pendingWrites(runID: "r", namespace: "", checkpointID: "c").isEmpty)
        #expect(try await loop.submit { bound.value.stopped != nil && bound.value.rowsQueued == 0 }.get())
    }

    /// What a shutdown waits on: `whenIdle` fires only once every queued batch has committed,
    /// through failed attempts, and at once when nothing waits.
    @Test func whenIdleWaitsForEveryQueuedBatchThroughRetries() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let loop = group.next()
        let sqlite = try SQLiteStore(path: Self.tempPath(), logger: Logger(label: "test"))
        let faulty = FaultyStore(sqlite)
        let bound = try await Self.writer(faulty, loop)
        let idleAtOnce = loop.makePromise(of: Void.self)
        try await loop.submit { bound.value.whenIdle { idleAtOnce.succeed(()) } }.get()
        try await idleAtOnce.futureResult.get()

        let retried = loop.makePromise(of: Void.self)
        try await loop.submit {
            var failures = 0
            bound.value.onFailure = { _, _ in
                failures += 1
                if failures == 2 { retried.succeed(()) }
            }
        }.get()
        faulty.failing = true
        let idle = loop.makePromise(of: Int.self)
        try await loop.submit {
            for i in 0..<20 {
                var b = StoreBatch()
                b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c", taskID: "t\(i)", idx: 0, channel: "x", value: .int(Int64(i))))
                bound.value.enqueue(b)
            }
            bound.value.whenIdle { idle.succeed(bound.value.rowsQueued) }
        }.get()
        // Let a few commits fail (the writer retries them).
        try await retried.futureResult.get()
        #expect(try await sqlite.pendingWrites(runID: "r", namespace: "", checkpointID: "c").isEmpty)
        faulty.failing = false
        #expect(try await idle.futureResult.get() == 0, "nothing queued when idle fires")
        #expect(try await sqlite.pendingWrites(runID: "r", namespace: "", checkpointID: "c").count == 20)
    }
}
