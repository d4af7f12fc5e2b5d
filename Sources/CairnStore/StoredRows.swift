import CairnCore

/// A row read from an SQL store, column by column: what SQLite (GRDB) and PostgreSQL
/// (postgres-nio) rows have in common. Each accessor returns nil for NULL and throws when the
/// column holds something of another kind, so a stored value reads back as written or as an
/// error naming the row (`StoredRows` adds the row's name to every failure).
public protocol StoredRow {
    func text(_ column: String) throws -> String?
    func int(_ column: String) throws -> Int?
    func double(_ column: String) throws -> Double?
    func bytes(_ column: String) throws -> [UInt8]?
    func bool(_ column: String) throws -> Bool?
}

extension StoredRow {
    /// The column's value; NULL is damage in a column the schema keeps NOT NULL.
    public func required<T>(_ read: (String) throws -> T?, _ column: String, _ context: @autoclosure () -> String) throws -> T {
        guard let v = try read(column) else {
            throw StoredBlob.IntegrityError(context: "\(context()) (\(column))", reason: "is NULL")
        }
        return v
    }
}

/// The rows every SQL store keeps alike, mapped to records in one place: runs, graphs, bundles,
/// checkpoints, checksummed values. The SQL differs per store; what a row means does not.
public enum StoredRows {
    // MARK: packed columns

    /// Text and JSON columns that may be stored zstd-compressed, with a codec column beside them.
    public static let packThreshold = 512

    /// Codec 1 (zstd) when the value is large and compression makes it smaller, else 0 (as is).
    public static func pack(_ bytes: [UInt8]) -> (codec: Int, data: [UInt8]) {
        // Compression is only a saving: if zstd fails, the bytes are stored as is (codec 0).
        if bytes.count >= packThreshold, let z = try? Zstd.compress(bytes, level: 3), z.count < bytes.count {
            return (1, z)
        }
        return (0, bytes)
    }

    /// The column's bytes, decompressed; nil for NULL. `context` names the row and column.
    public static func unpack(_ r: some StoredRow, _ column: String, codec: String?, context: @autoclosure () -> String) throws -> [UInt8]? {
        let bytes: [UInt8]?
        do { bytes = try r.bytes(column) } catch { throw StoredBlob.IntegrityError(context: context(), reason: "holds a number where bytes belong") }
        guard let bytes else { return nil }
        let c = try codec.map { try r.int($0) ?? 0 } ?? 0
        switch c {
        case 0: return bytes
        case 1:
            do { return try Zstd.decompress(bytes, limit: StoredBlob.maxValueBytes) } catch {
                throw StoredBlob.IntegrityError(context: context(), reason: "cannot decompress (\(error))")
            }
        default: throw StoredBlob.IntegrityError(context: context(), reason: "unknown codec \(c)")
        }
    }

    // MARK: runs

    static func runContext(_ runID: String, _ column: String) -> String { "run \(runID) (runs.\(column))" }

    public static func runBytes(_ r: some StoredRow, _ column: String, codec: String?, runID: String) throws -> [UInt8]? {
        try unpack(r, column, codec: codec, context: runContext(runID, column))
    }

    /// The column's JSON, nil for NULL; checked against `<column>_sha256`.
    public static func runJSON(_ r: some StoredRow, _ column: String, codec: String? = nil, runID: String) throws -> JSONValue? {
        let sha = try r.bytes(column + "_sha256")
        guard let bytes = try runBytes(r, column, codec: codec, runID: runID) else {
            if sha != nil { throw StoredBlob.IntegrityError(context: runContext(runID, column), reason: "the value is missing (NULL) but its checksum is stored") }
            return nil
        }
        guard let sha else { throw StoredBlob.IntegrityError(context: runContext(runID, column), reason: "no SHA-256 is stored for the value") }
        guard Hashing.sha256(bytes) == sha else {
            throw StoredBlob.IntegrityError(context: runContext(runID, column), reason: "SHA-256 mismatch: stored data was altered or corrupted")
        }
        do { return try JSONValue.parse(bytes) } catch {
            throw StoredBlob.IntegrityError(context: runContext(runID, column), reason: "not valid JSON (\(error))")
        }
    }

    /// A run's row: its JSON columns are checked against the SHA-256 stored beside each, and any
    /// failure names the run and the column.
    public static func run(_ r: some StoredRow) throws -> RunRecord {
        let runID = try r.required(r.text, "run_id", "a run")
        let where_ = "run \(runID)"
        let statusName = try r.required(r.text, "status", where_)
        guard let status = RunStatus(rawValue: statusName) else {
            throw StoredBlob.IntegrityError(context: runContext(runID, "status"), reason: "'\(statusName)' is not a run status")
        }
        var rec = RunRecord(runID: runID, graphHash: try r.required(r.text, "graph_hash", where_), graphName: try r.required(r.text, "graph_name", where_),
                            graphVersion: try r.required(r.int, "graph_version", where_), status: status,
                            durability: try r.required(r.text, "durability", where_), input: try runJSON(r, "input", runID: runID),
                            createdAt: try r.required(r.double, "created_at", where_))
        rec.output = try runJSON(r, "output", codec: "output_codec", runID: runID)
        rec.error = try r.text("error")
        rec.interrupt = try runJSON(r, "interrupt", runID: runID)
        rec.cost = try r.required(r.double, "cost", where_)
        rec.apiCalls = try r.required(r.int, "api_calls", where_)
        rec.tokensIn = try r.required(r.int, "tokens_in", where_)
        rec.tokensOut = try r.required(r.int, "tokens_out", where_)
        rec.resumeCount = try r.required(r.int, "resume_count", where_)
        rec.step = try r.required(r.int, "step", where_)
        rec.checkpointID = try r.text("checkpoint_id")
        rec.forkedFrom = try r.text("forked_from")
        rec.pinned = try r.required(r.bool, "pinned", where_)
        rec.updatedAt = try r.required(r.double, "updated_at", where_)
        rec.finishedAt = try r.double("finished_at")
        return rec
    }

