import CairnStore
import CoreMetrics
import Foundation
import Logging

/// Carries out `Leadership`'s decisions against the store's leader row: claims while standing by,
/// renews while active, and says when this coordinator must step down. The decisions are the
/// state machine's; this actor only asks the database and sleeps until the next one is due.
public actor LeaderElector {
    let election: any LeaderElection
    let holder: String
    var address: String
    var http: String
    let logger: Logger
    private var leadership: Leadership
    private let clock = ContinuousClock()
    private let start: ContinuousClock.Instant
    private let activeGauge: Gauge
    private var stepDownHandler: (@Sendable (String) -> Void)?
    private var lastLeaderLogged: UInt64?

    public init(election: any LeaderElection, lease: Double, address: String, http: String, logger: Logger,
                metrics: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.election = election
        self.holder = "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UUID().uuidString.prefix(8))"
        self.address = address
        self.http = http
        self.logger = logger
        self.start = ContinuousClock.now
        self.leadership = Leadership(timing: Leadership.Timing(lease: lease), now: 0)
        self.activeGauge = Gauge(label: "cairn_coordinator_active", factory: metrics)
        activeGauge.record(0)
    }

    private var now: Double {
        let d = start.duration(to: clock.now)
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    public var role: Leadership.Role { leadership.role }

    /// Stands by until the store gives this coordinator the lead; returns its epoch. Cancelled
    /// (a shutdown while standing by): throws `CancellationError`.
    public func waitUntilActive() async throws -> UInt64 {
        try await election.prepareLead()
        while true {
            try Task.checkCancellation()
            if let action = leadership.due(now: now), case .becomeActive(let epoch) = await carryOut(action) {
                // Fenced before anything is read to act on: from here a write of an older
                // epoch is refused by the store, however late it comes.
                try await election.fence(epoch: epoch) { leader in Task { await self.fenced(leader) } }
                return epoch
            }
            try await sleepUntilDue()
        }
    }

    /// While active: renews the lead when due, until cancelled; `onStepDown` is called once, when
    /// a renewal or a write finds another coordinator leads.
    public func lead(onStepDown: @escaping @Sendable (String) -> Void) async {
        stepDownHandler = onStepDown
        while !Task.isCancelled {
            if let action = leadership.due(now: now) { _ = await carryOut(action) }
            if case .steppedDown = leadership.role { return }
            do { try await sleepUntilDue() } catch { return }
        }
    }

    /// A write transaction found a newer epoch (the store's fence).
    public func fenced(_ leader: LeaderRecord?) {
        if let action = leadership.record(.fenced(leader: leader), now: now) { perform(action) }
    }

    /// Says where this coordinator serves, once its ports are bound (port 0 picks one).
    public func announce(address: String, http: String) async {
        self.address = address
        self.http = http
        guard case .active(let epoch) = leadership.role else { return }
        do { try await election.announceLead(epoch: epoch, address: address, http: http) } catch {
            logger.warning("could not record this coordinator's address in the leader row", metadata: ["error": "\(error)"])
        }
    }

    /// Gives the lead up (a graceful stop), so a standby takes over without waiting for the lease.
    public func release() async {
        guard case .active(let epoch) = leadership.role else { return }
        do {
            try await election.releaseLead(epoch: epoch)
            logger.notice("gave up the lead: a standby takes over at once", metadata: ["epoch": "\(epoch)"])
        } catch {
            logger.warning("could not give up the lead; a standby takes over when the lease runs out", metadata: ["error": "\(error)"])
        }
        activeGauge.record(0)
    }

    /// What /healthz, the standby's doors and stats say about the role.
    public struct Report: Sendable {
        public var role: String
        /// This coordinator's epoch when active, else the leader's.
        public var epoch: UInt64?
        /// The active coordinator's protocol and HTTP addresses (this one's when active).
        public var leader: String?
        public var leaderHTTP: String?
        public var failure: String?
    }

    public func report() -> Report {
        switch leadership.role {
        case .active(let epoch):
            Report(role: "active", epoch: epoch, leader: address, leaderHTTP: http.isEmpty ? nil : http, failure: leadership.lastFailure)
        case .standby(let leader):
            Report(role: "standby", epoch: leader?.epoch, leader: leader?.address,
                   leaderHTTP: (leader?.http).flatMap { $0.isEmpty ? nil : $0 }, failure: leadership.lastFailure)
        case .steppedDown:
            Report(role: "stepped-down", epoch: nil, leader: nil, leaderHTTP: nil, failure: leadership.lastFailure)
        }
    }

    // MARK: carrying out

    private func carryOut(_ action: Leadership.Action) async -> Leadership.Action? {
        let event: Leadership.Event
        switch action {
        case .claim:
            do {
                let answer = try await election.claimLead(holder: holder, address: address, http: http, lease: leadership.timing.lease)
                event = answer.epoch.map { .claimed(epoch: $0) } ?? .claimRefused(leader: answer.leader)
            } catch {
                event = .databaseFailed("\(error)")
            }
        case .renew(let epoch):
            do {
                event = try await election.renewLead(epoch: epoch, lease: leadership.timing.lease).map { .renewRefused(leader: $0) } ?? .renewed
            } catch {
                event = .databaseFailed("\(error)")
            }
        default:
            return nil
        }
        let hadFailure = leadership.lastFailure != nil
        let next = leadership.record(event, now: now)
        log(event, hadFailure: hadFailure)
        if let next { perform(next) }
        return next
    }

    private func perform(_ action: Leadership.Action) {
        switch action {
        case .becomeActive(let epoch):
            activeGauge.record(1)
            logger.notice("this coordinator leads", metadata: ["epoch": "\(epoch)", "address": "\(address)"])
        case .stepDown(let reason):
            activeGauge.record(0)
            logger.critical("stepping down: \(reason)")
            stepDownHandler?(reason)
            stepDownHandler = nil
        case .claim, .renew:
            break
        }
    }

    private func log(_ event: Leadership.Event, hadFailure: Bool) {
        switch event {
        case .claimRefused(let leader?):
            if lastLeaderLogged != leader.epoch {
                lastLeaderLogged = leader.epoch
                logger.notice("standing by: another coordinator leads", metadata: ["leader": "\(leader.address)", "epoch": "\(leader.epoch)"])
            }
        case .databaseFailed(let why):
            if !hadFailure { logger.error("cannot reach the store to \(leadership.isActive ? "renew" : "claim") the lead; trying again", metadata: ["error": "\(why)"]) }
        case .renewed, .claimed:
            if hadFailure { logger.notice("the store answers again") }
        default:
            break
        }
    }

    private func sleepUntilDue() async throws {
        let wait = max(0.01, leadership.nextAttempt - now)
        try await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
    }
}
