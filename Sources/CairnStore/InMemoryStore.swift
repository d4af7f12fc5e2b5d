import CairnCore

/// A `CheckpointStore` in memory, for unit tests of one module. It keeps blobs encoded exactly
/// as SQLite does, so integrity checks behave the same.
public actor InMemoryStore: CheckpointStore {
    private var graphs: [String: GraphRecord] = [:]
    private var bundles: [String: [UInt8]] = [:]
    private var runsByID: [String: RunRecord] = [:]
    private var checkpointsByRun: [String: [String: CheckpointRecord]] = [:]
    private var values: [String: StoredBlob] = [:]
    private var valueBases: [String: String] = [:]
    private var writes: [String: [String: (PendingWriteRecord, StoredBlob)]] = [:]
    private var executions: [TaskExecutionRecord] = []
    private var workerRecords: [String: WorkerRecord] = [:]

    public init() {}

    private func key(_ parts: String...) -> String { parts.joined(separator: "\u{1F}") }

    public func commit(_ b: StoreBatch) async throws {
        for g in b.graphs where graphs[g.hash] == nil { graphs[g.hash] = g }
        for x in b.bundles where bundles[x.hash] == nil { bundles[x.hash] = x.data }
        for r in b.runs {
            if let old = runsByID[r.runID] {
                var merged = r
                merged.createdAt = old.createdAt
                runsByID[r.runID] = merged
            } else {
                runsByID[r.runID] = r
            }
        }
        for c in b.checkpoints {
            let k = key(c.runID, c.namespace)
            if checkpointsByRun[k]?[c.checkpointID] == nil { checkpointsByRun[k, default: [:]][c.checkpointID] = c }
        }
        for v in b.channelValues {
            let k = key(v.runID, v.namespace, v.channel, v.version)
            if values[k] == nil {
                values[k] = StoredBlob(v.value)
                if let base = v.baseVersion { valueBases[k] = base }
            }
        }
        for w in b.pendingWrites {
            let k = key(w.runID, w.namespace, w.checkpointID)
            let wk = key(w.taskID, String(w.idx))
            if writes[k]?[wk] == nil { writes[k, default: [:]][wk] = (w, StoredBlob(w.value)) }
        }
        for k in b.prunedWrites { writes[key(k.runID, k.namespace, k.checkpointID)] = nil }
        for x in b.taskExecutions where !executions.contains(where: {
            $0.runID == x.runID && $0.step == x.step && $0.taskID == x.taskID && $0.attempt == x.attempt && $0.status == x.status
        }) {
            executions.append(x)
        }
        for w in b.workers {
            if var old = workerRecords[w.workerID] {
                old.lastSeen = w.lastSeen; old.disconnectedAt = w.disconnectedAt; old.tasksDone = w.tasksDone; old.slots = w.slots
                workerRecords[w.workerID] = old
            } else {
                workerRecords[w.workerID] = w
            }
        }
    }

    public func run(_ runID: String) async throws -> RunRecord? { runsByID[runID] }

    public func runs(_ filter: RunFilter) async throws -> [RunListing] {
        runsByID.values
            .filter { r in
                (filter.status == nil || r.status == filter.status) && (filter.graphName == nil || r.graphName == filter.graphName)
                    && (filter.createdAfter == nil || r.createdAt >= filter.createdAfter!)
                    && (filter.after.map { c in (r.createdAt, r.runID) < (c.createdAt, c.runID) } ?? true)
            }
            .sorted { ($0.createdAt, $0.runID) > ($1.createdAt, $1.runID) }
            .prefix(max(1, filter.limit)).map { .run($0) }
    }

    public func unfinishedRuns() async throws -> [RunListing] {
        runsByID.values.filter { $0.status.isActive }.sorted { $0.createdAt < $1.createdAt }.map { .run($0) }
    }

    public func runCounts() async throws -> [RunStatus: Int] {
        var out: [RunStatus: Int] = [:]
        for r in runsByID.values { out[r.status, default: 0] += 1 }
        return out
    }

    public func graph(_ hash: String) async throws -> GraphRecord? { graphs[hash] }
    public func bundle(_ hash: String) async throws -> [UInt8]? { bundles[hash] }

    public func checkpoint(runID: String, namespace: String, checkpointID: String?) async throws -> CheckpointRecord? {
        let all = checkpointsByRun[key(runID, namespace)] ?? [:]
        if let checkpointID { return all[checkpointID] }
        return all.keys.max().flatMap { all[$0] }
    }

    public func checkpoints(runID: String, namespace: String, limit: Int) async throws -> [CheckpointRecord] {
        let all = checkpointsByRun[key(runID, namespace)] ?? [:]
        return all.keys.sorted(by: >).prefix(limit).compactMap { all[$0] }
    }

    public func channelValue(runID: String, namespace: String, channel: String, version: String) async throws -> JSONValue {
        try DeltaChain.rebuild(runID: runID, channel: channel, version: version) { v in
            let ref = ChannelVersion(v, run: runID)  // a fork's delta may rest on its parent's value
            let k = key(ref.runID, namespace, channel, ref.version)
            guard let blob = values[k] else { return nil }
            let value = try blob.decode(context: "run \(ref.runID) channel '\(channel)' version \(ref.version)")
            return ChannelValueRecord(runID: runID, namespace: namespace, channel: channel, version: v,
                                      baseVersion: valueBases[k].map { ChannelVersion($0, run: ref.runID).stored(in: runID) }, value: value)
        }
    }

    public func pendingWrites(runID: String, namespace: String, checkpointID: String) async throws -> [PendingWriteRecord] {
        let all = writes[key(runID, namespace, checkpointID)] ?? [:]
        return try all.values.sorted { ($0.0.taskID, $0.0.idx) < ($1.0.taskID, $1.0.idx) }.map { rec, blob in
            var r = rec
            r.value = try blob.decode(context: "run \(runID) checkpoint \(checkpointID) task \(rec.taskID) write")
            return r
        }
    }

    public func taskExecutions(runID: String) async throws -> [TaskExecutionRecord] {
        executions.filter { $0.runID == runID }
    }

    public func workers() async throws -> [WorkerRecord] {
        workerRecords.values.sorted { $0.connectedAt < $1.connectedAt }
    }

    /// Test hook: corrupts a stored channel value's bytes.
    public func corruptChannelValue(runID: String, namespace: String = "", channel: String, version: String) {
        let k = key(runID, namespace, channel, version)
        if var blob = values[k], !blob.data.isEmpty {
            blob.data[blob.data.count / 2] ^= 0xFF
            values[k] = blob
        }
    }
}

