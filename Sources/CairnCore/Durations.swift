/// Human durations as graph files and flags write them: `250ms`, `30s`, `5m`, `1h`, `7d`, `1.5s`.
public enum Durations {
    /// Parses a duration into milliseconds, or nil when the text is not one.
    public static func parseMillis(_ text: String) -> Int64? {
        let t = text.trimmingCharacters(in: " ")
        let units: [(String, Double)] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            // "ms" must win over "s": "5ms" ends with "s" too, so reject numbers ending in "m".
            // Past about 292 million years a duration is not one (and would not fit in an Int64).
            guard let v = Double(number), v >= 0, v.isFinite, v * factor < 9.2e18 else { continue }
            return Int64((v * factor).rounded())
        }
        return nil
    }

    /// A flag's duration in seconds: `500ms`, `30s`, `5m`, `1h`, or a bare number of seconds.
    public static func seconds(_ text: String) -> Double? {
        if let ms = parseMillis(text) { return Double(ms) / 1000 }
        guard let v = Double(text), v >= 0, v.isFinite else { return nil }
        return v
    }

    public static func format(millis: Int64) -> String {
        if millis < 1_000 { return "\(millis)ms" }
        let s = Double(millis) / 1_000
        if s < 60 { return s == s.rounded() ? "\(Int(s))s" : String(format1(s)) + "s" }
        let m = Int(s) / 60, rs = Int(s) % 60
        if m < 60 { return rs == 0 ? "\(m)m" : "\(m)m\(rs)s" }
        let h = m / 60, rm = m % 60
        return rm == 0 ? "\(h)h" : "\(h)h\(rm)m"
    }

    private static func format1(_ v: Double) -> String {
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

extension String {
    fileprivate func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
