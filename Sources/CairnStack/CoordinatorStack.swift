import CairnCoordinator
import CairnCore
import CairnHotTier
import CairnPostgres
import CairnRedis
import CairnSQLite
import CairnStore
import Foundation
import Logging

/// Where a coordinator keeps its state: the SQLite file or the PostgreSQL database (`--db`), and
/// Redis in front of it when given.
public struct StorageConfig: Sendable {
    /// A SQLite file's path, or a `postgres://` URL (see `StoreLocation`).
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

    /// The authoritative store — SQLite (opened and migrated now) or PostgreSQL (migrated when the
    /// coordinator opens its stores) — with the hot tier in front of it when Redis is configured.
    public static func stores(_ storage: StorageConfig, logger: Logger) throws -> StoreStack {
        let durable: any CheckpointStore & MaintainedStore
        let lifecycle: any StoreLifecycle
        let name: String
        let keySpace: String
        var election: (any LeaderElection)?
        let location = try StoreLocation(storage.databasePath)
        switch location {
        case .postgres(let url):
            let store = PostgresStore(url: url, logger: logger)
            (durable, lifecycle, name) = (store, PostgresLifecycle(store: store, logger: logger), "PostgreSQL")
            election = store
            keySpace = "postgres://\(url.host):\(url.port)/\(url.database)"
        case .sqlite(let path):
            let sqlite = try SQLiteStore(path: path, logger: logger)
            (durable, lifecycle, name) = (sqlite, SQLiteLifecycle(sqlite: sqlite, logger: logger), "SQLite")
            keySpace = URL(fileURLWithPath: path).standardizedFileURL.path
        }
        let description = location.description
        guard let redisURL = storage.redisURL else {
            return StoreStack(store: durable, hotTier: nil, lifecycle: lifecycle, description: description, election: election)
        }
        var tier = storage.hotTier
        // One key space per authoritative store, so two coordinators can share a Redis.
        tier.keyPrefix = "cairn:" + String(Hashing.sha256Hex(Array(keySpace.utf8)).prefix(10))
        let redis = RedisClient(url: try RedisURL(redisURL), logger: logger)
        let hot = HotTierStore(durable: durable, named: name, redis: redis, config: tier, logger: logger)
        return StoreStack(store: hot, hotTier: hot,
                          lifecycle: HotTierLifecycle(hot: hot, durable: lifecycle, config: tier,
                                                      allowEviction: storage.allowRedisEviction, logger: logger),
                          description: "\(description) + Redis \(redis.url)",
                          election: election.map { HotTierElection(durable: $0, hot: hot) })
    }
}

/// What `--db` names: a SQLite file (a path) or a PostgreSQL database (`postgres://` or
/// `postgresql://`). Anything else with a scheme (`mysql://`, `redis://`, `file://`, `sqlite://`)
/// is refused in one line that says what is served, rather than becoming a file named after it.
public enum StoreLocation: Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresURL)

    public struct Refused: Error, CustomStringConvertible {
        public var description: String
    }

    public init(_ text: String) throws {
        if PostgresURL.isPostgres(text) {
            self = .postgres(try PostgresURL(text))
            return
        }
        if let scheme = text.range(of: #"^[A-Za-z][A-Za-z0-9+.-]*://"#, options: .regularExpression) {
            throw Refused(description: "--db \(text[scheme])…: Cairn keeps its store in a SQLite file (--db PATH, e.g. ./data/cairn.db) or in PostgreSQL (--db postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require]); it cannot serve \(text[scheme].dropLast(3)) URLs")
        }
        guard !text.isEmpty else { throw Refused(description: "--db is empty: give a SQLite file's path or a postgres:// URL") }
        self = .sqlite(path: text)
    }

    /// Where it is, with any password hidden.
    public var description: String {
        switch self {
        case .sqlite: "SQLite \(self.where)"
        case .postgres: "PostgreSQL \(self.where)"
        }
    }

    /// The path or the URL (with any password hidden).
    public var `where`: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let url): "\(url)"
        }
    }
}

/// PostgreSQL alone: its schema is created or upgraded when the coordinator opens its stores
/// (migrations under an advisory lock, so coordinators starting together migrate once); the
/// server keeps its own log bounded.
struct PostgresLifecycle: StoreLifecycle {
    let store: PostgresStore
    let logger: Logger

    func open() async throws {
        let applied = try await store.migrate()
        if !applied.isEmpty { logger.notice("PostgreSQL schema migrated", metadata: ["db": "\(store.url)", "applied": "\(applied)"]) }
    }
    func maintain() async throws {}
    func close() async throws {
        store.close()
        logger.notice("store closed: every step is in PostgreSQL", metadata: ["db": "\(store.url)"])
    }
    func logBytes() -> Int64 { 0 }
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

/// Redis in front of the authoritative store (SQLite or PostgreSQL): refuses a Redis that could evict unflushed batches (unless
/// allowed), replays what a previous coordinator left unflushed, and flushes on the way out.
struct HotTierLifecycle: StoreLifecycle {
    let hot: HotTierStore
    let durable: any StoreLifecycle
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
            logger.error("Redis unreachable at start: writing \(hot.durableName) directly until it is reachable", metadata: ["redis": "\(hot.redis.url)", "error": "\(e)"])
        }
        try await durable.open()
        _ = try await hot.start()
        logger.notice("hot tier on", metadata: ["redis": "\(hot.redis.url)", "ttl_s": "\(config.ttl)", "flush_interval_s": "\(config.flushInterval)"])
    }

    func maintain() async throws { try await durable.maintain() }

    func close() async throws {
        await hot.stop()
        try await durable.close()
    }

    func logBytes() -> Int64 { durable.logBytes() }
}

/// The lead over PostgreSQL with Redis in front: the database decides, and the fence is set in
/// both, the hot tier first (a deposed coordinator's hot writes are refused in Redis before the
/// new leader replays what waits there) and then the database.
struct HotTierElection: LeaderElection {
    let durable: any LeaderElection
    let hot: HotTierStore

    func prepareLead() async throws { try await durable.prepareLead() }
    func claimLead(holder: String, address: String, http: String, lease: Double) async throws -> (epoch: UInt64?, leader: LeaderRecord?) {
        try await durable.claimLead(holder: holder, address: address, http: http, lease: lease)
    }
    func renewLead(epoch: UInt64, lease: Double) async throws -> LeaderRecord? { try await durable.renewLead(epoch: epoch, lease: lease) }
    func announceLead(epoch: UInt64, address: String, http: String) async throws {
        try await durable.announceLead(epoch: epoch, address: address, http: http)
    }
    func releaseLead(epoch: UInt64) async throws { try await durable.releaseLead(epoch: epoch) }
    func leader() async throws -> LeaderRecord? { try await durable.leader() }
    func fence(epoch: UInt64, onDeposed: @escaping @Sendable (LeaderRecord?) -> Void) async throws {
        try await hot.fence(epoch: epoch, onDeposed: onDeposed)
        try await durable.fence(epoch: epoch, onDeposed: onDeposed)
    }
}
