import CZstd

/// A thin, safe layer over libzstd's one-shot API.
public enum Zstd {
    public enum Error: Swift.Error, CustomStringConvertible {
        case compression(String)
        case decompression(String)
        case tooLarge(limit: Int)

        public var description: String {
            switch self {
            case .compression(let m): return "zstd compression failed: \(m)"
            case .decompression(let m): return "zstd decompression failed: \(m)"
            case .tooLarge(let limit): return "decompressed data would exceed \(limit) bytes"
            }
        }
    }

    public static func compress(_ input: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, input.count, level)
            }
        }
        if ZSTD_isError(written) != 0 {
            throw Error.compression(String(cString: ZSTD_getErrorName(written)))
        }
        out.removeLast(bound - written)
        return out
    }

    /// Decompresses a zstd frame, refusing output larger than `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        let size = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, input.count) }
        // ZSTD_CONTENTSIZE_UNKNOWN = -1, ZSTD_CONTENTSIZE_ERROR = -2 (as unsigned long long)
        if size == UInt64.max - 1 { throw Error.decompression("not a zstd frame") }
        if size == UInt64.max {
            return try streamingDecompress(input, limit: limit)
        }
        guard size <= UInt64(limit) else { throw Error.tooLarge(limit: limit) }
        var out = [UInt8](repeating: 0, count: Int(size))
        let n = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                ZSTD_decompress(dst.baseAddress, Int(size), src.baseAddress, input.count)
            }
        }
        if ZSTD_isError(n) != 0 { throw Error.decompression(String(cString: ZSTD_getErrorName(n))) }
        return out
    }

    private static func streamingDecompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        guard let stream = ZSTD_createDStream() else { throw Error.decompression("out of memory") }
        defer { ZSTD_freeDStream(stream) }
        ZSTD_initDStream(stream)
        var result: [UInt8] = []
        let chunk = ZSTD_DStreamOutSize()
        var buffer = [UInt8](repeating: 0, count: chunk)
        try input.withUnsafeBytes { src in
            var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: input.count, pos: 0)
            while true {
                let (ret, produced) = buffer.withUnsafeMutableBytes { dst -> (Int, Int) in
                    var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: chunk, pos: 0)
                    let r = ZSTD_decompressStream(stream, &outBuf, &inBuf)
                    return (r, outBuf.pos)
                }
                if ZSTD_isError(ret) != 0 { throw Error.decompression(String(cString: ZSTD_getErrorName(ret))) }
                result.append(contentsOf: buffer[0..<produced])
                if result.count > limit { throw Error.tooLarge(limit: limit) }
                if ret == 0 { break }
                if inBuf.pos == inBuf.size && produced < chunk { throw Error.decompression("truncated frame") }
            }
        }
        return result
    }
}
