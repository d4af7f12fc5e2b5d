import CairnCore
import Foundation
import SwiftProtobuf

/// The life of stored data (verify, cleanup, export, import) as the `cairn` binary prints it
/// with `--json` and the HTTP API answers it: one shape, written once.
extension MessageJSON {
    public static func json(_ reply: Cairn_V1_VerifyReply) -> JSONValue {
        func opt(_ s: String) -> JSONValue { s.isEmpty ? .null : .string(s) }
        return .object([
            "ok": .bool(reply.damage.isEmpty), "runs": .int(Int64(reply.runs)), "checkpoints": .int(Int64(reply.checkpoints)),
            "values": .int(Int64(reply.values)), "writes": .int(Int64(reply.writes)), "attempts": .int(Int64(reply.attempts)),
            "damage": .array(reply.damage.map { d in
                .object(["run_id": opt(d.runID), "checkpoint_id": opt(d.checkpointID), "channel": opt(d.channel),
                         "version": opt(d.version), "problem": .string(d.problem)])
            }),
        ])
    }

    public static func json(_ reply: Cairn_V1_CleanupReply) -> JSONValue {
        func row(_ r: Cairn_V1_CleanupRun) -> JSONValue {
            var o: [String: JSONValue] = ["run_id": .string(r.runID), "graph": .string(r.graph), "status": .string(r.status), "finished_at": .double(r.finishedAt)]
            if !r.reason.isEmpty { o["reason"] = .string(r.reason) }
            return .object(o)
        }
        return .object(["dry_run": .bool(reply.dryRun), "deleted": .array(reply.deleted.map(row)), "kept": .array(reply.kept.map(row)),
                        "checkpoints": .int(Int64(reply.checkpoints)), "values": .int(Int64(reply.values)),
                        "attempts": .int(Int64(reply.attempts)), "graphs": .int(Int64(reply.graphs)),
                        "bundles": .int(Int64(reply.bundles)), "bytes_freed": .int(Int64(reply.bytesFreed))])
    }

    public static func json(_ r: Cairn_V1_ImportReply) -> JSONValue {
        .object(["run_id": .string(r.runID), "already_present": .bool(r.alreadyPresent), "checkpoints": .int(Int64(r.checkpoints)),
                 "values": .int(Int64(r.values)), "attempts": .int(Int64(r.attempts))])
    }

    /// An export's runs as listed: id, graph, status, SHA-256 and size of each part.
    public static func json(_ parts: [ExportArchive.Part]) -> JSONValue {
        .array(parts.map { .object(["run_id": .string($0.runID), "graph": .string($0.graph), "status": .string($0.status),
                                    "sha256": .string($0.sha256), "bytes": .int(Int64($0.bytes.count))]) })
    }
}

extension ExportArchive {
    /// A run's part arrived, or was stored, other than the coordinator wrote it.
    public struct Damaged: Error, CustomStringConvertible {
        public var runID: String
        public var description: String { "run \(runID)'s export arrived damaged (SHA-256 mismatch)" }
    }

    /// The parts of an export of `runIDs`, each asked of `fetch`: a fork's parent runs come in
    /// too, before the forks that read them; each part's SHA-256 is checked as it arrives.
    public static func gather(_ runIDs: [String], fetch: (String) async throws -> Cairn_V1_ExportReply) async throws -> [Part] {
        var parts: [Part] = []
        var done = Set<String>()
        func add(_ id: String) async throws {
            guard done.insert(id).inserted else { return }
            let r = try await fetch(id)
            if !r.forkedFromRun.isEmpty { try await add(r.forkedFromRun) }
            let bytes = try Zstd.decompress([UInt8](r.partZstd), limit: maxBytes)
            guard Hashing.sha256Hex(bytes) == r.sha256 else { throw Damaged(runID: id) }
            parts.append(Part(runID: r.runID, graph: r.graphName, status: r.status, bytes: bytes, sha256: r.sha256))
        }
        for id in runIDs { try await add(id) }
        return parts
    }

    /// Loads every run of this archive through `send`: all are checked (a dry run, each counting
    /// the runs before it in the file as there) before any is written, so a refusal writes nothing.
    /// With `dryRun`, only the checks are made.
    public func importAll(dryRun: Bool = false, send: (Cairn_V1_ImportRequest) async throws -> Cairn_V1_ImportReply) async throws -> [Cairn_V1_ImportReply] {
        let packed = try parts.map { p in (p, Data(try Zstd.compress(p.bytes, level: 3))) }
        var checked: [Cairn_V1_ImportReply] = []
        for (i, (p, z)) in packed.enumerated() {
            checked.append(try await send(.with {
                $0.partZstd = z; $0.sha256 = p.sha256; $0.dryRun = true; $0.before = packed.prefix(i).map(\.0.runID)
            }))
        }
        if dryRun { return checked }
        var out: [Cairn_V1_ImportReply] = []
        for (p, z) in packed {
            out.append(try await send(.with { $0.partZstd = z; $0.sha256 = p.sha256; $0.dryRun = false }))
        }
        return out
    }
}
