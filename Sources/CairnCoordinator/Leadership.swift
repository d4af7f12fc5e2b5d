import CairnStore
import Foundation

/// Which of several coordinators on one PostgreSQL database acts, as a pure state machine: the
/// database decides (a row with an epoch and a lease, on the database's clock), this decides
/// what to ask it next and what to do with the answer. No I/O, no clock of its own: the caller
/// passes the time and carries out the action returned, and tests drive it with plain numbers.
///
/// ```
///  standby ──claim won (epoch N)──► active(N) ──renew refused / a write fenced──► steppedDown
///     ▲  └─claim refused: wait, claim again every `claimEvery`         │
///     │                                            renew every `renewEvery`; the database
///     └──────── a stepped-down coordinator starts again as a standby ──┘ unreachable: keep trying
/// ```
///
/// Safety does not rest on timing: every write transaction checks the writer's epoch against the
/// row (`FOR SHARE`), so a deposed coordinator that wakes from a pause cannot write. Timing only
/// decides how soon a standby takes over (the lease) and how soon an active one notices (the
/// next renewal or write). An active coordinator that cannot reach the database keeps its role
/// and holds, as with one coordinator: nobody else can take over without the database either,
/// and one that does is found out by the fence.
public struct Leadership: Sendable {
    /// Who leads, as the database says (its holder, epoch and addresses).
    public typealias Leader = LeaderRecord

    public enum Role: Sendable, Equatable {
        /// Waiting; `leader` is who acts, when known.
        case standby(leader: Leader?)
        case active(epoch: UInt64)
        /// Deposed: another holds a newer epoch. Final; the process starts again as a standby.
        case steppedDown(reason: String)
    }

    public struct Timing: Sendable, Equatable {
        /// How long a claim or a renewal holds on the database's clock (`--leader-lease`).
        public var lease: Double = 3
        /// How often the active coordinator renews (a third of the lease: two may fail).
        public var renewEvery: Double = 1
        /// How often a standby tries to claim.
        public var claimEvery: Double = 0.5

        public init(lease: Double = 3) {
            self.lease = lease
            self.renewEvery = lease / 3
            self.claimEvery = min(0.5, lease / 6)
        }
    }

    public enum Event: Sendable, Equatable {
        case claimed(epoch: UInt64)
        /// Another holds an unexpired lease (nil: the row could not be read).
        case claimRefused(leader: Leader?)
        case renewed
        /// The row's epoch is no longer ours.
        case renewRefused(leader: Leader?)
        /// A write transaction found a newer epoch in the row.
        case fenced(leader: Leader?)
        /// The database did not answer (down, restarting, unreachable).
        case databaseFailed(String)
    }

    public enum Action: Sendable, Equatable {
        case claim
        case renew(epoch: UInt64)
        /// Won: open the store at this epoch, recover the runs, serve.
        case becomeActive(epoch: UInt64)
        /// Lost: stop acting at once (nothing more may be dispatched or answered as active).
        case stepDown(reason: String)
    }

    public let timing: Timing
    public private(set) var role: Role = .standby(leader: nil)
    /// When the next claim or renewal is due.
    public private(set) var nextAttempt: Double
    /// A request is out (claims and renewals are asked one at a time).
    private var asking = false
    /// When the last renewal that the database accepted was sent, and the last failure's text.
    public private(set) var lastRenewed: Double?
    public private(set) var lastFailure: String?

    public init(timing: Timing = Timing(), now: Double) {
        self.timing = timing
        self.nextAttempt = now
    }

    /// What to ask the database now, if anything.
    public mutating func due(now: Double) -> Action? {
        guard !asking, now >= nextAttempt else { return nil }
        switch role {
        case .standby:
            asking = true
            return .claim
        case .active(let epoch):
            asking = true
            return .renew(epoch: epoch)
        case .steppedDown:
            return nil
        }
    }

    /// The database's answer to the request that was out, or a write that was fenced.
    public mutating func record(_ event: Event, now: Double) -> Action? {
        if case .fenced(let leader) = event {
            return stepDown("a write found epoch \(leader.map { String($0.epoch) } ?? "?") in the database\(Self.at(leader))")
        }
        asking = false
        switch (role, event) {
        case (.standby, .claimed(let epoch)):
            role = .active(epoch: epoch)
            lastRenewed = now
            lastFailure = nil
            nextAttempt = now + timing.renewEvery
            return .becomeActive(epoch: epoch)
        case (.standby, .claimRefused(let leader)):
            role = .standby(leader: leader)
            lastFailure = nil
            nextAttempt = now + timing.claimEvery
            return nil
        case (.active, .renewed):
            lastRenewed = now
            lastFailure = nil
            nextAttempt = now + timing.renewEvery
            return nil
        case (.active, .renewRefused(let leader)):
            return stepDown("the database gave the lead to epoch \(leader.map { String($0.epoch) } ?? "?")\(Self.at(leader))")
        case (_, .databaseFailed(let why)):
            lastFailure = why
            nextAttempt = now + (isStandby ? timing.claimEvery : timing.renewEvery / 2)
            return nil
        default:
            // An answer that does not fit the role (a late one after stepping down): nothing to do.
            return nil
        }
    }

    public var isActive: Bool { if case .active = role { true } else { false } }
    public var isStandby: Bool { if case .standby = role { true } else { false } }

    /// Seconds since the database last accepted a renewal (an active coordinator), for health.
    public func sinceRenewal(now: Double) -> Double? { lastRenewed.map { now - $0 } }

    private mutating func stepDown(_ reason: String) -> Action? {
        if case .steppedDown = role { return nil }
        role = .steppedDown(reason: reason)
        asking = false
        return .stepDown(reason: reason)
    }

    private static func at(_ leader: Leader?) -> String {
        guard let leader, !leader.address.isEmpty else { return "" }
        return " (\(leader.address))"
    }
}
