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
}
