import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation

/// The one way into the engine for anything that asks on a client's behalf: the TCP protocol's
/// client conversation and the HTTP API both call it, so a rule (a resume, a cleanup, what a
/// damaged row answers) is written once.
public struct ClientDoor: Sendable {
    let commands: Commands
    var engine: Engine { commands.context.engine }
    var store: any CheckpointStore { commands.context.store }
    var config: CoordinatorConfig { commands.context.config }

    /// Answers one request: every kind but `watch`, whose answer is a stream (`events`). A
    /// request its token's grants do not cover is refused (`Access`).
    public func answer(_ body: Cairn_V1_ClientRequest.OneOf_Body, as grants: Grants) async throws -> Cairn_V1_ClientResponse.OneOf_Body {
        try Access.check(body, grants)
        return try await reply(body)
    }

    /// What a presented token grants: everything when the coordinator asks for no token, nil for
    /// a missing or unknown one. Compared as the TCP handshake compares (`Keyring`).
    public func grants(for token: String?) -> Grants? {
        guard let keyring = config.keyring else { return .all }
        guard let token, !token.isEmpty else { return nil }
        return keyring.grants(for: token)
    }

    /// A run's events as `cairn watch` gets them: the live ones while it is active, ending with
    /// the event whose `final` is set; for a run that is not active, that final event alone.
    /// Ending the stream early (a client gone) lets go of the subscription.
    public func events(_ runID: String, finalOnly: Bool = false) async throws -> AsyncStream<Cairn_V1_RunEvent> {
        guard let (subID, stream) = await engine.subscribe(runID, finalOnly: finalOnly) else {
            let info = try await commands.reads.runInfo(runID)
            var e = Cairn_V1_RunEvent()
            e.runID = runID
            e.kind = info.status == "paused" ? "paused" : "finished"
            e.step = info.step
            e.run = info
            e.final = true
            return AsyncStream { c in c.yield(e); c.finish() }
        }
        return AsyncStream { c in
            let task = Task {
                var ended = false
                for await event in stream {
                    c.yield(event)
                    if event.final { ended = true; break }
                }
                if !ended && !Task.isCancelled { c.yield(Self.cutOff(runID)) }
                c.finish()
                await engine.unsubscribe(runID, subID)
            }
            c.onTermination = { _ in task.cancel(); Task { await engine.unsubscribe(runID, subID) } }
        }
    }

    /// Every run's events from now on (the dashboard's one stream); a run's `final` event ends
    /// that run, not the stream. A client that falls 10,000 events behind is cut off (an `ended`
    /// event, then the end). `snapshots` tells where each run stands.
    public func allEvents(conflated: Bool = false) async -> AsyncStream<Cairn_V1_RunEvent> {
        let (subID, stream) = await engine.subscribeAll(conflated: conflated)
        return AsyncStream { c in
            let task = Task {
                for await event in stream { c.yield(event) }
                if !Task.isCancelled { c.yield(Self.cutOff("")) }
                c.finish()
                await engine.unsubscribeAll(subID)
            }
            c.onTermination = { _ in task.cancel(); Task { await engine.unsubscribeAll(subID) } }
        }
    }

    /// A `snapshot` event for each run the coordinator holds now, oldest first.
    public func snapshots() async -> [Cairn_V1_RunEvent] { await engine.snapshots() }

    /// The last event of a stream the engine ended early: its reader fell too far behind, or
    /// the coordinator is stopping.
    static func cutOff(_ runID: String) -> Cairn_V1_RunEvent {
        var e = Cairn_V1_RunEvent()
        e.runID = runID
        e.kind = "ended"
        e.message = "the coordinator stopped this stream (it fell more than \(EventHub.buffer) events behind, or the coordinator is stopping): watch again"
        e.final = true
        return e
    }

    /// The graph a run runs.
    public func graph(_ runID: String, as grants: Grants) async throws -> Graph {
        try Access.checkRead(grants, doing: "read a run's graph")
        return try await commands.reads.runGraph(runID)
    }

    /// What an error means to whoever asked: a code and a message (damaged stored data named).
    public static func failure(_ error: any Error) -> (code: Cairn_V1_ErrorCode, message: String) {
        if let e = error as? EngineError { return (e.code, e.message) }
        if StoreFailure.isDamage(error) { return (.errorDataDamaged, "stored data is damaged: \(error)") }
        return (.errorInternal, "\(error)")
    }
}

/// The run commands and reads, made once per coordinator: what the doors call.
struct Commands: Sendable {
    let context: CommandContext
    let runs: RunCommands
    let timeTravel: TimeTravel
    let dataLife: DataLife
    var reads: RunReads { RunReads(context: context) }
    var debug: RunDebug { RunDebug(context: context) }

    init(context: CommandContext) {
        self.context = context
        runs = RunCommands(context: context)
        timeTravel = TimeTravel(context: context)
        dataLife = DataLife(context: context)
    }
}

extension Coordinator {
    /// The door the HTTP API (and any other front) calls.
    public var door: ClientDoor { ClientDoor(commands: commands) }
}
