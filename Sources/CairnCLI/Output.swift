import CairnClient
import CairnCore
import CairnProtocol
import Foundation

/// Terminal output: tables that line up, colors only on a terminal, times people read.
enum Output {
    static let isTTY = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        && ProcessInfo.processInfo.environment["TERM"] != "dumb"

    static func color(_ text: String, _ code: String) -> String { isTTY ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
    static func bold(_ t: String) -> String { color(t, "1") }
    static func dim(_ t: String) -> String { color(t, "2") }

    static func status(_ s: String) -> String {
        switch s {
        case "completed": return color(s, "32")
        case "failed": return color(s, "31")
        case "running", "queued": return color(s, "36")
        case "paused": return color(s, "33")
        case "cancelled": return color(s, "35")
        default: return s
        }
    }

    /// Prints rows under a header, each column as wide as its widest cell (ANSI codes not counted).
    static func table(_ header: [String], _ rows: [[String]]) {
        for line in tableLines(header, rows) { print(line) }
    }

    static func tableLines(_ header: [String], _ rows: [[String]]) -> [String] {
        var widths = header.map(visibleWidth)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], visibleWidth(c)) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c + String(repeating: " ", count: max(0, widths[i] - visibleWidth(c)))
            }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
        }
        return [bold(line(header))] + rows.map(line)
    }

    static func visibleWidth(_ s: String) -> Int {
        var n = 0, inEscape = false
        for ch in s.unicodeScalars {
            if inEscape { if ch == "m" { inEscape = false }; continue }
            if ch == "\u{1B}" { inEscape = true; continue }
            n += 1
        }
        return n
    }

    static func time(_ t: Double) -> String {
        guard t > 0 else { return "-" }
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    static func ago(_ t: Double, now: Double = Date().timeIntervalSince1970) -> String {
        guard t > 0 else { return "-" }
        let d = max(0, now - t)
        if d < 1 { return "now" }
        if d < 60 { return "\(Int(d))s ago" }
        if d < 3600 { return "\(Int(d / 60))m ago" }
        if d < 86400 { return "\(Int(d / 3600))h ago" }
        return "\(Int(d / 86400))d ago"
    }

    static func duration(_ seconds: Double) -> String {
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        return Durations.format(millis: Int64(seconds * 1000))
    }

    static func bar(_ done: Int, _ total: Int, width: Int = 24) -> String {
        guard total > 0 else { return "[" + String(repeating: "·", count: width) + "]" }
        let filled = min(width, done * width / total)
        return "[" + String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled) + "]"
    }

    static func printJSON(_ v: JSONValue) {
        print((try? v.jsonString(pretty: true)) ?? v.compactString)
    }

    static func json(_ d: Data) -> JSONValue {
        d.isEmpty ? .null : ((try? JSONValue.parse([UInt8](d))) ?? .string(String(decoding: d, as: UTF8.self)))
    }

    // MARK: JSON forms of protocol messages (one shape for the CLI and the HTTP API)

    static func json(_ r: Cairn_V1_RunInfo) -> JSONValue { MessageJSON.json(r) }
    static func json(_ e: Cairn_V1_RunEvent) -> JSONValue { MessageJSON.json(e) }
    static func json(_ h: Cairn_V1_History) -> JSONValue { MessageJSON.json(h) }
    static func json(_ w: Cairn_V1_WorkerStatus) -> JSONValue { MessageJSON.json(w) }
    static func json(_ s: Cairn_V1_Stats) -> JSONValue { MessageJSON.json(s) }
}
