import CairnCore
import CairnPostgres
import CairnSQLite
import CairnStore
import Foundation
import Logging

/// Moves every run of one store into another — a SQLite file into PostgreSQL, or back — run by
/// run, each in one transaction, oldest first (so a fork's parent is there before the fork):
/// `cairn-coordinator move --from … --to …`. A run already in the destination with the same
/// content is left as it is, so a move that stopped half way is finished by running it again; a
/// run there with other content is named and not touched. Pins move with their runs. Unfinished
/// runs move as they stand (their newest checkpoint), and a coordinator on the destination goes
/// on with them, as after any restart. The coordinator on the source must be stopped.
public enum StoreMove {
    public struct Report: Sendable {
        public var runs = 0
        public var moved: [String] = []
        public var alreadyThere: [String] = []
        public var checkpoints = 0
        public var values = 0
        public var attempts = 0
        /// Runs not moved, and why (damaged in the source, other content in the destination).
        public var refused: [(runID: String, why: String)] = []
        /// What verify found wrong in the destination's copies (nothing, when the move is whole).
        public var damage: [Damage] = []
        public var seconds = 0.0

        public var ok: Bool { refused.isEmpty && damage.isEmpty }
    }

    public struct Refused: Error, CustomStringConvertible {
        public var description: String
    }

    /// A store `move` can read and write: what `--db` names, opened (SQLite) or migrated
    /// (PostgreSQL) as the coordinator would. A SQLite source must exist: a missing file is an
    /// error, not an empty store.
    public static func open(_ location: StoreLocation, mustExist: Bool, logger: Logger) async throws -> any CheckpointStore & MaintainedStore {
        switch location {
        case .sqlite(let path):
            if mustExist && !FileManager.default.fileExists(atPath: path) {
                throw Refused(description: "there is no SQLite file at \(path)")
            }
            return try SQLiteStore(path: path, logger: logger)
        case .postgres(let url):
            let store = PostgresStore(url: url, logger: logger)
            try await store.migrate()
            return store
        }
    }

    /// Every run id in `store`, oldest first (a fork after its parent); damaged rows included,
    /// by id, so the move can name them.
    public static func runIDs(_ store: any CheckpointStore) async throws -> [(id: String, pinned: Bool, createdAt: Double, damaged: String?)] {
        var out: [(id: String, pinned: Bool, createdAt: Double, damaged: String?)] = []
        var after: RunCursor?
        while true {
            let page = try await store.runs(RunFilter(limit: 1_000, after: after))
            for listing in page {
                switch listing {
                case .run(let r): out.append((r.runID, r.pinned, r.createdAt, nil))
                case .damaged(let id, let error): out.append((id, false, 0, "\(error)"))
                }
            }
            guard page.count == 1_000, let last = page.last?.record else { break }
            after = RunCursor(createdAt: last.createdAt, runID: last.runID)
        }
        return out.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    public static func move(from source: any CheckpointStore & MaintainedStore, to destination: any CheckpointStore & MaintainedStore,
                            progress: (Int, Int) -> Void = { _, _ in }) async throws -> Report {
        let started = Date()
        var report = Report()
        let runs = try await runIDs(source)
        report.runs = runs.count
        for (i, run) in runs.enumerated() {
            defer { progress(i + 1, runs.count) }
            if let why = run.damaged {
                report.refused.append((run.id, "its row in the source cannot be read: \(why)"))
                continue
            }
            let batch: StoreBatch
            do {
                guard let b = try await source.exportRun(run.id) else { continue }  // gone since it was listed
                batch = b
            } catch let e as StoredBlob.IntegrityError {
                report.refused.append((run.id, "damaged in the source: \(e)"))
                continue
            }
            if let existing = try await destination.exportRun(run.id) {
                if existing.runContentFingerprint == batch.runContentFingerprint {
                    report.alreadyThere.append(run.id)
                } else {
                    report.refused.append((run.id, "the destination has a run with this id and other content; it was left as it is"))
                }
                continue
            }
            try await destination.commit(batch)
            if run.pinned { _ = try await destination.setPinned(run.id, true) }
            report.moved.append(run.id)
            report.checkpoints += batch.checkpoints.count
            report.values += batch.channelValues.count
            report.attempts += batch.taskExecutions.count
        }
        if !report.moved.isEmpty {
            report.damage = try await destination.verify(runIDs: report.moved).damage
        }
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}
