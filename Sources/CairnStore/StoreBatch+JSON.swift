import CairnCore

/// A batch as one JSON document: how the hot tier keeps a batch in Redis until it reaches SQLite.
extension StoreBatch {
    public var json: JSONValue {
        func opt(_ v: String?) -> JSONValue { v.map { .string($0) } ?? .null }
        func optD(_ v: Double?) -> JSONValue { v.map { .double($0) } ?? .null }
        var o: [String: JSONValue] = [:]
        if !graphs.isEmpty {
            o["graphs"] = .array(graphs.map { g in
                .object(["hash": .string(g.hash), "name": .string(g.name), "version": .int(Int64(g.version)), "file": .string(g.fileName),
                         "source": .string(g.source), "bundle": opt(g.bundleHash), "at": .double(g.createdAt)])
            })
        }
        if !bundles.isEmpty {
            o["bundles"] = .array(bundles.map { .object(["hash": .string($0.hash), "data": .string(Hashing.hex($0.data))]) })
        }
        if !runs.isEmpty {
            o["runs"] = .array(runs.map { r in
                .object(["id": .string(r.runID), "graph_hash": .string(r.graphHash), "graph": .string(r.graphName),
                         "graph_version": .int(Int64(r.graphVersion)), "status": .string(r.status.rawValue), "durability": .string(r.durability),
                         "input": r.input ?? .null, "has_input": .bool(r.input != nil), "output": r.output ?? .null,
                         "has_output": .bool(r.output != nil), "error": opt(r.error), "interrupt": r.interrupt ?? .null,
                         "has_interrupt": .bool(r.interrupt != nil), "cost": .double(r.cost), "api_calls": .int(Int64(r.apiCalls)),
                         "tokens_in": .int(Int64(r.tokensIn)), "tokens_out": .int(Int64(r.tokensOut)),
                         "resumes": .int(Int64(r.resumeCount)), "step": .int(Int64(r.step)), "checkpoint": opt(r.checkpointID), "forked_from": opt(r.forkedFrom),
                         "created": .double(r.createdAt), "updated": .double(r.updatedAt), "finished": optD(r.finishedAt)])
            })
        }
        if !checkpoints.isEmpty {
            o["checkpoints"] = .array(checkpoints.map { c in
                .object(["run": .string(c.runID), "ns": .string(c.namespace), "id": .string(c.checkpointID), "parent": opt(c.parentID),
                         "step": .int(Int64(c.step)), "source": .string(c.source),
                         "versions": .object(c.channelVersions.mapValues { .string($0) }), "next": c.nextTasks,
                         "meta": c.metadata, "at": .double(c.createdAt)])
            })
        }
        if !channelValues.isEmpty {
            o["values"] = .array(channelValues.map { v in
                .object(["run": .string(v.runID), "ns": .string(v.namespace), "channel": .string(v.channel), "version": .string(v.version),
                         "base": opt(v.baseVersion), "value": v.value])
            })
        }
        if !pendingWrites.isEmpty {
            o["writes"] = .array(pendingWrites.map { w in
                .object(["run": .string(w.runID), "ns": .string(w.namespace), "cp": .string(w.checkpointID), "task": .string(w.taskID),
                         "idx": .int(Int64(w.idx)), "channel": .string(w.channel), "value": w.value])
            })
        }
        if !taskExecutions.isEmpty {
            o["executions"] = .array(taskExecutions.map { t in
                var e: [String: JSONValue] = ["run": .string(t.runID), "task": .string(t.taskID), "node": .string(t.node), "step": .int(Int64(t.step)),
                         "attempt": .int(Int64(t.attempt)), "worker": .string(t.worker), "status": .string(t.status),
                         "started": .double(t.startedAt), "finished": .double(t.finishedAt), "error": opt(t.error),
                         "cost": .double(t.cost), "api_calls": .int(Int64(t.apiCalls))]
                if let q = t.queuedAt { e["queued"] = .double(q) }
                if let k = t.errorKind { e["error_kind"] = .string(k) }
                if t.records.hasDetail { e["records"] = t.records.json() }
                return .object(e)
            })
        }
        if !workers.isEmpty {
            o["workers"] = .array(workers.map { w in
                .object(["id": .string(w.workerID), "name": .string(w.name), "slots": .int(Int64(w.slots)),
                         "kinds": .array(w.kinds.map { .string($0) }), "address": .string(w.address), "connected": .double(w.connectedAt),
                         "seen": .double(w.lastSeen), "gone": optD(w.disconnectedAt), "done": .int(Int64(w.tasksDone))])
            })
        }
        if !prunedWrites.isEmpty {
            o["pruned"] = .array(prunedWrites.map { .array([.string($0.runID), .string($0.namespace), .string($0.checkpointID)]) })
        }
        return .object(o)
    }

