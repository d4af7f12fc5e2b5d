import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation
import Logging
import NIOCore

/// Resume, update, fork and rewind, and the deadlines of paused runs' questions: this reads what
/// the edit needs, `RunEdits` decides, and the new checkpoint with everything it implies is
/// written as one batch (by the engine) before a reply or a task goes out. A request that finds
/// the store refusing writes is refused at once. It runs on the engine's event loop, whose
/// timers fire its deadlines.
actor TimeTravel {
    let context: CommandContext
    nonisolated var unownedExecutor: UnownedSerialExecutor { context.engine.unownedExecutor }
    var engine: Engine { context.engine }
    var store: any CheckpointStore & MaintainedStore { context.store }
    var reads: RunReads { RunReads(context: context) }
    var logger: Logger { context.logger }
    var now: Double { context.now }
    var loop: any EventLoop { context.engine.loop }
    /// The questions a resume in progress is answering, by run: a resume that loses the race
    /// is told which, even once the winner's checkpoint no longer lists them as pending.
    private var answering: [String: [String]] = [:]
    /// Paused runs whose question has a deadline: when their timer fires.
    private var deadlineTimers: [String: Double] = [:]

    init(context: CommandContext) { self.context = context }

    func resume(_ req: Cairn_V1_ResumeRequest) async throws -> Cairn_V1_RunInfo {
        let runID = req.runID
        let answers: ResumeAnswers
        let value = try Self.json(req.valueJson, what: "--value")
        if !req.interruptID.isEmpty {
            answers = .one(id: req.interruptID, value: value)
        } else {
            answers = value.map { .value($0) } ?? .none
        }
        if await engine.isClaimed(runID) {
            // Two resumes racing for one question: the loser hears which question the winner is answering.
            var ids = answering[runID] ?? []
            if ids.isEmpty {
                let rec = try await store.run(runID)
                ids = answering[runID] ?? PendingInterrupt.pending(in: rec?.interrupt, checkpointID: rec?.checkpointID ?? "").map(\.id)
            }
            throw EngineError(.errorConflict, "run \(runID): interrupt \(ids.isEmpty ? "?" : ids.joined(separator: ", ")) is being answered by another resume right now; nothing was done (cairn status \(runID) shows the outcome)")
        }
        return try await editing(runID, "resumed") {
            if await self.engine.activeStatus(runID) != nil { throw try await self.notPaused(runID) }
            let stored = try await self.reads.stored(runID, checkpointID: nil)
            self.answering[runID] = PendingInterrupt.pending(in: stored.record.interrupt, checkpointID: stored.record.checkpointID ?? "").map(\.id)
            defer { self.answering[runID] = nil }
            let edit: RunEdit
            do {
                edit = try RunEdits.resume(stored, answers: answers, by: Self.who(req.by), now: self.context.now, newID: Identifiers.sortable())
            } catch let f as RunEdits.Failure where f.kind == .conflict {
                throw try await self.notPaused(runID)
            }
            let info = try await self.start(edit, stored)
            self.context.logger.info("run resumed", metadata: ["run_id": "\(runID)", "checkpoint": "\(edit.checkpoint.checkpointID)",
                                                       "by": "\(Self.who(req.by))"])
            return info
        }
    }

    func update(_ req: Cairn_V1_UpdateRequest) async throws -> Cairn_V1_RunInfo {
        let runID = req.runID
        let values = try Self.values(req.valuesJson)
        return try await editing(runID, "updated") {
            if let status = await self.engine.activeStatus(runID) {
                throw EngineError(.errorConflict, "run \(runID) is \(status.rawValue): only a run that is paused, completed, failed or cancelled can be updated (cancel it first, or fork it)")
            }
            let stored = try await self.reads.stored(runID, checkpointID: nil)
            let edit = try RunEdits.update(stored, values: values, asNode: req.asNode.isEmpty ? nil : req.asNode, by: Self.who(req.by),
                                           now: self.context.now, newID: Identifiers.sortable())
            try await self.engine.record(edit.batch, unconfirmed: "run \(runID) is updated", runID: runID)
            self.armDeadline(edit.record)
            self.context.logger.info("run updated", metadata: ["run_id": "\(runID)", "checkpoint": "\(edit.checkpoint.checkpointID)",
                                                       "status": "\(edit.record.status.rawValue)"])
            var info = RunReads.info(edit.record)
            info.nextNodes = Self.nodes(edit.planned)
            return info
        }
    }

    /// A fork (a new run from any checkpoint of `run_id`) or, `in_place`, a rewind.
    func fork(_ req: Cairn_V1_ForkRequest) async throws -> Cairn_V1_RunInfo {
        let parentID = req.runID
        let values = try Self.values(req.valuesJson)
        guard !req.checkpointID.isEmpty else { throw EngineError(.errorInvalidArgument, "--checkpoint is required: the checkpoint to start from (cairn history \(parentID) lists them)") }
        if req.inPlace && !req.newRunID.isEmpty {
            throw EngineError(.errorInvalidArgument, "a rewind re-runs the run itself: --run-id is for a fork")
        }
        let generated = req.newRunID.isEmpty && !req.inPlace
        let target = req.inPlace ? parentID : (generated ? "r-" + Identifiers.random(12) : req.newRunID)
        guard Submission.validRunID(target) else {
            throw EngineError(.errorInvalidArgument, "run id '\(target)' must be 1-128 letters, digits, '-', '_', '.' or ':'")
        }
        let what = req.inPlace ? "rewound" : "forked"
        return try await editing(target, what) {
            if req.inPlace, let status = await self.engine.activeStatus(parentID) {
                throw EngineError(.errorConflict, "run \(parentID) is \(status.rawValue): a rewind re-runs a run that is not active (cancel it first, or fork it instead)")
            }
            if !req.inPlace {
                if await self.engine.activeStatus(target) != nil {
                    throw EngineError(.errorConflict, "run id \(target) is taken by an active run; fork with another --run-id")
                }
                if !generated, let old = try await self.store.run(target) {
                    throw EngineError(.errorConflict, "run id \(target) is already taken (status \(old.status.rawValue)); fork with another --run-id")
                }
            }
            let stored = try await self.reads.stored(parentID, checkpointID: req.checkpointID)
            let edit = try RunEdits.branch(stored, into: target, values: values, asNode: req.asNode.isEmpty ? nil : req.asNode,
                                           by: Self.who(req.by), now: self.context.now, newID: Identifiers.sortable())
            let info = try await self.start(edit, stored)
            self.context.logger.info(req.inPlace ? "run rewound" : "run forked",
                             metadata: ["run_id": "\(target)", "from": "\(parentID)@\(req.checkpointID)", "checkpoint": "\(edit.checkpoint.checkpointID)"])
            return info
        }
    }

    // MARK: - deadlines

    /// Arms the timer of a paused run whose question has a deadline (once per run and time).
    func armDeadline(_ record: RunRecord) {
        guard let at = RunEdits.nextDeadline(record), deadlineTimers[record.runID] != at else { return }
        deadlineTimers[record.runID] = at
        let runID = record.runID
        let delay = max(0, at - now)
        loop.scheduleTask(in: .milliseconds(Int64((delay * 1000).rounded(.up)))) {
            Task { await self.expireDue(runID, at: at) }
        }
    }

    /// After a restart: every paused run's deadline is armed again (a deadline already past
    /// fires at once).
    func armDeadlines() async {
        do {
            for listing in try await store.runs(RunFilter(status: .paused, limit: 1_000_000)) {
                if let r = listing.record { armDeadline(r) }
            }
        } catch {
            logger.error("could not list paused runs to arm their deadlines; they are armed at the next start", metadata: ["error": "\(error)"])
        }
    }

    /// A deadline's timer fired: the run is failed or resumed as its graph says, unless it was
    /// answered in time. A busy run (a person answering right now) or a store refusing writes
    /// is tried again shortly.
    func expireDue(_ runID: String, at: Double) async {
        guard deadlineTimers[runID] == at else { return }
        deadlineTimers[runID] = nil
        do {
            try await editing(runID, "resumed") {
                guard await self.engine.activeStatus(runID) == nil else { return }
                let stored = try await self.reads.stored(runID, checkpointID: nil)
                guard let edit = try RunEdits.expire(stored, now: self.context.now, newID: Identifiers.sortable()) else {
                    self.armDeadline(stored.record)
                    return
                }
                self.context.logger.notice("an interrupt's deadline passed", metadata: ["run_id": "\(runID)", "status": "\(edit.record.status.rawValue)",
                                                                                 "error": "\(edit.record.error ?? "")"])
                _ = try await self.start(edit, stored)
            }
        } catch let e as EngineError where e.code == .errorConflict || e.code == .errorUnavailable {
            // Someone is answering right now, or the store refuses writes: look again in a second.
            logger.info("an interrupt's deadline passed; acting on it in 1s", metadata: ["run_id": "\(runID)", "why": "\(e.message)"])
            deadlineTimers[runID] = at + 1
            loop.scheduleTask(in: .seconds(1)) { Task { await self.expireDue(runID, at: at + 1) } }
        } catch {
            logger.error("could not act on an interrupt's deadline; the run stays paused (its deadline is armed again at the next start)",
                         metadata: ["run_id": "\(runID)", "error": "\(error)"])
        }
    }

    // MARK: - helpers

    /// Runs an edit of `runID` with no other edit, cancel or submit of it in between: two
    /// resumes racing for one question cannot both win.
    private func editing<T>(_ runID: String, _ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await context.claimed(runID, .edit, doing: what, body)
        } catch let f as RunEdits.Failure {
            throw EngineError(f.kind == .conflict ? .errorConflict : (f.kind == .notFound ? .errorNotFound : .errorInvalidArgument), f.message)
        }
    }

    /// Writes the edit's batch and starts the run from its new checkpoint (or, with nothing left
    /// to run, records it completed).
    private func start(_ edit: RunEdit, _ stored: StoredRun) async throws -> Cairn_V1_RunInfo {
        guard edit.record.status.isActive else {
            try await engine.record(edit.batch, unconfirmed: "run \(edit.record.runID) is changed", runID: edit.record.runID)
            return RunReads.info(edit.record)
        }
        // A resume or rewind does not know how long its append channels' delta chains are: their
        // next write is a full value. A fork's first writes are deltas over its parent's values
        // (so a fork copies none), and each run keeps its own chain bounded.
        let fork = edit.checkpoint.source == "fork"
        var start = RunStart(record: edit.record, graph: stored.graph, bundleHash: stored.bundleHash, checkpoint: edit.checkpoint,
                             state: edit.state, joins: edit.joins, step: (edit.planned, edit.done))
        if fork {
            start.chains = .fork(items: Dictionary(uniqueKeysWithValues: stored.graph.channels.keys.map { ($0, stored.state[$0]?.arrayValue?.count ?? 0) }))
        }
        return try await engine.continued(start, edit.batch,
                                          unconfirmed: "run \(edit.record.runID) is \(edit.checkpoint.source == "resume" ? "resumed" : "started from checkpoint \(edit.checkpoint.parentID ?? "?")")")
    }

    /// "Not paused", saying which questions were last answered, when and by whom (the loser of
    /// two racing resumes learns who won; a late answer learns it is late).
    private func notPaused(_ runID: String) async throws -> EngineError {
        var status = await engine.activeStatus(runID)?.rawValue
        if status == nil { status = try await store.run(runID)?.status.rawValue }
        let what = status ?? "unknown"
        var message = "run \(runID) is not paused (it is \(what)): there is nothing to resume"
        let recent = try await store.checkpoints(runID: runID, namespace: "", limit: 50)
        if let cp = recent.first(where: { $0.source == "resume" }), let resume = cp.metadata["resume"] {
            let ids = (resume["answers"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue }
            let when = resume["at"]?.doubleValue.map { ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0)) } ?? "?"
            if !ids.isEmpty {
                message += "; interrupt \(ids.joined(separator: ", ")) was already answered at \(when) by \(resume["by"]?.stringValue ?? "?")"
            }
        }
        return EngineError(.errorConflict, message)
    }

    static func json(_ bytes: Data, what: String) throws -> JSONValue? {
        guard !bytes.isEmpty else { return nil }
        do { return try JSONValue.parse([UInt8](bytes)) } catch {
            throw EngineError(.errorInvalidArgument, "\(what) is not JSON (\(error))")
        }
    }

    static func values(_ bytes: Data) throws -> [String: JSONValue] {
        guard let v = try json(bytes, what: "--values") else { return [:] }
        guard case .object(let o) = v else { throw EngineError(.errorInvalidArgument, "--values must be a JSON object of channel to value") }
        return o
    }

    static func who(_ by: String) -> String { by.isEmpty ? "unknown" : String(by.prefix(200)) }

    static func nodes(_ planned: [PlannedTask]) -> [String] {
        var seen = Set<String>()
        return planned.compactMap { seen.insert($0.node).inserted ? $0.node : nil }
    }
}
