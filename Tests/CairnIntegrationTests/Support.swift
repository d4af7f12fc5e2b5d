import CairnTestSupport
import Foundation

/// Writes a graph file into the cluster's folder and returns its path.
func writeGraph(_ cluster: TestCluster, _ name: String, _ text: String) throws -> String {
    let dir = cluster.directory + "/graphs/" + name
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name + ".yaml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// The repository root (for the shipped example graphs).
let repositoryRoot = TestCluster.repositoryRoot

extension Dictionary where Key == String, Value == Any {
    subscript(path path: String) -> Any? {
        var cur: Any? = self
        for part in path.split(separator: ".") {
            if let d = cur as? [String: Any] { cur = d[String(part)] } else if let a = cur as? [Any], let i = Int(part), i < a.count { cur = a[i] } else { return nil }
        }
        return cur
    }
}

/// A chain of `n` nodes that each append their name to `log` after sleeping `ms`.
func chainGraph(name: String, nodes n: Int, sleep ms: Int) -> String {
    var text = "name: \(name)\nstate:\n  log: { reducer: append }\n  count: { reducer: sum }\nnodes:\n"
    for i in 1...n { text += "  n\(i): { run: sleep, duration: \(ms)ms, writes: { log: n\(i), count: 1 } }\n" }
    text += "edges:\n  - { from: START, to: n1 }\n"
    for i in 1..<n { text += "  - { from: n\(i), to: n\(i + 1) }\n" }
    text += "  - { from: n\(n), to: END }\n"
    return text
}

/// Two built-in `echo` nodes in a chain, each appending its name to `log`: a run that needs a worker and little else.
func echoPair(name: String) -> String {
    """
    name: \(name)
    state:
      log: { reducer: append }
    nodes:
      a: { run: echo, writes: { log: [a] } }
      b: { run: echo, writes: { log: [b] } }
    edges:
      - { from: START, to: a }
      - { from: a, to: b }
      - { from: b, to: END }
    """
}

/// Minimal blocking TCP for sending hostile bytes to the coordinator.
struct RawSocket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { throw ClusterError("connect failed") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the peer closes (or the timeout); returns everything received.
    func readAll() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return out
    }

    func close() { Glibc.close(fd) }

    static func frame(type: UInt8, flags: UInt8 = 0, payload: [UInt8]) -> [UInt8] {
        let len = UInt32(payload.count + 2)
        return [UInt8(len >> 24), UInt8((len >> 16) & 0xFF), UInt8((len >> 8) & 0xFF), UInt8(len & 0xFF), type, flags] + payload
    }
}