    public struct DecodeError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(json: JSONValue) throws {
        self.init()
        func s(_ v: JSONValue?, _ what: String) throws -> String {
            guard let x = v?.stringValue else { throw DecodeError(description: "stored batch: \(what) missing") }
            return x
        }
        func i(_ v: JSONValue?) -> Int { Int(v?.intValue ?? 0) }
        func d(_ v: JSONValue?) -> Double { v?.doubleValue ?? 0 }
        func os(_ v: JSONValue?) -> String? { v?.stringValue }
        func od(_ v: JSONValue?) -> Double? { v?.doubleValue }
        for g in json["graphs"]?.arrayValue ?? [] {
            graphs.append(GraphRecord(hash: try s(g["hash"], "graph hash"), name: try s(g["name"], "graph name"), version: i(g["version"]),
                                      fileName: try s(g["file"], "file"), source: try s(g["source"], "source"), bundleHash: os(g["bundle"]),
                                      createdAt: d(g["at"])))
        }
        for b in json["bundles"]?.arrayValue ?? [] {
            let hex = Array(try s(b["data"], "bundle").utf8)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(hex.count / 2)
            var k = 0
            func nib(_ c: UInt8) -> UInt8 { c >= 97 ? c - 87 : c - 48 }
            while k + 1 < hex.count { bytes.append(nib(hex[k]) << 4 | nib(hex[k + 1])); k += 2 }
            bundles.append(BundleRecord(hash: try s(b["hash"], "bundle hash"), data: bytes))
        }
        for r in json["runs"]?.arrayValue ?? [] {
            guard let status = RunStatus(rawValue: try s(r["status"], "status")) else { throw DecodeError(description: "stored batch: bad status") }
            var rec = RunRecord(runID: try s(r["id"], "run id"), graphHash: try s(r["graph_hash"], "graph hash"), graphName: try s(r["graph"], "graph"),
                                graphVersion: i(r["graph_version"]), status: status, durability: try s(r["durability"], "durability"),
                                input: r["has_input"]?.boolValue == true ? r["input"] : nil, createdAt: d(r["created"]))
            rec.output = r["has_output"]?.boolValue == true ? r["output"] : nil
            rec.error = os(r["error"])
            rec.interrupt = r["has_interrupt"]?.boolValue == true ? r["interrupt"] : nil
            rec.cost = d(r["cost"])
            rec.apiCalls = i(r["api_calls"])
            rec.tokensIn = i(r["tokens_in"])
            rec.tokensOut = i(r["tokens_out"])
            rec.resumeCount = i(r["resumes"])
            rec.step = i(r["step"])
            rec.checkpointID = os(r["checkpoint"])
            rec.forkedFrom = os(r["forked_from"])
            rec.updatedAt = d(r["updated"])
            rec.finishedAt = od(r["finished"])
            runs.append(rec)
        }
        for c in json["checkpoints"]?.arrayValue ?? [] {
            var versions: [String: String] = [:]
            for (k, v) in c["versions"]?.objectValue ?? [:] { versions[k] = v.stringValue }
            checkpoints.append(CheckpointRecord(runID: try s(c["run"], "run"), namespace: c["ns"]?.stringValue ?? "", checkpointID: try s(c["id"], "id"),
                                                parentID: os(c["parent"]), step: i(c["step"]), source: try s(c["source"], "source"),
                                                channelVersions: versions, nextTasks: c["next"] ?? .array([]), metadata: c["meta"] ?? .object([:]),
                                                createdAt: d(c["at"])))
        }
        for v in json["values"]?.arrayValue ?? [] {
            channelValues.append(ChannelValueRecord(runID: try s(v["run"], "run"), namespace: v["ns"]?.stringValue ?? "",
                                                    channel: try s(v["channel"], "channel"), version: try s(v["version"], "version"),
                                                    baseVersion: os(v["base"]), value: v["value"] ?? .null))
        }
        for w in json["writes"]?.arrayValue ?? [] {
            pendingWrites.append(PendingWriteRecord(runID: try s(w["run"], "run"), namespace: w["ns"]?.stringValue ?? "",
                                                    checkpointID: try s(w["cp"], "checkpoint"), taskID: try s(w["task"], "task"),
                                                    idx: i(w["idx"]), channel: try s(w["channel"], "channel"), value: w["value"] ?? .null))
        }
        for t in json["executions"]?.arrayValue ?? [] {
            taskExecutions.append(TaskExecutionRecord(runID: try s(t["run"], "run"), taskID: try s(t["task"], "task"), node: try s(t["node"], "node"),
                                                      step: i(t["step"]), attempt: i(t["attempt"]), worker: try s(t["worker"], "worker"),
                                                      status: try s(t["status"], "status"), startedAt: d(t["started"]),
                                                      finishedAt: d(t["finished"]), error: os(t["error"]), cost: d(t["cost"]),
                                                      apiCalls: i(t["api_calls"]), queuedAt: od(t["queued"]), errorKind: os(t["error_kind"]),
                                                      records: try t["records"].map { rec in
                                                          var x = try TaskRecords.parse(json: rec)
                                                          x.cost = d(t["cost"]); x.apiCalls = i(t["api_calls"])
                                                          return x
                                                      }))
        }
        for p in json["pruned"]?.arrayValue ?? [] {
            let parts = (p.arrayValue ?? []).compactMap(\.stringValue)
            guard parts.count == 3 else { throw DecodeError(description: "stored batch: bad pruned key") }
            prunedWrites.append(CheckpointKey(runID: parts[0], namespace: parts[1], checkpointID: parts[2]))
        }
        for w in json["workers"]?.arrayValue ?? [] {
            workers.append(WorkerRecord(workerID: try s(w["id"], "worker id"), name: try s(w["name"], "name"), slots: i(w["slots"]),
                                        kinds: (w["kinds"]?.arrayValue ?? []).compactMap(\.stringValue), address: w["address"]?.stringValue ?? "",
                                        connectedAt: d(w["connected"]), lastSeen: d(w["seen"]), disconnectedAt: od(w["gone"]), tasksDone: i(w["done"])))
        }
    }

    /// True when the batch ends a run (completed, failed or cancelled): such a batch goes to SQLite at once.
    public var finishesRun: Bool { runs.contains { $0.status.isFinished } }
}

/// How durable a write must be before the scheduler moves on.
public enum Durability: String, Sendable, CaseIterable {
    /// In the hot tier (Redis) before the next step; flushed to SQLite soon after.
    case hot
    /// In SQLite before the next step.
    case sync
}

extension StoreBatch {
    /// One exported run's own content, as comparable bytes (a SHA-256): everything but the graph
    /// and bundle rows (shared, content-addressed, and stamped with when a store first saw them).
    /// Two stores hold the same run when their exports of it have the same fingerprint.
    public var runContentFingerprint: String {
        var own = self
        own.graphs = []; own.bundles = []; own.workers = []
        return Hashing.sha256Hex(own.json.jsonBytes())
    }
}
