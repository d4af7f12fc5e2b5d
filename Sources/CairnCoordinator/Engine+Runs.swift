import CairnCore
import CairnGraph
import CairnProtocol
import CairnStore
import CoreMetrics
import Foundation
import Logging
import NIOCore

extension Engine {
    /// Carries out a submit: the graph parsed (once per source), the id checked against what is
    /// active and stored, then what `Submission` decides written, and the run started.
    func submit(_ req: Cairn_V1_SubmitRequest) async throws -> Cairn_V1_RunInfo {
        let source = String(decoding: req.graphSource, as: UTF8.self)
        let fileName = req.graphFileName.isEmpty ? "graph.yaml" : req.graphFileName
        let graph: Graph
        let sourceKey = Hashing.sha256Hex(Array(source.utf8))
        if let cached = graphCache[sourceKey] {
            graph = cached  // the same graph file again (a batch of runs): parsed and validated once
        } else {
            do {
                graph = try GraphParser.parse(file: fileName, text: source, customKinds: scheduler.customKinds)
            } catch {
                throw EngineError(.errorInvalidArgument, "\(error)")
            }
            if graphCache.count >= 256 { graphCache.removeAll() }
            graphCache[sourceKey] = graph
        }
        let input: [String: JSONValue], durability: String
        do {
            input = try Submission.input([UInt8](req.inputJson), for: graph)
            durability = try Submission.durability(req.durability, hotTier: hotTier != nil)
        } catch {
            throw EngineError(.errorInvalidArgument, "\(error)")
        }
        let generated = req.runID.isEmpty
        let runID = generated ? "r-" + Identifiers.random(12) : req.runID
        guard Submission.validRunID(runID) else {
            throw EngineError(.errorInvalidArgument, "run id '\(runID)' must be 1-128 letters, digits, '-', '_', '.' or ':'")
        }
        if let why = scheduler.refusal("submitted") { throw EngineError(.errorUnavailable, why) }
        if scheduler.runs[runID] != nil || pendingSubmits.contains(runID) || editingRuns.contains(runID) {
            throw EngineError(.errorConflict, "run \(runID) is still active; wait for it, cancel it, or submit with another --run-id")
        }
        pendingSubmits.insert(runID)
        defer { pendingSubmits.remove(runID) }
        // A generated id (62 bits of randomness) is not looked up: a store read per submit would
        // cost more than the whole run of a short graph. A chosen id is checked.
        if !generated, let old = try await store.run(runID) {
            throw EngineError(.errorConflict, "run id \(runID) is already taken (status \(old.status.rawValue)); submit with another --run-id")
        }
        let s: Submission
        do {
            s = try Submission(graph: graph, source: source, fileName: fileName, input: input, bundle: [UInt8](req.bundle),
                               bundleHash: req.bundleHash.isEmpty ? nil : req.bundleHash, runID: runID, durability: durability,
                               checkpointID: Identifiers.sortable(), now: now)
        } catch {
            throw EngineError(.errorInvalidArgument, "\(error)")
        }
        let run = ActiveRun(record: s.record, graph: graph, bundleHash: s.bundleHash, checkpoint: s.checkpoint, state: s.state, joins: [:])
        if s.record.status == .queued { run.beginStep(planned: s.first, done: [:], at: now) }
        // The run starts once its first rows are durable (the writer retries until they are).
        try await ask({ .runSubmitted(run, s.batch, reply: $0) }, unconfirmed: "run \(runID) is submitted", runID: runID)
        if s.record.status == .paused { armDeadline(s.record) }
        logger.info("run submitted", metadata: ["run_id": "\(runID)", "graph": "\(graph.name)", "first": "\(s.first.map(\.node))"])
        return runInfo(run)
    }

    /// Picks up every run that was queued or running when the coordinator last stopped:
    /// from its newest checkpoint, with the tasks whose writes are stored counted as done.
    func recover() async -> Int {
        let unfinished: [RunListing]
        do { unfinished = try await store.unfinishedRuns() } catch {
            logger.error("could not list unfinished runs", metadata: ["error": "\(error)"])
            return 0
        }
        var recovered = 0
        for listing in unfinished {
            guard case .run(let rec) = listing else {
                // Left as it is stored: `cairn list` shows it damaged, and the other runs go on.
                if case .damaged(let runID, let error) = listing {
                    logger.error("run not recovered: its stored row is damaged", metadata: ["run_id": "\(runID)", "error": "\(error)"])
                }
                continue
            }
            do {
                try await load(rec)
                recovered += 1
            } catch {
                logger.error("could not recover run; marking it failed", metadata: ["run_id": "\(rec.runID)", "error": "\(error)"])
                var failed = rec
                failed.status = .failed
                failed.error = "could not be recovered after a restart: \(error)"
                failed.updatedAt = now
                failed.finishedAt = now
                var b = StoreBatch(); b.runs.append(failed)
                do { try await ask { .record(b, reply: $0) } } catch {
                    // The store takes no more writes: the run stays as stored, and is tried again at the next start.
                    logger.error("could not mark the run failed", metadata: ["run_id": "\(rec.runID)", "error": "\(error)"])
                }
            }
        }
        return recovered
    }

