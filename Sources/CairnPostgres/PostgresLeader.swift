import CairnStore
import Foundation
import PostgresNIO

/// The lead among coordinators on one database: the `cairn_leader` row, decided on the server's
/// clock (`clock_timestamp()`), so the coordinators' own clocks never matter. A claim raises the
/// epoch; a write transaction of a fenced store reads the row `FOR SHARE` first and fails with
/// `Deposed` when the epoch moved on (Temporal's range-id check), so a coordinator that lost the
/// lead while paused cannot write, however late it wakes.
extension PostgresStore: LeaderElection {
    static let leaderColumns = "holder, epoch, address, http, extract(epoch FROM lease_until - clock_timestamp())::double precision AS remaining"

    public func prepareLead() async throws {
        try await migrate()
    }

    public func claimLead(holder: String, address: String, http: String, lease: Double) async throws -> (epoch: UInt64?, leader: LeaderRecord?) {
        try await perform("claiming the lead in") {
            try await self.leased(workTimeout: self.workTimeout) { conn in
                let won = try await conn.query("""
                    UPDATE cairn_leader SET epoch = epoch + 1, holder = \(holder), address = \(address), http = \(http),
                        lease_until = clock_timestamp() + \(lease) * interval '1 second', changed_at = clock_timestamp()
                    WHERE id = 1 AND (lease_until < clock_timestamp() OR (address = \(address) AND address <> ''))
                    RETURNING epoch
                    """, logger: self.logger).collect()
                if let row = won.first { return (UInt64(try row.decode(Int64.self)), nil) }
                return (nil, try await Self.leaderRow(conn, logger: self.logger))
            }
        }
    }

    public func renewLead(epoch: UInt64, lease: Double) async throws -> LeaderRecord? {
        try await perform("renewing the lead in") {
            try await self.leased(workTimeout: self.workTimeout) { conn in
                let renewed = try await conn.query("""
                    UPDATE cairn_leader SET lease_until = clock_timestamp() + \(lease) * interval '1 second'
                    WHERE id = 1 AND epoch = \(Int64(epoch)) RETURNING epoch
                    """, logger: self.logger).collect()
                if !renewed.isEmpty { return nil }
                return try await Self.leaderRow(conn, logger: self.logger) ?? LeaderRecord(holder: "", epoch: 0, address: "", http: "", remaining: 0)
            }
        }
    }

    public func announceLead(epoch: UInt64, address: String, http: String) async throws {
        try await perform("announcing the lead in") {
            try await self.leased(workTimeout: self.workTimeout) { conn in
                try await conn.query("UPDATE cairn_leader SET address = \(address), http = \(http) WHERE id = 1 AND epoch = \(Int64(epoch))",
                                     logger: self.logger)
            }
        }
    }

    public func releaseLead(epoch: UInt64) async throws {
        try await perform("giving up the lead in") {
            try await self.leased(workTimeout: self.workTimeout) { conn in
                try await conn.query("UPDATE cairn_leader SET lease_until = to_timestamp(0) WHERE id = 1 AND epoch = \(Int64(epoch))",
                                     logger: self.logger)
            }
        }
    }

    public func leader() async throws -> LeaderRecord? {
        try await perform("reading the lead in") {
            try await self.leased(workTimeout: self.workTimeout) { conn in try await Self.leaderRow(conn, logger: self.logger) }
        }
    }

    public func fence(epoch: UInt64, onDeposed: @escaping @Sendable (LeaderRecord?) -> Void) async throws {
        fencing.set(epoch: epoch, onDeposed: onDeposed)
    }

    /// Inside a write transaction: the row held `FOR SHARE` (a claim waits for this transaction),
    /// and the transaction refused when its epoch is not ours.
    func checkFence(_ conn: PostgresConnection, epoch: UInt64) async throws {
        let rows = try await conn.query("SELECT \(unescaped: Self.leaderColumns) FROM cairn_leader WHERE id = 1 FOR SHARE", logger: logger).collect()
        let leader = try rows.first.map(Self.leader)
        guard leader?.epoch != epoch else { return }
        fencing.deposed(leader)
        throw Deposed(epoch: epoch, leader: leader)
    }

    static func leaderRow(_ conn: PostgresConnection, logger: Logger) async throws -> LeaderRecord? {
        let rows = try await conn.query("SELECT \(unescaped: leaderColumns) FROM cairn_leader WHERE id = 1", logger: logger).collect()
        guard let row = rows.first else { return nil }
        let record = try leader(row)
        return record.epoch == 0 ? nil : record
    }

    static func leader(_ row: PostgresRow) throws -> LeaderRecord {
        let (holder, epoch, address, http, remaining) = try row.decode((String, Int64, String, String, Double?).self)
        return LeaderRecord(holder: holder, epoch: UInt64(epoch), address: address, http: http, remaining: remaining ?? -.infinity)
    }
}

/// The epoch a leading store's write transactions check, and whom to tell when one is refused.
final class Fencing: @unchecked Sendable {
    private let lock = NSLock()
    private var _epoch: UInt64?
    private var onDeposed: (@Sendable (LeaderRecord?) -> Void)?

    var epoch: UInt64? { lock.withLock { _epoch } }

    func set(epoch: UInt64, onDeposed: @escaping @Sendable (LeaderRecord?) -> Void) {
        lock.withLock {
            _epoch = epoch
            self.onDeposed = onDeposed
        }
    }

    /// Tells the owner once.
    func deposed(_ leader: LeaderRecord?) {
        let tell = lock.withLock { () -> (@Sendable (LeaderRecord?) -> Void)? in
            defer { onDeposed = nil }
            return onDeposed
        }
        tell?(leader)
    }
}
