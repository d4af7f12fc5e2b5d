import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An unprivileged account that a test's processes run as, the way a service account or a
/// container's `USER` runs Cairn: a process started through `setpriv` with that user's ids and no
/// supplementary groups, on folders it owns. Only root can switch users; a test runner that is
/// not root is unprivileged already, so `unprivileged()` gives `nil` there and the processes run
/// as the runner.
public struct ProcessUser: Sendable {
    public let name: String
    public let uid: UInt32
    public let gid: UInt32

    /// `nobody` when the runner is root, `nil` (the runner itself) otherwise.
    public static func unprivileged() throws -> ProcessUser? {
        guard getuid() == 0 else { return nil }
        return try named("nobody")
    }

    public static func named(_ name: String) throws -> ProcessUser {
        guard let entry = getpwnam(name) else { throw ClusterError("no user named \(name) on this machine") }
        return ProcessUser(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Gives `path` and everything under it to this user.
    public func own(_ path: String) throws {
        var paths = [path]
        if let walk = FileManager.default.enumerator(atPath: path) {
            while let sub = walk.nextObject() as? String { paths.append(path + "/" + sub) }
        }
        for p in paths where lchown(p, uid, gid) != 0 {
            throw ClusterError("chown \(p) to \(name): \(String(cString: strerror(errno)))")
        }
    }

    /// `environment` as this user's processes see it: its own HOME (a folder it owns) and a PATH
    /// of system folders only (the runner's may point into /root, which it cannot read).
    public func environment(_ environment: [String: String], home: String) -> [String: String] {
        var env = environment
        env["HOME"] = home
        env["USER"] = name
        env["LOGNAME"] = name
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return env
    }

    /// Sets `process` to run `path args` as `user` (`setpriv` replaces itself with the program,
    /// so the process id is the program's and signals reach it), or directly when `user` is nil.
    public static func launch(_ process: Process, as user: ProcessUser?, _ path: String, _ args: [String]) {
        guard let user else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = args
            return
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "--", path] + args
    }

    /// The real and effective user ids of a running process (from /proc), to check who it runs as.
    public static func ids(of pid: Int32) throws -> (real: UInt32, effective: UInt32) {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else {
            throw ClusterError("/proc/\(pid)/status has no Uid line")
        }
        let ids = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().compactMap { UInt32($0) }
        guard ids.count >= 2 else { throw ClusterError("unreadable Uid line in /proc/\(pid)/status: \(line)") }
        return (ids[0], ids[1])
    }
}
