import CairnCore
import CairnStore
import Foundation
import GRDB

/// `RecordsQuery` answered by SQLite: the shared SQL (`RecordsSQLText`) over `RecordsSchema`'s views.
enum RecordsSQL {
    static func table(_ q: RecordsQuery, _ db: Database) throws -> RecordsTable {
        let (sql, arguments) = try RecordsSQLText.statement(q)
        let statement = try db.makeStatement(sql: sql)
        // Every filter given binds its parameter, and only those appear in the SQL.
        let args: [String: (any DatabaseValueConvertible)?] = arguments.mapValues { a in
            switch a {
            case .text(let s): return s
            case .double(let d): return d
            case .int(let i): return i
            }
        }
        let rows = try Row.fetchAll(statement, arguments: StatementArguments(args))
        let columns = Array(statement.columnNames)
        return RecordsTable(columns: columns, rows: rows.map { r in (0..<columns.count).map { json(r[$0] as DatabaseValue) } })
    }

    static func json(_ v: DatabaseValue) -> JSONValue {
        switch v.storage {
        case .null: return .null
        case .int64(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .blob(let b): return .string(String(decoding: b, as: UTF8.self))
        }
    }
}
