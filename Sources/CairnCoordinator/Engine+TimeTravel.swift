import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import Foundation
import Logging
import NIOCore

/// Resume, update, fork and rewind: the engine reads what the edit needs, `RunEdits` decides,
/// and the new checkpoint with everything it implies is written as one batch before a reply
/// (or a task) goes out. A request that finds the store refusing writes is refused at once.
extension Engine {
    func resume(_ req: Cairn_V1_ResumeRequest) async throws -> Cairn_V1_RunInfo {
        let runID = req.runID
        let answers: ResumeAnswers
        let value = try Self.json(req.valueJson, what: "--value")
        if !req.interruptID.isEmpty {
            answers = .one(id: req.interruptID, value: value)
        } else {
            answers = value.map { .value($0) } ?? .none
        }
        if editingRuns.contains(runID) {
            // Two resumes racing for one question: the loser hears which question the winner is answering.
            var ids = answering[runID] ?? []
            if ids.isEmpty {
                let rec = try await store.run(runID)
                ids = answering[runID] ?? PendingInterrupt.pending(in: rec?.interrupt, checkpointID: rec?.checkpointID ?? "").map(\.id)
            }
            throw EngineError(.errorConflict, "run \(runID): interrupt \(ids.isEmpty ? "?" : ids.joined(separator: ", ")) is being answered by another resume right now; nothing was done (cairn status \(runID) shows the outcome)")
        }
        return try await editing(runID, "resumed") {
            if self.scheduler.runs[runID] != nil { throw try await self.notPaused(runID) }
            let stored = try await self.stored(runID, checkpointID: nil)
            self.answering[runID] = PendingInterrupt.pending(in: stored.record.interrupt, checkpointID: stored.record.checkpointID ?? "").map(\.id)
            defer { self.answering[runID] = nil }
            let edit: RunEdit
            do {
                edit = try RunEdits.resume(stored, answers: answers, by: Self.who(req.by), now: self.now, newID: Identifiers.sortable())
            } catch let f as RunEdits.Failure where f.kind == .conflict {
                throw try await self.notPaused(runID)
            }
            let info = try await self.start(edit, stored)
            self.logger.info("run resumed", metadata: ["run_id": "\(runID)", "checkpoint": "\(edit.checkpoint.checkpointID)",
                                                       "by": "\(Self.who(req.by))"])
            return info
        }
    }

