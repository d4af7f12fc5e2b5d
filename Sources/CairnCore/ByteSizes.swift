import Foundation

/// Sizes written with a unit, as graph files give them: `512MB`, `1.5 GiB`, `64kB`.
public enum ByteSizes {
    /// Bytes for a size with a unit (B, kB/KB/KiB, MB/MiB, GB/GiB; decimal units count in
    /// 1,000s, binary ones in 1,024s). Nil for anything else, a bare number included: a size
    /// without a unit is too easy to misread.
    public static func parse(_ value: JSONValue) -> Int? {
        guard let text = value.stringValue else { return nil }
        let t = text.trimmingCharacters(in: .whitespaces)
        let digits = t.prefix { $0.isNumber || $0 == "." }
        guard let number = Double(digits), number >= 0 else { return nil }
        let unit = t.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        let scale: Double
        switch unit {
        case "b": scale = 1
        case "kb": scale = 1_000
        case "kib": scale = 1_024
        case "mb": scale = 1_000_000
        case "mib": scale = 1_048_576
        case "gb": scale = 1_000_000_000
        case "gib": scale = 1_073_741_824
        default: return nil
        }
        return Int(number * scale)
    }

    /// A byte count as a person reads it: `812 B`, `14.2 KiB`, `3.1 MiB`.
    public static func format(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        guard bytes >= 1024 else { return "\(bytes) B" }
        var v = Double(bytes) / 1024
        var i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return String(format: "%.1f %@", v, units[i])
    }
}
