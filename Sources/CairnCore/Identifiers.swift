import Foundation

/// Identifiers used across the system.
public enum Identifiers {
    /// A time-sortable id: 12 hex digits of milliseconds since the epoch, 4 of a per-process
    /// counter and 8 random. Ids made later by one process sort after earlier ones.
    public static func sortable(now: Date = Date()) -> String {
        let ms = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        let c = SortableCounter.shared.next(ms: ms)
        let r = UInt32.random(in: 0...UInt32.max)
        return hexPad(c.ms, 12) + hexPad(UInt64(c.seq), 4) + hexPad(UInt64(r), 8)
    }

    /// A short random id for runs and workers: `r-` / `w-` prefixes are added by callers.
    public static func random(_ length: Int = 12) -> String {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<length).map { _ in alphabet.randomElement()! })
    }

    /// A deterministic task id: the SHA-256 of its coordinates, 32 hex digits.
    public static func taskID(checkpointID: String, namespace: String, step: Int, node: String, trigger: String) -> String {
        let text = [checkpointID, namespace, String(step), node, trigger].joined(separator: "\u{1F}")
        return String(Hashing.sha256Hex(Array(text.utf8)).prefix(20))
    }

    static func hexPad(_ v: UInt64, _ width: Int) -> String {
        let s = String(v, radix: 16)
        return s.count >= width ? String(s.suffix(width)) : String(repeating: "0", count: width - s.count) + s
    }
}

private final class SortableCounter: @unchecked Sendable {
    static let shared = SortableCounter()
    private let lock = NSLock()
    private var lastMS: UInt64 = 0
    private var seq: UInt16 = 0

    func next(ms: UInt64) -> (ms: UInt64, seq: UInt16) {
        lock.lock(); defer { lock.unlock() }
        if ms > lastMS {
            lastMS = ms; seq = 0
        } else if seq == UInt16.max {
            lastMS += 1; seq = 0
        } else {
            seq += 1
        }
        return (lastMS, seq)
    }
}