/// The life of data in memory, as the durable stores do it (so an engine on this store can
/// verify, export, delete and pin).
extension InMemoryStore: MaintainedStore {
    private func owned(by runID: String, _ k: String) -> Bool { k.hasPrefix(runID + "\u{1F}") }
    private func parts(_ k: String) -> [String] { k.split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init) }

    public func verify(runIDs: [String]?) async throws -> VerifyReport {
        var report = VerifyReport()
        for id in runIDs ?? runsByID.keys.sorted() where runsByID[id] != nil {
            report.runs += 1
            report.checkpoints += checkpointsByRun.filter { owned(by: id, $0.key) }.values.reduce(0) { $0 + $1.count }
            for (k, blob) in values where owned(by: id, k) {
                report.values += 1
                let p = parts(k)
                do { _ = try blob.decode(context: "run \(id)") } catch {
                    report.damage.append(Damage(runID: id, channel: p[2], version: p[3], problem: "\(error)"))
                }
            }
            for (k, ws) in writes where owned(by: id, k) {
                for (w, blob) in ws.values {
                    report.writes += 1
                    do { _ = try blob.decode(context: "run \(id)") } catch {
                        report.damage.append(Damage(runID: id, checkpointID: w.checkpointID, problem: "pending write of task \(w.taskID): \(error)"))
                    }
                }
            }
            report.attempts += executions.filter { $0.runID == id }.count
        }
        return report
    }

    public func exportRun(_ runID: String) async throws -> StoreBatch? {
        guard let run = runsByID[runID] else { return nil }
        var b = StoreBatch()
        b.runs = [run]
        if let g = graphs[run.graphHash] {
            b.graphs = [g]
            if let h = g.bundleHash, let data = bundles[h] { b.bundles = [BundleRecord(hash: h, data: data)] }
        }
        b.checkpoints = checkpointsByRun.filter { owned(by: runID, $0.key) }.values.flatMap(\.values).sorted { $0.createdAt < $1.createdAt }
        for (k, blob) in values.sorted(by: { $0.key < $1.key }) where owned(by: runID, k) {
            let p = parts(k)
            b.channelValues.append(ChannelValueRecord(runID: runID, namespace: p[1], channel: p[2], version: p[3], baseVersion: valueBases[k],
                                                      value: try blob.decode(context: "run \(runID) channel '\(p[2])' version \(p[3])")))
        }
        for (k, ws) in writes where owned(by: runID, k) {
            for (w, blob) in ws.values.sorted(by: { ($0.0.taskID, $0.0.idx) < ($1.0.taskID, $1.0.idx) }) {
                var r = w
                r.value = try blob.decode(context: "run \(runID) checkpoint \(w.checkpointID) task \(w.taskID) write")
                b.pendingWrites.append(r)
            }
        }
        b.taskExecutions = executions.filter { $0.runID == runID }
        return b
    }

    public func deleteRuns(_ runIDs: [String]) async throws -> DeletionReport {
        var report = DeletionReport()
        for id in runIDs where runsByID.removeValue(forKey: id) != nil {
            report.runs.append(id)
            for k in checkpointsByRun.keys where owned(by: id, k) { report.checkpoints += checkpointsByRun.removeValue(forKey: k)?.count ?? 0 }
            for k in values.keys where owned(by: id, k) { values[k] = nil; valueBases[k] = nil; report.values += 1 }
            for k in writes.keys where owned(by: id, k) { writes[k] = nil }
            report.attempts += executions.filter { $0.runID == id }.count
            executions.removeAll { $0.runID == id }
        }
        let usedGraphs = Set(runsByID.values.map(\.graphHash))
        for (hash, _) in graphs where !usedGraphs.contains(hash) { graphs[hash] = nil; report.graphs += 1 }
        let usedBundles = Set(graphs.values.compactMap(\.bundleHash))
        for hash in bundles.keys where !usedBundles.contains(hash) { bundles[hash] = nil; report.bundles += 1 }
        return report
    }

    public func setPinned(_ runID: String, _ pinned: Bool) async throws -> Bool {
        guard runsByID[runID] != nil else { return false }
        runsByID[runID]!.pinned = pinned
        return true
    }
}