    func load(_ rec: RunRecord) async throws {
        guard let g = try await store.graph(rec.graphHash) else {
            throw StoredBlob.IntegrityError(context: "run \(rec.runID) (runs.graph_hash)", reason: "names graph \(rec.graphHash), which is not stored")
        }
        let graph = try storedGraph(g)
        guard let cp = try await store.checkpoint(runID: rec.runID, namespace: "", checkpointID: nil) else {
            throw EngineError(.errorNotFound, "no checkpoint")
        }
        let state = try await store.state(at: cp)
        let joins = CheckpointBuilder.joins(of: cp)
        let planned = CheckpointBuilder.next(of: cp)
        let writes = try await store.pendingWrites(runID: rec.runID, namespace: "", checkpointID: cp.checkpointID)
        var done: [String: TaskOutcome] = [:]
        let nodes = Dictionary(planned.map { ($0.id, $0.node) }, uniquingKeysWith: { a, _ in a })
        for (taskID, records) in Dictionary(grouping: writes, by: \.taskID) {
            guard let node = nodes[taskID] else { continue }
            if let o = Scheduler.outcome(taskID: taskID, node: node, records: records) { done[taskID] = o }
        }
        var record = rec
        // A run no worker had a task of yet stays queued; any other goes on running.
        record.status = rec.status == .queued ? .queued : .running
        let run = ActiveRun(record: record, graph: graph, bundleHash: g.bundleHash, checkpoint: cp, state: state, joins: joins)
        for ch in graph.channels.keys { run.appendDepth[ch] = Int.max / 2 }
        logger.notice("run recovered", metadata: ["run_id": "\(rec.runID)", "step": "\(cp.step + 1)",
                                                  "tasks": "\(planned.count)", "already_done": "\(done.count)"])
        handle(.runRecovered(run, done: done))
    }

    func cancel(_ runID: String) async throws -> Cairn_V1_RunInfo {
        if let why = scheduler.refusal("cancelled") { throw EngineError(.errorUnavailable, why) }
        if let run = scheduler.runs[runID], !run.record.status.isFinished {
            try await ask({ .cancel(runID: runID, reply: $0) }, unconfirmed: "run \(runID) is cancelled", runID: runID)
            return runInfo(run)
        }
        guard editingRuns.insert(runID).inserted else {
            throw EngineError(.errorConflict, "run \(runID) is being changed by another request right now (a resume, update, fork or cancel); look again with cairn status \(runID)")
        }
        defer { editingRuns.remove(runID) }
        guard var rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard !rec.status.isFinished else {
            throw EngineError(.errorConflict, "run \(runID) has already \(rec.status.rawValue)")
        }
        rec.status = .cancelled
        rec.error = "cancelled by request"
        rec.updatedAt = now
        rec.finishedAt = now
        var b = StoreBatch(); b.runs.append(rec)
        try await ask({ .record(b, reply: $0) }, unconfirmed: "run \(runID) is cancelled", runID: runID)
        return try await runInfo(runID)
    }

    // MARK: - queries

    /// The graph a run runs, parsed (for pictures of it).
    func runGraph(_ runID: String) async throws -> Graph {
        if let run = scheduler.runs[runID] { return run.graph }
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard let g = try await store.graph(rec.graphHash) else {
            throw StoredBlob.IntegrityError(context: "run \(runID) (runs.graph_hash)", reason: "names graph \(rec.graphHash), which is not stored")
        }
        return try storedGraph(g)
    }

    /// The channels' values before any write (defaults), for reading state at a checkpoint.
    func initialState(runID: String) async throws -> [String: JSONValue] {
        if let run = scheduler.runs[runID] { return run.graph.initialState }
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        guard let g = try await store.graph(rec.graphHash) else {
            throw StoredBlob.IntegrityError(context: "run \(runID) (runs.graph_hash)", reason: "names graph \(rec.graphHash), which is not stored")
        }
        return try storedGraph(g).initialState
    }