    func update(_ req: Cairn_V1_UpdateRequest) async throws -> Cairn_V1_RunInfo {
        let runID = req.runID
        let values = try Self.values(req.valuesJson)
        return try await editing(runID, "updated") {
            if let run = self.scheduler.runs[runID] {
                throw EngineError(.errorConflict, "run \(runID) is \(run.record.status.rawValue): only a run that is paused, completed, failed or cancelled can be updated (cancel it first, or fork it)")
            }
            let stored = try await self.stored(runID, checkpointID: nil)
            let edit = try RunEdits.update(stored, values: values, asNode: req.asNode.isEmpty ? nil : req.asNode, by: Self.who(req.by),
                                           now: self.now, newID: Identifiers.sortable())
            try await self.ask({ .record(edit.batch, reply: $0) }, unconfirmed: "run \(runID) is updated", runID: runID)
            self.armDeadline(edit.record)
            self.logger.info("run updated", metadata: ["run_id": "\(runID)", "checkpoint": "\(edit.checkpoint.checkpointID)",
                                                       "status": "\(edit.record.status.rawValue)"])
            var info = Self.info(edit.record)
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
            if req.inPlace, let run = self.scheduler.runs[parentID] {
                throw EngineError(.errorConflict, "run \(parentID) is \(run.record.status.rawValue): a rewind re-runs a run that is not active (cancel it first, or fork it instead)")
            }
            if !req.inPlace {
                if self.scheduler.runs[target] != nil || self.pendingSubmits.contains(target) {
                    throw EngineError(.errorConflict, "run id \(target) is taken by an active run; fork with another --run-id")
                }
                if !generated, let old = try await self.store.run(target) {
                    throw EngineError(.errorConflict, "run id \(target) is already taken (status \(old.status.rawValue)); fork with another --run-id")
                }
            }
            let stored = try await self.stored(parentID, checkpointID: req.checkpointID)
            let edit = try RunEdits.branch(stored, into: target, values: values, asNode: req.asNode.isEmpty ? nil : req.asNode,
                                           by: Self.who(req.by), now: self.now, newID: Identifiers.sortable())
            let info = try await self.start(edit, stored)
            self.logger.info(req.inPlace ? "run rewound" : "run forked",
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
                guard self.scheduler.runs[runID] == nil else { return }
                let stored = try await self.stored(runID, checkpointID: nil)
                guard let edit = try RunEdits.expire(stored, now: self.now, newID: Identifiers.sortable()) else {
                    self.armDeadline(stored.record)
                    return
                }
                self.logger.notice("an interrupt's deadline passed", metadata: ["run_id": "\(runID)", "status": "\(edit.record.status.rawValue)",
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
        if let why = scheduler.refusal(what) { throw EngineError(.errorUnavailable, why) }
        guard !pendingSubmits.contains(runID), editingRuns.insert(runID).inserted else {
            throw EngineError(.errorConflict, "run \(runID) is being changed by another request right now (a resume, update, fork or cancel); look again with cairn status \(runID)")
        }
        defer { editingRuns.remove(runID) }
        do {
            return try await body()
        } catch let f as RunEdits.Failure {
            throw EngineError(f.kind == .conflict ? .errorConflict : (f.kind == .notFound ? .errorNotFound : .errorInvalidArgument), f.message)
        }
    }

    /// Writes the edit's batch and starts the run from its new checkpoint (or, with nothing left
    /// to run, records it completed).
    private func start(_ edit: RunEdit, _ stored: StoredRun) async throws -> Cairn_V1_RunInfo {
        guard edit.record.status.isActive else {
            try await ask({ .record(edit.batch, reply: $0) }, unconfirmed: "run \(edit.record.runID) is changed", runID: edit.record.runID)
            return Self.info(edit.record)
        }
        let run = ActiveRun(record: edit.record, graph: stored.graph, bundleHash: stored.bundleHash, checkpoint: edit.checkpoint,
                            state: edit.state, joins: edit.joins)
        // A resume or rewind does not know how long its append channels' delta chains are: their
        // next write is a full value. A fork's first writes are deltas over its parent's values
        // (so a fork copies none), and each run keeps its own chain bounded.
        let fork = edit.checkpoint.source == "fork"
        for ch in stored.graph.channels.keys {
            run.appendDepth[ch] = fork ? 0 : Int.max / 2
            if fork { run.appendSnapshotItems[ch] = stored.state[ch]?.arrayValue?.count ?? 0 }
        }
        run.beginStep(planned: edit.planned, done: edit.done, at: now)
        try await ask({ .runContinued(run, edit.batch, reply: $0) }, unconfirmed: "run \(edit.record.runID) is \(edit.checkpoint.source == "resume" ? "resumed" : "started from checkpoint \(edit.checkpoint.parentID ?? "?")")",
                      runID: edit.record.runID)
        return runInfo(run)
    }

    /// What an edit of a stored run starts from: its newest checkpoint, or the one named.
    private func stored(_ runID: String, checkpointID: String?) async throws -> StoredRun {
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard let g = try await store.graph(rec.graphHash) else {
            throw StoredBlob.IntegrityError(context: "run \(runID) (runs.graph_hash)", reason: "names graph \(rec.graphHash), which is not stored")
        }
        let graph = try storedGraph(g)
        guard let cp = try await store.checkpoint(runID: runID, namespace: "", checkpointID: checkpointID) else {
            if let checkpointID {
                throw EngineError(.errorNotFound, "run \(runID) has no checkpoint \(checkpointID) (a checkpoint of another run cannot be used; cairn history \(runID) lists this run's)")
            }
            throw EngineError(.errorNotFound, "run \(runID) has no checkpoint")
        }
        var state = graph.initialState
        for (k, v) in try await store.state(at: cp) { state[k] = v }
        let writes = try await store.pendingWrites(runID: runID, namespace: "", checkpointID: cp.checkpointID)
        return StoredRun(record: rec, graph: graph, bundleHash: g.bundleHash, checkpoint: cp, state: state, writes: writes)
    }

    /// "Not paused", saying which questions were last answered, when and by whom (the loser of
    /// two racing resumes learns who won; a late answer learns it is late).
    private func notPaused(_ runID: String) async throws -> EngineError {
        var status = scheduler.runs[runID]?.record.status.rawValue
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
