import Foundation
import Logging

/// Process set-up shared by the executables (libraries never bootstrap logging).
public enum Bootstrap {
    /// Logs to stderr at `level` (trace, debug, info, notice, warning, error, critical).
    public static func logging(level: String) {
        let level = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Says on stderr why the process cannot go on (`PROGRAM: message`) and returns its exit
    /// status, 1. For failures at run time (a store that will not open, a port in use, a wrong
    /// token): the command line was fine, so no usage text follows, as it does for a bad option.
    public static func failure(_ program: String, _ message: String) -> Int32 {
        FileHandle.standardError.write(Data("\(program): \(message)\n".utf8))
        return 1
    }
}