    /// A stored graph, parsed once (cached by the SHA-256 of its source). Any node kind is
    /// accepted: the graph was validated when its run was submitted.
    func storedGraph(_ g: GraphRecord) throws -> Graph {
        let key = Hashing.sha256Hex(Array(g.source.utf8))
        if let cached = graphCache[key] { return cached }
        let graph = try GraphParser.parse(file: g.fileName, text: g.source, customKinds: ["*"])
        if graphCache.count >= 256 { graphCache.removeAll() }
        graphCache[key] = graph
        return graph
    }

    func runInfo(_ run: ActiveRun) -> Cairn_V1_RunInfo { Self.info(run.summary) }

    static func info(_ s: RunSummary) -> Cairn_V1_RunInfo {
        var info = Self.info(s.record)
        info.tasksTotal = UInt32(s.tasksTotal)
        info.tasksDone = UInt32(s.tasksDone)
        info.nextNodes = s.nextNodes
        info.nodeCount = UInt32(s.nodeCount)
        return info
    }

    func runInfo(_ runID: String) async throws -> Cairn_V1_RunInfo {
        if let run = scheduler.runs[runID] { return runInfo(run) }
        guard let rec = try await store.run(runID) else { throw EngineError(.errorNotFound, "no run with id \(runID)") }
        return try await runInfo(record: rec)
    }

    /// A run's summary from its stored record; only a paused or interrupted run needs its
    /// checkpoint read (for the nodes it will run next).
    func runInfo(record rec: RunRecord) async throws -> Cairn_V1_RunInfo {
        if let run = scheduler.runs[rec.runID] { return runInfo(run) }
        var info = Self.info(rec)
        if !rec.status.isFinished, let cp = try await store.checkpoint(runID: rec.runID, namespace: "", checkpointID: nil) {
            info.checkpointID = cp.checkpointID
            info.nextNodes = Array(Set((cp.nextTasks.arrayValue ?? []).compactMap { $0["node"]?.stringValue })).sorted()
        }
        return info
    }

    /// A list entry for a run whose stored row cannot be read: its id and why.
    static func damagedInfo(runID: String, _ error: any Error) -> Cairn_V1_RunInfo {
        var i = Cairn_V1_RunInfo()
        i.runID = runID
        i.status = "damaged"
        i.damage = "\(error)"
        return i
    }

    static func info(_ r: RunRecord) -> Cairn_V1_RunInfo {
        var i = Cairn_V1_RunInfo()
        i.runID = r.runID
        i.graphName = r.graphName
        i.graphVersion = UInt32(clamping: r.graphVersion)
        i.graphHash = r.graphHash
        i.status = r.status.rawValue
        i.step = UInt32(clamping: r.step)
        i.error = r.error ?? ""
        i.cost = r.cost
        i.apiCalls = UInt32(clamping: r.apiCalls)
        i.tokensIn = UInt64(clamping: r.tokensIn)
        i.tokensOut = UInt64(clamping: r.tokensOut)
        i.pinned = r.pinned
        i.createdAt = r.createdAt
        i.updatedAt = r.updatedAt
        i.finishedAt = r.finishedAt ?? 0
        i.durability = r.durability
        if let o = r.output { i.outputJson = Data(o.jsonBytes()) }
        if let x = r.interrupt { i.interruptJson = Data(x.jsonBytes()) }
        i.checkpointID = r.checkpointID ?? ""
        i.forkedFrom = r.forkedFrom ?? ""
        i.resumeCount = UInt32(clamping: r.resumeCount)
        return i
    }

    func workerList() -> Cairn_V1_WorkerList {
        var list = Cairn_V1_WorkerList()
        list.auth = config.keyring == nil ? "none" : "token"
        for w in scheduler.workers.values.sorted(by: { ($0.info.name, $0.info.id) < ($1.info.name, $1.info.id) }) {
            var s = Cairn_V1_WorkerStatus()
            s.workerID = w.info.id
            s.name = w.info.name
            s.slots = UInt32(w.info.slots)
            s.running = UInt32(scheduler.leases.count(heldBy: w.info.id))
            s.kinds = w.info.kinds.sorted()
            s.connectedAt = w.connectedAt
            s.lastHeartbeat = w.lastHeartbeat
            s.tasksDone = UInt64(w.tasksDone)
            s.state = w.draining ? "draining" : (s.running == 0 ? "idle" : "busy")
            s.address = w.info.address
            list.workers.append(s)
        }
        return list
    }

