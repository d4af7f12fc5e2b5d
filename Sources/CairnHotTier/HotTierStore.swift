import CairnCore
import CairnRedis
import CairnStore
import Foundation
import Logging

public struct HotTierConfig: Sendable {
    /// Every key the hot tier writes expires after this long (`--checkpoint-ttl`).
    public var ttl: Double = 3600
    /// The flusher moves dirty batches to the durable store this often (`--flush-interval`)… Short by
    /// default: a step is acknowledged once it is in Redis, and the durable store's work then overlaps the
    /// run instead of piling up for the run's end (which must be in the durable store before it is reported).
    /// Under load every flush still takes whatever waited, so transactions grow with the load.
    public var flushInterval: Double = 0.01
    /// …or as soon as this many rows are waiting (`--flush-batch`), whichever comes first.
    public var flushBatchRows: Int = 5_000
    /// Writes hold (and dispatch stalls) once the oldest unflushed batch is this fraction of the TTL old.
    public var backlogLimitFraction: Double = 0.5
    /// How often a Redis that went away is tried again.
    public var reconnectInterval: Double = 1.0
    /// Prefix of every key (one per coordinator store).
    public var keyPrefix: String = "cairn"

    public init() {}
}

/// Redis in front of the durable store: a `hot` batch is one pipelined round trip to Redis (with a TTL,
/// indexed as dirty) and is moved to the durable store by the flusher in one transaction per flush.
///
/// ```
///  commit(hot) ──► Redis  SET  <prefix>:batch:<epoch>:<seq>  <zstd(json)>  PX ttl
///                         ZADD <prefix>:dirty <seq> <key>                  (PEXPIRE ttl)
///  flusher ──────► the durable store: one transaction for every batch waiting  ──► DEL/ZREM in Redis
///  commit(sync), a batch that ends a run, Redis down ──► flush what waits, then the durable store directly
///  start ────────► replay <prefix>:dirty into the durable store (a coordinator that died with batches unflushed)
/// ```
///
/// Reads flush first, so queries always see every committed batch. If the durable store cannot be written,
/// batches wait in Redis; once the oldest is half its TTL old, new writes hold until the durable store
/// accepts again, so no entry can expire before it is flushed.
public actor HotTierStore: CheckpointStore, HotTierStatus {
    /// The authoritative store behind the hot tier: SQLite or PostgreSQL (a decorator in tests).
    public nonisolated let durable: any CheckpointStore & MaintainedStore
    /// What the log calls it ("SQLite", "PostgreSQL").
    public nonisolated let durableName: String
    public nonisolated let redis: RedisClient
    /// The store runs on its Redis client's serial queue: a hot commit encodes its batch and makes
    /// its round trip on one thread, with no hop between the two actors.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { redis.unownedExecutor }
    let config: HotTierConfig
    let logger: Logger
    let epoch = UInt64(Date().timeIntervalSince1970 * 1000)

    struct Entry {
        let key: String
        let batch: StoreBatch
        let createdAt: Date
    }

    private var pending: [Entry] = []
    private var pendingRows = 0
    private var seq: UInt64 = 0
    /// Keys of hot writes that failed and went to the durable store directly; removed from Redis before it is used again.
    private var maybeInRedis: [String] = []
    private var flushing = false
    /// Flushes waiting for the one in progress to end (resumed when it does), by id so a
    /// cancelled one can leave.
    private var flushWaiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    private var nextFlushWaiter: UInt64 = 0
    public private(set) var redisUp = true
    private var lastFlushError: String?
    private var holding = false
    private var flusherTask: Task<Void, Never>?
    /// Set when this coordinator leads among standbys: every hot write checks the epoch in Redis.
    private var fencing: (epoch: UInt64, onDeposed: @Sendable (LeaderRecord?) -> Void)?

    // counters
    public private(set) var hotBatches: UInt64 = 0
    public private(set) var directBatches: UInt64 = 0
    public private(set) var flushes: UInt64 = 0
    public private(set) var redisFailures: UInt64 = 0

    public init(durable: any CheckpointStore & MaintainedStore, named durableName: String = "SQLite", redis: RedisClient, config: HotTierConfig, logger: Logger) {
        self.durable = durable
        self.durableName = durableName
        self.redis = redis
        self.config = config
        self.logger = logger
    }

    var dirtyKey: String { "\(config.keyPrefix):dirty" }
    var epochKey: String { "\(config.keyPrefix):epoch" }

    /// A hot write of a leading coordinator, in one atomic step: refused when a newer leader has
    /// raised the epoch in Redis (a deposed coordinator that woke late), else the epoch raised to
    /// this one's (if it was not yet), the batch stored and indexed as dirty.
    static let fencedWrite = """
        local e = tonumber(redis.call('GET', KEYS[3]) or '0')
        local mine = tonumber(ARGV[3])
        if e > mine then return redis.error_reply('CAIRN_DEPOSED ' .. e) end
        if e < mine then redis.call('SET', KEYS[3], ARGV[3]) end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
        redis.call('PEXPIRE', KEYS[2], ARGV[2])
        return 'OK'
        """

    /// Raises the epoch in Redis to `epoch` unless it is higher already; returns what it was.
    static let raiseEpoch = """
        local e = tonumber(redis.call('GET', KEYS[1]) or '0')
        if e < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
        return e
        """

    /// From now on every hot write checks this coordinator still leads (the epoch in Redis is
    /// not newer), and the epoch is raised now, before the batches a deposed leader left are
    /// replayed: a write it makes after this is refused. Redis down: its writes go to the
    /// durable store (fenced there), and the first hot write once it is back raises the epoch.
    public func fence(epoch: UInt64, onDeposed: @escaping @Sendable (LeaderRecord?) -> Void) async throws {
        fencing = (epoch, onDeposed)
        do {
            let reply = try await redis.pipeline([["EVAL", Self.raiseEpoch, "1", epochKey, String(epoch)].map { Array($0.utf8) }])[0]
            if case .integer(let was) = reply, was > Int64(epoch) {
                throw Deposed(epoch: epoch, leader: LeaderRecord(holder: "", epoch: UInt64(was), address: "", http: "", remaining: 0))
            }
        } catch let e as RedisError {
            markDown(e)
        }
    }
    var ttlMillis: String { String(Int64(config.ttl * 1000)) }

    /// Checks the Redis's eviction policy: one that may evict keys with a TTL before they expire
    /// (`volatile-*`, or `allkeys-*` under a memory limit) could drop unflushed batches.
    public static func evictionRisk(_ redis: RedisClient) async throws -> String? {
        let replies = try await redis.pipeline([
            ["CONFIG", "GET", "maxmemory-policy"].map { Array($0.utf8) },
            ["CONFIG", "GET", "maxmemory"].map { Array($0.utf8) },
        ])
        func value(_ r: RedisReply) -> String? {
            if case .array(let items) = r, items.count == 2 { return items[1].text }
            if case .error(let e) = r { return "error: \(e)" }
            return nil
        }
        let policy = value(replies[0]) ?? "unknown"
        let maxmemory = Int64(value(replies[1]) ?? "0") ?? 0
        if policy.hasPrefix("volatile-") {
            return "maxmemory-policy is \(policy): Redis may evict keys that have a TTL — Cairn's unflushed checkpoints — before they expire"
        }
        if policy.hasPrefix("allkeys-") && maxmemory > 0 {
            return "maxmemory-policy is \(policy) with maxmemory \(maxmemory): Redis may evict Cairn's unflushed checkpoints under memory pressure"
        }
        return nil
    }

    /// Replays batches a previous coordinator left unflushed in Redis into the durable store, oldest first,
    /// then starts the flusher. Call before serving.
    public func start() async throws -> Int {
        var replayed = 0
        do {
            let reply = try await redis.pipeline([["ZRANGE", dirtyKey, "0", "-1"].map { Array($0.utf8) }])[0]
            guard case .array(let keys) = reply else { throw RedisError.server("unexpected ZRANGE reply") }
            for keyReply in keys {
                guard let key = keyReply.text else { continue }
                let value = try await redis.pipeline([["GET", key].map { Array($0.utf8) }])[0]
                guard case .string(let packed) = value else {
                    logger.critical("a dirty hot-tier batch expired before it was flushed: its steps are lost", metadata: ["key": "\(key)"])
                    _ = try await redis.pipeline([["ZREM", dirtyKey, key].map { Array($0.utf8) }])
                    continue
                }
                var batch = try Self.decode(packed)
                batch.runs = try await Self.newerThanStored(batch.runs, in: durable)
                try await durable.commit(batch)
                _ = try await redis.pipeline([["DEL", key].map { Array($0.utf8) }, ["ZREM", dirtyKey, key].map { Array($0.utf8) }])
                replayed += 1
            }
            if replayed > 0 { logger.notice("replayed unflushed hot-tier batches into \(durableName)", metadata: ["batches": "\(replayed)"]) }
        } catch let e as RedisError {
            markDown(e)
        }
        flusherTask = Task { await self.flusherLoop() }
        return replayed
    }

    /// The run rows of a replayed batch that are not older than what the durable store holds. A batch can
    /// be in Redis although it also went to the durable store (a write that failed as Redis went away, and
    /// arrived anyway): replaying its run row over a newer one would undo what came after it.
    /// Checkpoints, values and writes are stored once whatever the order, so only run rows need this.
    public static func newerThanStored(_ runs: [RunRecord], in store: any CheckpointStore) async throws -> [RunRecord] {
        var kept: [RunRecord] = []
        for r in runs {
            if let stored = try await store.run(r.runID), stored.updatedAt > r.updatedAt { continue }
            kept.append(r)
        }
        return kept
    }

    public func stop() async {
        flusherTask?.cancel()
        do { try await flush() } catch {
            logger.error("could not flush the hot tier on the way out: its batches stay in Redis and are replayed into \(durableName) at the next start",
                         metadata: ["error": "\(error)", "waiting": "\(pending.count)"])
        }
    }

    private func flusherLoop() async {
        var lastReconnect = Date.distantPast
        var backoff = config.reconnectInterval
        while !Task.isCancelled {
            // A cancelled sleep ends the loop at the `while`; a failed flush has logged why
            // (lastFlushError) and its batches stay pending for the next round.
            try? await Task.sleep(nanoseconds: UInt64(config.flushInterval * 1e9))
            try? await flush()
            if redisUp {
                backoff = config.reconnectInterval
            } else if Date().timeIntervalSince(lastReconnect) >= backoff {
                lastReconnect = Date()
                // Any failure to answer PING means "still down": try again after the backoff.
                if (try? await redis.command("PING")) == .status("PONG"), await forgetMaybeInRedis() {
                    redisUp = true
                    logger.notice("Redis is reachable again: hot tier on", metadata: ["redis": "\(redis.url)"])
                } else {
                    backoff = min(backoff * 2, max(config.reconnectInterval, 10))  // exponential, capped at 10 s
                }
            }
        }
    }

    /// Removes the keys of hot writes that failed (and went to the durable store instead) from Redis; false
    /// when Redis refused, and the hot tier must stay off.
    private func forgetMaybeInRedis() async -> Bool {
        guard !maybeInRedis.isEmpty else { return true }
        var commands: [[[UInt8]]] = []
        for key in maybeInRedis {
            commands.append(["DEL", key].map { Array($0.utf8) })
            commands.append(["ZREM", dirtyKey, key].map { Array($0.utf8) })
        }
        guard let replies = try? await redis.pipeline(commands),
              !replies.contains(where: { if case .error = $0 { true } else { false } }) else { return false }
        logger.notice("removed hot-tier batches that may have reached Redis as it went away (they are in \(durableName))",
                      metadata: ["batches": "\(maybeInRedis.count)"])
        maybeInRedis.removeAll()
        return true
    }

    private func markDown(_ error: any Error) {
        redisFailures += 1
        if redisUp {
            redisUp = false
            logger.error("Redis unreachable: writing \(durableName) directly until it is back", metadata: ["redis": "\(redis.url)", "error": "\(error)"])
        }
    }

    static func encode(_ batch: StoreBatch) throws -> [UInt8] {
        try Zstd.compress(batch.json.jsonBytes(), level: 1)
    }

    static func decode(_ packed: [UInt8]) throws -> StoreBatch {
        try StoreBatch(json: try JSONValue.parse(try Zstd.decompress(packed, limit: StoredBlob.maxValueBytes)))
    }

    // MARK: writing

    public func commit(_ batch: StoreBatch) async throws {
        try await commit(batch, durability: .hot)
    }

    public func commit(_ batch: StoreBatch, durability: Durability) async throws {
        if batch.isEmpty { return }
        if durability == .sync || !redisUp || batch.finishesRun {
            try await direct(batch)
            return
        }
        try await holdWhileBacklogged()
        seq += 1
        let key = "\(config.keyPrefix):batch:\(epoch):\(seq)"
        let packed = try Self.encode(batch)
        do {
            let replies: [RedisReply]
            if let fencing {
                replies = try await redis.pipeline([
                    [Array("EVAL".utf8), Array(Self.fencedWrite.utf8), Array("3".utf8), Array(key.utf8), Array(dirtyKey.utf8), Array(epochKey.utf8),
                     packed, Array(ttlMillis.utf8), Array(String(fencing.epoch).utf8), Array(String(seq).utf8)],
                ])
                if case .error(let e) = replies[0], e.hasPrefix("CAIRN_DEPOSED") {
                    let newer = UInt64(e.split(separator: " ").last ?? "") ?? 0
                    let leader = LeaderRecord(holder: "", epoch: newer, address: "", http: "", remaining: 0)
                    fencing.onDeposed(leader)
                    throw StoreFault(.transient, "\(Deposed(epoch: fencing.epoch, leader: leader)) (Redis \(redis.url))")
                }
            } else {
                replies = try await redis.pipeline([
                    [Array("SET".utf8), Array(key.utf8), packed, Array("PX".utf8), Array(ttlMillis.utf8)],
                    ["ZADD", dirtyKey, String(seq), key].map { Array($0.utf8) },
                    ["PEXPIRE", dirtyKey, ttlMillis].map { Array($0.utf8) },
                ])
            }
            if let bad = replies.first(where: { if case .error = $0 { return true } else { return false } }), case .error(let e) = bad {
                throw RedisError.server(e)
            }
        } catch let fault as StoreFault {
            throw fault
        } catch {
            // The write may have reached Redis before the failure (a lost reply): it goes to
            // the durable store now, and its key is removed before the hot tier is used again, so that no
            // later start replays it over newer rows.
            maybeInRedis.append(key)
            markDown(error)
            try await direct(batch)
            return
        }
        hotBatches += 1
        pending.append(Entry(key: key, batch: batch, createdAt: Date()))
        pendingRows += batch.rowCount
        // An early flush: if it fails, the batches stay pending and the flusher retries (and logs).
        if pendingRows >= config.flushBatchRows { Task { try? await self.flush() } }
    }

    /// Returns when the flush in progress ends; throws CancellationError when cancelled first.
    private func untilFlushEnds() async throws {
        nextFlushWaiter += 1
        let id = nextFlushWaiter
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                if !flushing { c.resume() } else if Task.isCancelled { c.resume(throwing: CancellationError()) } else { flushWaiters[id] = c }
            }
        } onCancel: {
            Task { await self.leaveFlushWait(id) }
        }
    }

    private func leaveFlushWait(_ id: UInt64) { flushWaiters.removeValue(forKey: id)?.resume(throwing: CancellationError()) }

    /// Flushes what waits (keeping order), then writes `batch` to the durable store.
    private func direct(_ batch: StoreBatch) async throws {
        try await flush()
        try await durable.commit(batch)
        directBatches += 1
    }

    /// Moves every waiting batch to the durable store in one transaction, then forgets them in Redis.
    public func flush() async throws {
        while flushing { try await untilFlushEnds() }
        guard !pending.isEmpty else { return }
        flushing = true
        defer {
            flushing = false
            let waiting = flushWaiters
            flushWaiters = [:]
            for c in waiting.values { c.resume() }
        }
        let entries = pending
        var merged = StoreBatch()
        for e in entries { merged.merge(e.batch) }
        do {
            try await durable.commit(merged)
        } catch {
            if lastFlushError == nil {
                logger.error("cannot write \(durableName): batches wait in Redis", metadata: ["error": "\(error)", "waiting": "\(entries.count)"])
            }
            lastFlushError = "\(error)"
            throw error
        }
        if lastFlushError != nil {
            logger.notice("\(durableName) is writable again; flushed the backlog", metadata: ["batches": "\(entries.count)"])
            lastFlushError = nil
        }
        pending.removeFirst(entries.count)
        pendingRows = pending.reduce(0) { $0 + $1.batch.rowCount }
        flushes += 1
        if redisUp {
            // The batches are in the durable store now: forgetting them in Redis is housekeeping, done off the
            // path of whoever waits for this flush (a replay after a crash in between is harmless:
            // every row is an upsert or insert-or-ignore on its key).
            var cmds: [[[UInt8]]] = [[Array("DEL".utf8)] + entries.map { Array($0.key.utf8) }]
            cmds.append([Array("ZREM".utf8), Array(dirtyKey.utf8)] + entries.map { Array($0.key.utf8) })
            let redis = self.redis
            Task {
                do { _ = try await redis.pipeline(cmds) } catch { self.markDown(error) }
            }
        }
    }

    /// Blocks new hot writes while the durable store is failing and the backlog nears its TTL.
    private func holdWhileBacklogged() async throws {
        while let oldest = pending.first, Date().timeIntervalSince(oldest.createdAt) > config.ttl * config.backlogLimitFraction {
            if !holding {
                holding = true
                logger.critical("\(durableName) has not accepted writes for \(Int(Date().timeIntervalSince(oldest.createdAt)))s: holding new writes so that no unflushed batch can expire",
                                metadata: ["error": "\(lastFlushError ?? "?")", "waiting_batches": "\(pending.count)"])
            }
            // A failed flush is logged by flush() and tried again below until the durable store accepts.
            try? await flush()
            if pending.first.map({ Date().timeIntervalSince($0.createdAt) > config.ttl * config.backlogLimitFraction }) == true {
                try await Task.sleep(nanoseconds: 200_000_000)
            }
        }
        if holding {
            holding = false
            logger.notice("\(durableName) accepts writes again: no longer holding")
        }
    }

    /// Status for logs, stats and health.
    public func tierReport() -> HotTierReport {
        HotTierReport(redisUp: redisUp, waitingBatches: pending.count,
                      oldestAge: pending.first.map { Date().timeIntervalSince($0.createdAt) } ?? 0,
                      lastFlushError: lastFlushError, redisFailures: redisFailures, hotBatches: hotBatches, flushes: flushes)
    }

    // MARK: reading (flush first: queries see every committed batch)

    /// Flushes before a read. When the durable store refuses the flush (a full disk), the read still answers
    /// from the durable store, which holds a consistent prefix of what was committed (batches are flushed in
    /// order); `status` and `cairn stats` report the backlog, and the flush error is logged once.
    private func flushForRead() async {
        do { try await flush() } catch { /* reported by flush() itself, and by `status` */ }
    }

    public func run(_ runID: String) async throws -> RunRecord? { await flushForRead(); return try await durable.run(runID) }
    public func runs(_ filter: RunFilter) async throws -> [RunListing] { await flushForRead(); return try await durable.runs(filter) }
    public func unfinishedRuns() async throws -> [RunListing] { await flushForRead(); return try await durable.unfinishedRuns() }
    public func runCounts() async throws -> [RunStatus: Int] { await flushForRead(); return try await durable.runCounts() }
    public func graph(_ hash: String) async throws -> GraphRecord? { await flushForRead(); return try await durable.graph(hash) }
    public func bundle(_ hash: String) async throws -> [UInt8]? { await flushForRead(); return try await durable.bundle(hash) }
    public func checkpoint(runID: String, namespace: String, checkpointID: String?) async throws -> CheckpointRecord? {
        await flushForRead()
        return try await durable.checkpoint(runID: runID, namespace: namespace, checkpointID: checkpointID)
    }
    public func checkpoints(runID: String, namespace: String, limit: Int) async throws -> [CheckpointRecord] {
        await flushForRead()
        return try await durable.checkpoints(runID: runID, namespace: namespace, limit: limit)
    }
    public func channelValue(runID: String, namespace: String, channel: String, version: String) async throws -> JSONValue {
        await flushForRead()
        return try await durable.channelValue(runID: runID, namespace: namespace, channel: channel, version: version)
    }
    public func pendingWrites(runID: String, namespace: String, checkpointID: String) async throws -> [PendingWriteRecord] {
        await flushForRead()
        return try await durable.pendingWrites(runID: runID, namespace: namespace, checkpointID: checkpointID)
    }
    public func taskExecutions(runID: String) async throws -> [TaskExecutionRecord] {
        await flushForRead()
        return try await durable.taskExecutions(runID: runID)
    }
    public func workers() async throws -> [WorkerRecord] { await flushForRead(); return try await durable.workers() }
    public func records(_ query: RecordsQuery) async throws -> RecordsTable { await flushForRead(); return try await durable.records(query) }
}

/// Maintenance reads and deletes reach the durable store once what waits in Redis has been flushed, so they
/// see (and delete) every run whole.
extension HotTierStore: MaintainedStore {
    public func verify(runIDs: [String]?) async throws -> VerifyReport { await flushForRead(); return try await durable.verify(runIDs: runIDs) }
    public func exportRun(_ runID: String) async throws -> StoreBatch? { await flushForRead(); return try await durable.exportRun(runID) }
    /// A batch still in Redis could write rows of a deleted run back: deleting needs a flush that succeeds.
    public func deleteRuns(_ runIDs: [String]) async throws -> DeletionReport { try await flush(); return try await durable.deleteRuns(runIDs) }
    public func setPinned(_ runID: String, _ pinned: Bool) async throws -> Bool { try await flush(); return try await durable.setPinned(runID, pinned) }
}
