import CairnStore
import GRDB

/// Which SQLite failures a retry can heal: the one place the coordinator's writer learns whether
/// to hold a batch and try again, or stop writing and say the file needs a person.
enum SQLiteFaults {
    /// The kind of a failed write, by SQLite's extended result code (the primary code is its low byte).
    static func kind(extendedCode: Int32) -> StoreFault.Kind {
        switch extendedCode {
        case 266, 522:  // SQLITE_IOERR_READ, SQLITE_IOERR_SHORT_READ: the file cannot be read back
            return .permanent
        default: break
        }
        switch extendedCode & 0xFF {
        case 11,  // SQLITE_CORRUPT: "database disk image is malformed"
             26,  // SQLITE_NOTADB: "file is not a database"
             24:  // SQLITE_FORMAT
            return .permanent
        case 13,  // SQLITE_FULL: a full disk frees up
             5,   // SQLITE_BUSY
             6,   // SQLITE_LOCKED
             7,   // SQLITE_NOMEM
             8,   // SQLITE_READONLY: an operator can make the file writable again
             10,  // SQLITE_IOERR (writes, fsync, …): a disk that hiccups, or fills
             14,  // SQLITE_CANTOPEN: a journal that cannot be created (too many open files, a missing directory)
             3,   // SQLITE_PERM
             17:  // SQLITE_SCHEMA
            return .transient
        default:
            return .transient  // unknown: keep the batch and retry, as before (nothing is dropped)
        }
    }

    /// A GRDB error as a `StoreFault` naming the file; other errors pass through.
    static func fault(_ error: any Error, path: String) -> any Error {
        guard let e = error as? DatabaseError else { return error }
        let code = e.extendedResultCode.rawValue
        return StoreFault(kind(extendedCode: code), "\(e.message ?? "\(e.resultCode)") (SQLite code \(code)) writing \(path)")
    }
}
