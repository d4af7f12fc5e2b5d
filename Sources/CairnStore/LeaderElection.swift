/// Who leads among coordinators that share one store, as the store records it: the holder of
/// the newest epoch and how long its lease still runs (on the store's clock).
public struct LeaderRecord: Sendable, Equatable {
    /// The holding process's identity (unique per start).
    public var holder: String
    public var epoch: UInt64
    /// Where it serves its protocol port, `HOST:PORT`, and its HTTP API (empty: none).
    public var address: String
    public var http: String
    /// Seconds its lease still runs (negative: run out).
    public var remaining: Double

    public init(holder: String, epoch: UInt64, address: String, http: String = "", remaining: Double = 0) {
        self.holder = holder
        self.epoch = epoch
        self.address = address
        self.http = http
        self.remaining = remaining
    }
}

/// A store several coordinators can share, one active at a time (PostgreSQL). The store is the
/// judge: a claim is won only when the lease has run out, and once `fence(epoch:)` is set every
/// write transaction first checks the row's epoch and fails with `Deposed` if it moved on.
public protocol LeaderElection: Sendable {
    /// Makes the store ready to be claimed (its schema created or upgraded).
    func prepareLead() async throws
    /// Takes the lead when its lease has run out (or was held by this same address, a restart):
    /// the new epoch, or nil with who leads.
    func claimLead(holder: String, address: String, http: String, lease: Double) async throws -> (epoch: UInt64?, leader: LeaderRecord?)
    /// Extends the lease of `epoch`: nil when renewed, else who holds the lead now.
    func renewLead(epoch: UInt64, lease: Double) async throws -> LeaderRecord?
    /// Says where the holder of `epoch` serves (once its port is bound).
    func announceLead(epoch: UInt64, address: String, http: String) async throws
    /// Gives the lead up at once (a graceful stop): a standby need not wait for the lease.
    func releaseLead(epoch: UInt64) async throws
    func leader() async throws -> LeaderRecord?
    /// From now on every write checks the store's epoch is `epoch`; `onDeposed` is told (once)
    /// when one finds it is not. Before the new leader reads anything it must act on.
    func fence(epoch: UInt64, onDeposed: @escaping @Sendable (LeaderRecord?) -> Void) async throws
}

/// A write refused because another coordinator holds the lead now.
public struct Deposed: Error, CustomStringConvertible {
    public var epoch: UInt64
    public var leader: LeaderRecord?
    public init(epoch: UInt64, leader: LeaderRecord?) { self.epoch = epoch; self.leader = leader }
    public var description: String {
        "this coordinator (epoch \(epoch)) no longer leads: epoch \(leader.map { String($0.epoch) } ?? "?")\(leader.map { " at \($0.address)" } ?? "") does"
    }
}
