import CairnCoordinator
import CairnCore
import CairnHotTier
import CairnRedis
import CairnSQLite
import CairnStore
import Foundation
import Logging

/// Where a coordinator keeps its state: the SQLite file, and Redis in front of it when given.
public struct StorageConfig: Sendable {
    public var databasePath: String = "./data/cairn.db"
    /// The Redis hot tier, when configured (`--redis`).
    public var redisURL: String?
    public var hotTier = HotTierConfig()
    /// Start even if the Redis's eviction policy could drop unflushed checkpoints.
    public var allowRedisEviction = false

    public init() {}
}

/// Builds a coordinator from configuration: the one place that knows which stores exist.
public enum CoordinatorStack {
    public static func make(_ config: CoordinatorConfig, storage: StorageConfig, logger: Logger) throws -> Coordinator {
        Coordinator(config: config, stores: try stores(storage, logger: logger), logger: logger)
    }

    /// The SQLite store (opened and migrated now), with the hot tier in front when Redis is configured.
    public static func stores(_ storage: StorageConfig, logger: Logger) throws -> StoreStack {
        let sqlite = try SQLiteStore(path: storage.databasePath, logger: logger)
        guard let url = storage.redisURL else {
            return StoreStack(store: sqlite, hotTier: nil, lifecycle: SQLiteLifecycle(sqlite: sqlite, logger: logger),
                              description: "SQLite \(storage.databasePath)")
        }
        var tier = storage.hotTier
        // One key space per SQLite file, so two coordinators can share a Redis.
        let absolute = URL(fileURLWithPath: storage.databasePath).standardizedFileURL.path
        tier.keyPrefix = "cairn:" + String(Hashing.sha256Hex(Array(absolute.utf8)).prefix(10))
        let redis = RedisClient(url: try RedisURL(url), logger: logger)
        let hot = HotTierStore(sqlite: sqlite, redis: redis, config: tier, logger: logger)
        return StoreStack(store: hot, hotTier: hot,
                          lifecycle: HotTierLifecycle(hot: hot, sqlite: SQLiteLifecycle(sqlite: sqlite, logger: logger), config: tier,
                                                      allowEviction: storage.allowRedisEviction, logger: logger),
                          description: "SQLite \(storage.databasePath) + Redis \(redis.url)")
    }
}

/// SQLite alone: nothing to open (the file was opened and migrated when built); the WAL is
/// truncated periodically and on the way out.
struct SQLiteLifecycle: StoreLifecycle {
    let sqlite: SQLiteStore
    let logger: Logger

    func open() async throws {}
    func maintain() async throws { try await sqlite.checkpointWAL() }
    func close() async throws {
        try await sqlite.checkpointWAL()
        logger.notice("store closed: every step is in SQLite", metadata: ["db": "\(sqlite.path)"])
    }
    func logBytes() -> Int64 { sqlite.walSize }
}

/// Redis in front of SQLite: refuses a Redis that could evict unflushed batches (unless
/// allowed), replays what a previous coordinator left unflushed, and flushes on the way out.
struct HotTierLifecycle: StoreLifecycle {
    let hot: HotTierStore
    let sqlite: SQLiteLifecycle
    let config: HotTierConfig
    let allowEviction: Bool
    let logger: Logger

    struct UnsafeEviction: Error, CustomStringConvertible {
        let description: String
    }

    func open() async throws {
        do {
            if let risk = try await HotTierStore.evictionRisk(hot.redis) {
                guard allowEviction else {
                    throw UnsafeEviction(description: "refusing to use \(hot.redis.url): \(risk). Set `maxmemory-policy noeviction` (the shipped compose file does), or pass --allow-redis-eviction to accept the risk.")
                }
                logger.warning("Redis eviction policy is unsafe; continuing because --allow-redis-eviction was given", metadata: ["why": "\(risk)"])
            }
        } catch let e as RedisError {
            logger.error("Redis unreachable at start: writing SQLite directly until it is reachable", metadata: ["redis": "\(hot.redis.url)", "error": "\(e)"])
        }
        _ = try await hot.start()
        logger.notice("hot tier on", metadata: ["redis": "\(hot.redis.url)", "ttl_s": "\(config.ttl)", "flush_interval_s": "\(config.flushInterval)"])
    }

    func maintain() async throws { try await sqlite.maintain() }

    func close() async throws {
        await hot.stop()
        try await sqlite.close()
    }

    func logBytes() -> Int64 { sqlite.logBytes() }
}
