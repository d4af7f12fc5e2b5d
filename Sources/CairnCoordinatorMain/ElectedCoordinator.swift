import ArgumentParser
import CairnCoordinator
import CairnHTTP
import CairnOps
import CairnProtocol
import CairnStore
import CairnTLS
import Foundation
import Logging
import NIOSSL
import ServiceLifecycle

/// A coordinator on a store that several share (PostgreSQL): it stands by until the store gives it
/// the lead, then starts as any coordinator does (recovering the runs from their newest
/// checkpoints, binding its ports) and renews the lead while it serves. A coordinator that finds
/// another leads steps down by starting again as a standby (exec of itself): nothing of its
/// memory survives to act on, and its open connections close, so its workers move on.
struct ElectedCoordinator: Service {
    let config: CoordinatorConfig
    let stores: StoreStack
    let elector: LeaderElector
    let active: ActiveCoordinator
    let httpAddress: (host: String, port: Int)?
    let httpAdvertised: String
    let advertised: String
    let logger: Logger

    func run() async throws {
        let elector = self.elector
        // While standing by, both ports say where the active coordinator is.
        let door: StandbyDoor
        do {
            door = try await StandbyDoor.open(host: config.host, port: config.port, tls: config.tls,
                                              limits: .init(handshakeTimeout: config.handshakeTimeout, frameTimeout: config.frameTimeout),
                                              leader: { await elector.report().leader }, logger: logger)
        } catch {
            throw ExitCode(Bootstrap.failure("cairn-coordinator", "cannot listen on \(config.host):\(config.port): \(error)"))
        }
        var standbyHTTP: (group: ServiceGroup, task: Task<Void, any Error>)?
        if let (host, port) = httpAddress {
            let tls: TLSConfiguration? = try config.tls.map(CairnTLS.serverConfiguration)
            let app = try StandbyHTTP.application(host: host, port: port, tls: tls, logger: logger) { await elector.report().leaderHTTP }
            let group = ServiceGroup(services: [app], logger: logger)
            standbyHTTP = (group, Task { try await group.run() })
        }
        func closeStandbyDoors() async {
            await door.close()
            if let standbyHTTP {
                await standbyHTTP.group.triggerGracefulShutdown()
                _ = await standbyHTTP.task.result
            }
        }
        let epoch: UInt64
        do {
            epoch = try await cancelWhenGracefulShutdown { try await elector.waitUntilActive() }
        } catch is CancellationError {
            await closeStandbyDoors()
            return  // stopped while standing by
        } catch {
            await closeStandbyDoors()
            throw error
        }
        await closeStandbyDoors()
        var config = self.config
        config.epoch = epoch
        let coordinator = Coordinator(config: config, stores: stores, logger: logger)
        do { try await coordinator.start() } catch {
            await elector.release()
            throw ExitCode(Bootstrap.failure("cairn-coordinator", "\(error)"))
        }
        let port = coordinator.port ?? config.port
        FileHandle.standardOutput.write(Data("cairn-coordinator listening on \(config.host):\(port)\n".utf8))
        let address = advertised.hasSuffix(":0") ? String(advertised.dropLast(2)) + ":\(port)" : advertised
        await elector.announce(address: address, http: httpAdvertised)
        active.set(coordinator)
        let logger = self.logger, httpAddress = self.httpAddress
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                await elector.lead { reason in ElectedCoordinator.restartAsStandby(reason, logger: logger) }
            }
            if let (host, port) = httpAddress {
                let api = HTTPAPI(door: coordinator.door, logger: logger)
                let tls: TLSConfiguration? = try config.tls.map(CairnTLS.serverConfiguration)
                let advertisedHTTP = httpAdvertised
                let app = try api.application(host: host, port: port, tls: tls) { bound in
                    logger.notice("HTTP API listening", metadata: ["address": "\(host):\(bound)", "tls": "\(tls == nil ? "off" : "on")"])
                    // Port 0 picked one: standbys redirect to the port bound.
                    if advertisedHTTP.hasSuffix(":0") {
                        await elector.announce(address: address, http: String(advertisedHTTP.dropLast(2)) + ":\(bound)")
                    }
                }
                tasks.addTask { try await app.run() }
            }
            try await coordinator.run()
            tasks.cancelAll()
        }
        await elector.release()
    }

    /// Steps down: the process image is replaced by a fresh start of the same command, which
    /// stands by. No write can follow (every write transaction checks the epoch anyway).
    static func restartAsStandby(_ reason: String, logger: Logger) -> Never {
        logger.critical("starting again as a standby", metadata: ["reason": "\(reason)"])
        fflush(nil)
        // What this process opened does not cross the exec (a listening socket would keep its
        // port, and the fresh start could not bind it again); what it was given does (its
        // supervisor may watch one to learn when it exits).
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            for fd in fds.compactMap(Int32.init) where fd > 2 && !inherited.contains(fd) { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed: exit, and let the supervisor start it again.
        FileHandle.standardError.write(Data("cairn-coordinator: stepped down (\(reason)); could not restart itself (errno \(errno)): exiting\n".utf8))
        exit(75)
    }

    /// The file descriptors the process was started with (taken first thing in `run`).
    nonisolated(unsafe) static var inherited: Set<Int32> = []

    static func noteInheritedDescriptors() {
        inherited = Set(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap(Int32.init))
    }

    /// The default advertised address: the listening one, with the machine's name for a wildcard.
    static func advertise(host: String, port: Int) -> String {
        let h = ["0.0.0.0", "::", ""].contains(host) ? ProcessInfo.processInfo.hostName : host
        return "\(h):\(port)"
    }
}

/// The coordinator once it leads (nil while standing by), for /healthz and /metrics.
final class ActiveCoordinator: @unchecked Sendable {
    private let lock = NSLock()
    private var coordinator: Coordinator?
    func set(_ c: Coordinator) { lock.withLock { coordinator = c } }
    var current: Coordinator? { lock.withLock { coordinator } }

    /// /healthz: the coordinator's own health with its role, or a standby's (healthy: it is
    /// doing its job), naming who leads.
    func health(_ elector: LeaderElector) async -> (healthy: Bool, detail: String) {
        let r = await elector.report()
        var role = "\"role\": \"\(r.role)\""
        if let e = r.epoch { role += ", \"\(r.role == "active" ? "epoch" : "leader_epoch")\": \(e)" }
        if r.role != "active", let l = r.leader { role += ", \"leader\": \"\(l)\"" }
        if let f = r.failure { role += ", \"lead_error\": \"\(f.replacingOccurrences(of: "\"", with: "'"))\"" }
        guard let c = current else {
            return (r.role == "standby", "{\"status\": \"\(r.role == "standby" ? "ok" : "unhealthy")\", \(role)}")
        }
        let h = await c.health()
        return (h.healthy, "{" + role + ", " + h.detail.dropFirst())
    }
}