    /// A run for a listing: a damaged row is listed as damaged, by its id.
    public static func listing(_ r: some StoredRow) throws -> RunListing {
        do { return .run(try run(r)) } catch let e as StoredBlob.IntegrityError {
            return .damaged(runID: try r.required(r.text, "run_id", "a run"), error: e)
        }
    }

    // MARK: graphs and bundles

    /// A graph's row, its source checked against the SHA-256 stored beside it.
    public static func graph(_ r: some StoredRow) throws -> GraphRecord {
        let hash = try r.required(r.text, "hash", "a graph")
        let context = "graph \(hash) (graphs.source)"
        guard let source = try unpack(r, "source", codec: "source_codec", context: context) else {
            throw StoredBlob.IntegrityError(context: context, reason: "the source is NULL")
        }
        guard let sha = try r.bytes("source_sha256") else {
            throw StoredBlob.IntegrityError(context: context, reason: "no SHA-256 is stored for the source")
        }
        guard Hashing.sha256(source) == sha else {
            throw StoredBlob.IntegrityError(context: context, reason: "SHA-256 mismatch: stored data was altered or corrupted")
        }
        let where_ = "graph \(hash)"
        return GraphRecord(hash: hash, name: try r.required(r.text, "name", where_), version: try r.required(r.int, "version", where_),
                           fileName: try r.required(r.text, "file_name", where_), source: String(decoding: source, as: UTF8.self),
                           bundleHash: try r.text("bundle_hash"), createdAt: try r.required(r.double, "created_at", where_))
    }

    /// A bundle's bytes, checked against the SHA-256 it is addressed by.
    public static func bundle(_ hash: String, _ bytes: [UInt8]) throws -> [UInt8] {
        guard Hashing.sha256Hex(bytes) == hash else {
            throw StoredBlob.IntegrityError(context: "bundle \(hash) (bundles.data)", reason: "SHA-256 mismatch: stored data was altered or corrupted")
        }
        return bytes
    }

    // MARK: values and checkpoints

    /// A checksummed value's columns (`codec`, `sha256`, `data`), not yet checked: `decode` checks.
    public static func blob(_ r: some StoredRow) throws -> StoredBlob {
        let codecRaw = try r.required(r.int, "codec", "stored blob")
        guard let codec = StoredBlob.Codec(rawValue: UInt8(clamping: codecRaw)) else {
            throw StoredBlob.IntegrityError(context: "stored blob", reason: "unknown codec \(codecRaw)")
        }
        return StoredBlob(codec: codec, sha256: try r.required(r.bytes, "sha256", "stored blob"), data: try r.required(r.bytes, "data", "stored blob"))
    }

    /// A checkpoint's row. Channel versions stored as "" are the checkpoint's own id; `expandNext`
    /// restores what a store left out of the planned tasks (SQLite's derived task ids).
    public static func checkpoint(_ r: some StoredRow,
                                  expandNext: (JSONValue, _ checkpointID: String, _ namespace: String, _ step: Int) -> JSONValue = { v, _, _, _ in v })
        throws -> CheckpointRecord {
        let runID = try r.required(r.text, "run_id", "a checkpoint")
        let id = try r.required(r.text, "checkpoint_id", "run \(runID): a checkpoint")
        let where_ = "run \(runID) checkpoint \(id)"
        func parse(_ col: String) throws -> JSONValue {
            let d = try r.required(r.bytes, col, where_)
            do { return try JSONValue.parse(d) } catch {
                throw StoredBlob.IntegrityError(context: where_, reason: "\(col) is not valid JSON")
            }
        }
        guard case .object(let stored) = try parse("channel_versions") else {
            throw StoredBlob.IntegrityError(context: where_, reason: "channel_versions is not a JSON object")
        }
        var versions: [String: String] = [:]
        for (k, v) in stored {
            guard let version = v.stringValue else {
                throw StoredBlob.IntegrityError(context: where_, reason: "channel_versions['\(k)'] is not a version id")
            }
            versions[k] = version.isEmpty ? id : version
        }
        let ns = try r.required(r.text, "ns", where_), step = try r.required(r.int, "step", where_)
        return CheckpointRecord(runID: runID, namespace: ns, checkpointID: id, parentID: try r.text("parent_id"), step: step,
                                source: try r.required(r.text, "source", where_), channelVersions: versions,
                                nextTasks: expandNext(try parse("next_tasks"), id, ns, step),
                                metadata: try parse("metadata"), createdAt: try r.required(r.double, "created_at", where_))
    }

    /// How a checkpoint's channel versions are stored: a channel written at this very checkpoint
    /// (the common case) as "".
    public static func storedVersions(_ c: CheckpointRecord) -> [UInt8] {
        JSONValue.object(c.channelVersions.mapValues { .string($0 == c.checkpointID ? "" : $0) }).jsonBytes()
    }
}
