import Crypto

/// SHA-256 helpers: blob integrity, bundle addresses and deterministic task ids.
public enum Hashing {
    public static func sha256(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        Array(SHA256.hash(data: Array(bytes)))
    }

    public static func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
        hex(sha256(bytes))
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Compares two byte strings in time that depends only on their lengths (for tokens).
    public static func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        // Hash both first so that the comparison length never depends on the secret.
        let ha = sha256(a), hb = sha256(b)
        var diff: UInt8 = 0
        for (x, y) in zip(ha, hb) { diff |= x ^ y }
        return diff == 0
    }
}
