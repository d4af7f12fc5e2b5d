import CairnCore
import Foundation
import Logging

/// Where the worker's copy of the Python node library is: `<cache>/python-<sha256 prefix>/cairn/`,
/// written once per library version (a temporary folder renamed into place, so workers sharing a
/// cache never see half a library) and put first on every exec node's PYTHONPATH.
enum PythonLibraryFolder {
    static func install(cacheDirectory: String) throws -> String {
        let fm = FileManager.default
        let folder = (cacheDirectory as NSString).appendingPathComponent("python-" + PythonLibrary.sha256.prefix(16))
        if fm.fileExists(atPath: folder + "/cairn/__init__.py") { return folder }
        try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
        let making = folder + ".making-\(getpid())-" + UUID().uuidString.prefix(6)
        defer { try? fm.removeItem(atPath: making) }  // left only when another worker won the rename
        for (path, source) in PythonLibrary.files {
            let file = (making as NSString).appendingPathComponent(path)
            try fm.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Data(source.utf8).write(to: URL(fileURLWithPath: file))
        }
        if rename(making, folder) != 0 && !fm.fileExists(atPath: folder + "/cairn/__init__.py") {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: folder])
        }
        return folder
    }

    /// The folder, or nil (logged) when the cache cannot be written: nodes then find `cairn`
    /// only where it is installed.
    static func installed(cacheDirectory: String, logger: Logger) -> String? {
        do { return try install(cacheDirectory: cacheDirectory) } catch {
            logger.warning("could not write the Python node library into the cache: exec nodes find `import cairn` only where it is installed",
                           metadata: ["cache": "\(cacheDirectory)", "error": "\(error)"])
            return nil
        }
    }

    /// `PYTHONPATH` with the library first, then what the node's environment already had.
    static func pythonPath(_ library: String, before existing: String?) -> String {
        guard let existing, !existing.isEmpty else { return library }
        return library + ":" + existing
    }
}