    func stats() async -> Cairn_V1_Stats {
        var s = Cairn_V1_Stats()
        do {
            for (k, v) in try await store.runCounts() { s.runsByStatus[k.rawValue] = UInt64(v) }
        } catch {
            s.storeError = "cannot count runs: \(error)"
        }
        let c = scheduler.counters
        s.tasksDispatched = c.dispatched
        s.tasksCompleted = c.completed
        s.tasksFailed = c.failed
        s.tasksRetried = c.retried
        s.queueDepth = UInt64(scheduler.queueDepth)
        s.workers = UInt32(scheduler.workers.count)
        s.staleResults = c.stale
        s.tasksReassigned = c.reassigned
        s.leasesExpired = c.leasesExpired
        s.leasesFenced = c.leasesFenced
        s.tasksPoisoned = c.poisoned
        s.stateBytesSent = c.stateBytesSent
        s.stateBytesKept = c.stateBytesKept
        s.storeBatches = writer.transactions
        s.storeRows = writer.rowsWritten
        if let failure = writer.failure {
            s.storeError = writer.stopped != nil
                ? "the store is damaged and takes no more writes (new work is refused; reads of what is intact go on): \(failure)"
                : "writes are failing and retried, new work is held: \(failure)"
        }
        s.uptimeSeconds = Date().timeIntervalSince(startedAt)
        s.auth = config.keyring == nil ? "none" : "token"
        // Only the active coordinator of standbys serves stats (a standby answers nothing but where it is).
        if let epoch = config.epoch {
            s.role = "active"
            s.leaderEpoch = epoch
        }
        s.walBytes = UInt64(max(0, walBytes()))
        if let hot = hotTier {
            let st = await hot.tierReport()
            s.redisConfigured = true
            s.redisUp = st.redisUp
            s.redisFailures = st.redisFailures
            s.hotWaitingBatches = UInt32(st.waitingBatches)
            s.hotOldestSeconds = st.oldestAge
            if let e = st.lastFlushError { s.storeError = e }
            s.hotBatches = st.hotBatches
            s.flushes = st.flushes
        }
        return s
    }

    /// Brings the gauges up to date (called when /metrics is scraped) and returns the stats.
    func refreshGauges() async -> Cairn_V1_Stats {
        let s = await stats()
        for (status, gauge) in metrics.runs { gauge.record(Double(s.runsByStatus[status] ?? 0)) }
        metrics.queueDepth.record(Double(s.queueDepth))
        metrics.workers.record(Double(s.workers))
        metrics.walBytes.record(Double(s.walBytes))
        metrics.redisUp.record(s.redisConfigured ? (s.redisUp ? 1 : 0) : 0)
        metrics.flushLag.record(s.hotOldestSeconds)
        return s
    }

    // MARK: - events

    /// Subscribes to a run's events; nil when the run is not active (the caller reports its final state).
    func subscribe(_ runID: String, finalOnly: Bool = false) -> (UUID, AsyncStream<Cairn_V1_RunEvent>)? {
        guard let run = scheduler.runs[runID] else { return nil }
        scheduler.watched.insert(runID)
        return hub.subscribe(runID, finalOnly: finalOnly, snapshot: snapshot(run))
    }

    /// Subscribes to every event of every run from now on (each run's `final` marks that run's
    /// end; the stream goes on). `snapshots` tells where each run stands.
    /// `conflated`: a run's task events and checkpoints held back to the newest per 20 ms (`EventConflation`).
    func subscribeAll(conflated: Bool = false) -> (UUID, AsyncStream<Cairn_V1_RunEvent>) {
        scheduler.watchAll = true
        return hub.subscribeAll(conflated: conflated)
    }

    /// A `snapshot` event for each run the coordinator holds, oldest first.
    func snapshots() -> [Cairn_V1_RunEvent] {
        scheduler.runs.values.sorted(by: { $0.record.createdAt < $1.record.createdAt }).map(snapshot)
    }

    private func snapshot(_ run: ActiveRun) -> Cairn_V1_RunEvent {
        var e = Cairn_V1_RunEvent()
        e.runID = run.record.runID
        e.kind = "snapshot"
        e.step = UInt32(run.checkpoint.step + 1)
        e.run = runInfo(run)
        return e
    }

    func unsubscribeAll(_ id: UUID) {
        hub.unsubscribeAll(id)
        scheduler.watchAll = hub.watchesEveryRun
    }

    func unsubscribe(_ runID: String, _ id: UUID) {
        hub.unsubscribe(runID, id)
        if !hub.watches(runID) { scheduler.watched.remove(runID) }
    }

    /// A note from the scheduler, to its watchers; a window of held-back events closes 20 ms after it opens.
    func publish(_ note: Scheduler.RunNote) {
        if hub.publish(note) {
            loop.scheduleTask(in: .milliseconds(Int64(EventConflation<Scheduler.RunNote>.window * 1000))) {
                self.assumeIsolated { $0.flushHeld() }
            }
        }
        scheduler.watchAll = hub.watchesEveryRun
    }

    func flushHeld() {
        hub.flushHeld()
        scheduler.watchAll = hub.watchesEveryRun
    }
}
