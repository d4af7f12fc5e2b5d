// libFuzzer targets for Cairn's parsers: one binary, the target chosen by CAIRN_FUZZ_TARGET.
// Built by scripts/fuzz with `-sanitize=fuzzer,address` (CAIRN_FUZZ=1 adds this target to the
// package); never part of the normal build. Each target feeds the bytes to what reads strangers'
// or stored bytes in production, and where a value round-trips, checks that it does.
import CairnCore
import CairnGraph
import CairnProtocol
import CairnWorker
import Foundation
import NIOCore
import SwiftProtobuf

let targets = ["frame", "graph", "json", "exec-result", "blob", "bundle", "keyring", "export"]
let target = ProcessInfo.processInfo.environment["CAIRN_FUZZ_TARGET"] ?? ""
let bundleDir = NSTemporaryDirectory() + "cairn-fuzz-bundle-\(getpid())"

/// libFuzzer's driver (compiler-rt), run from our own main: SwiftPM names an executable's entry
/// point itself, so libFuzzer's `main` cannot be the one.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@main enum FuzzMain {
    static func main() {
        guard targets.contains(target) else {
            FileHandle.standardError.write(Data("cairn-fuzz: set CAIRN_FUZZ_TARGET to one of \(targets.joined(separator: ", "))\n".utf8))
            exit(2)
        }
        if let dir = ProcessInfo.processInfo.environment["CAIRN_FUZZ_WRITE_SEEDS"] { Seeds.write(target, into: dir); exit(0) }
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
    }
}

/// Defined because libFuzzer's runtime refers to it; the driver is handed the same function.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    switch target {
    case "frame": Targets.frame(bytes)
    case "graph": Targets.graph(bytes)
    case "json": Targets.json(bytes)
    case "exec-result": _ = try? ExecHandler.parseResultLine(bytes, stderr: "tail")
    case "blob": Targets.blob(bytes)
    case "bundle": Targets.bundle(bytes)
    case "keyring": _ = try? Keyring.parse(String(decoding: bytes, as: UTF8.self), name: "fuzz.tokens")
    case "export": _ = try? ExportArchive.decode(bytes)
    default: break
    }
    return 0
}

enum Targets {
    /// The coordinator's read path: the connection guard, the frame decoder fed in pieces (the
    /// first byte picks the piece size), each frame decoded to a message; a message re-encoded
    /// decodes to the same message.
    static func frame(_ bytes: [UInt8]) {
        var watch = ConnectionWatch(limits: .init(), now: 0)
        var decoder = FrameDecoder(maxFrameSize: 1 << 20)
        let codec = WireCodec()
        let piece = max(1, Int(bytes.first ?? 1))
        var buffer = ByteBuffer()
        var i = 0
        while i < bytes.count {
            let chunk = bytes[i..<min(bytes.count, i + piece)]
            i += piece
            if case .cut = watch.received(ByteBuffer(bytes: chunk), now: Double(i)) { return }
            buffer.writeBytes(chunk)
            while true {
                let frame: Frame?
                do { frame = try decoder.decode(buffer: &buffer) } catch { return }
                guard let frame else { break }
                watch.handshakeDone()
                guard let message = try? codec.decode(frame) else { continue }
                guard let again = try? codec.decode(try! codec.encode(message)) else { fatalError("a decoded message did not re-encode: \(message.type)") }
                if again != message { fatalError("a message changed in a round trip: \(message.type)") }
            }
        }
        _ = watch.check(now: 1e9)
    }

    /// The graph parser and validator, as YAML and as JSON (the first byte picks).
    static func graph(_ bytes: [UInt8]) {
        let text = String(decoding: bytes.dropFirst(), as: UTF8.self)
        let file = (bytes.first ?? 0) & 1 == 0 ? "fuzz.yaml" : "fuzz.json"
        _ = try? GraphParser.parse(file: file, text: text)
    }

    /// The JSON parser; a parsed value serializes and parses back to itself.
    static func json(_ bytes: [UInt8]) {
        guard let v = try? JSONValue.parse(bytes) else { return }
        guard let again = try? JSONValue.parse(v.jsonBytes()) else { fatalError("a parsed value did not serialize to JSON") }
        if again != v { fatalError("a JSON value changed in a round trip") }
    }

    /// The stored-blob decoder: the first byte picks the codec; the checksum is made to match
    /// what the data decompresses to, so decompression and parsing are reached, then broken.
    static func blob(_ bytes: [UInt8]) {
        guard let first = bytes.first, let codec = StoredBlob.Codec(rawValue: first % 2) else { return }
        let data = Array(bytes.dropFirst())
        let plain = codec == .jsonZstd ? ((try? Zstd.decompress(data, limit: 1 << 20)) ?? data) : data
        _ = try? StoredBlob(codec: codec, sha256: Hashing.sha256(plain), data: data).decode(context: "fuzz")
        var wrong = Hashing.sha256(plain)
        wrong[0] ^= 1
        if (try? StoredBlob(codec: codec, sha256: wrong, data: data).decode(context: "fuzz")) != nil {
            fatalError("a blob with the wrong checksum decoded")
        }
    }

    /// The bundle reader, and unpacking what it reads into a folder: nothing may land outside it.
    static func bundle(_ bytes: [UInt8]) {
        guard let archive = try? BundleArchive(packed: bytes, limit: 1 << 20) else { return }
        defer { try? FileManager.default.removeItem(atPath: bundleDir) }
        try? archive.unpack(into: bundleDir + "/in")
        let outside = (try? FileManager.default.contentsOfDirectory(atPath: bundleDir)) ?? []
        if outside.contains(where: { $0 != "in" }) { fatalError("a bundle wrote outside its folder: \(outside)") }
    }
}

/// Seed inputs, written by `scripts/fuzz --seeds` into scripts/fuzz-corpus/TARGET/.
enum Seeds {
    static func write(_ target: String, into dir: String) {
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (i, seed) in seeds(target).enumerated() {
            FileManager.default.createFile(atPath: "\(dir)/seed-\(i)", contents: Data(seed))
        }
    }

    static func frameBytes(_ m: WireMessage) -> [UInt8] {
        var out = ByteBuffer()
        try! FrameEncoder().encode(data: try! WireCodec().encode(m), out: &out)
        return Array(out.readableBytesView)
    }

    static func seeds(_ target: String) -> [[UInt8]] {
        switch target {
        case "frame":
            var hello = Cairn_V1_Hello()
            hello.protocolVersion = 1; hello.role = .worker; hello.token = "t"; hello.worker.name = "w"; hello.worker.slots = 4
            var req = Cairn_V1_ClientRequest()
            req.id = 7
            var s = Cairn_V1_SubmitRequest()
            s.graphFileName = "g.yaml"
            s.graphSource = Data("name: g\nnodes:\n  a: { run: echo }\nedges:\n  - { from: START, to: a }\n  - { from: a, to: END }\n".utf8)
            s.inputJson = Data("{\"x\":1}".utf8)
            req.body = .submit(s)
            var result = Cairn_V1_TaskResult()
            result.taskID = "t1"; result.lease = "3"
            result.writesJson = Data(String(repeating: "{\"log\":[\"abc\"]}", count: 60).utf8)
            return [[1] + frameBytes(.hello(hello)), [3] + frameBytes(.hello(hello)) + frameBytes(.clientRequest(req)),
                    [200] + frameBytes(.taskResult(result)), [5] + frameBytes(.heartbeat(Cairn_V1_Heartbeat()))]
        case "graph":
            let yaml = """
                name: video
                state:
                  log: { reducer: append }
                  count: { reducer: sum }
                nodes:
                  plan: { run: echo, writes: { log: [plan] } }
                  render: { run: exec, command: [python3, render.py], serve: true, timeout: 30s, retry: { max_attempts: 3 } }
                  check: { run: echo, writes: { count: 1 } }
                interrupt_before: [check]
                edges:
                  - { from: START, to: plan }
                  - { from: plan, to: render }
                  - { from: render, route: { on: count, cases: { "1": check }, default: END } }
                  - { from: check, to: END }
                """
            let json = #"{"name":"j","nodes":{"a":{"run":"echo","writes":{"x":1}}},"edges":[{"from":"START","to":"a"},{"from":"a","to":"END"}]}"#
            return [[0] + Array(yaml.utf8), [1] + Array(json.utf8)]
        case "json":
            return [Array(#"{"a":[1,2.5,-3e2,true,false,null,"s\u00e9\n"],"b":{"c":{}}}"#.utf8), Array("[[[[]]]]".utf8), Array("12345678901234567890".utf8)]
        case "exec-result":
            return [Array(#"{"writes":{"log":["x"]},"metrics":{"cost":0.1,"tokens_in":3}}"#.utf8),
                    Array(#"{"error":"boom","retryable":false,"error_kind":"ValueError"}"#.utf8),
                    Array(#"{"goto":["a","b"],"sends":[{"node":"a","input":{"i":1}}],"interrupt":{"q":"?"}}"#.utf8)]
        case "blob":
            let small = Array(#"{"k":"v"}"#.utf8)
            let big = Array(("[" + Array(repeating: "\"abcdefghij\"", count: 100).joined(separator: ",") + "]").utf8)
            return [[0] + small, [1] + (try! Zstd.compress(big))]
        case "bundle":
            let entries = [BundleArchive.Entry(path: "graph.yaml", mode: 0o644, data: Array("name: b\n".utf8)),
                           BundleArchive.Entry(path: "nodes/run.py", mode: 0o755, data: Array("print('{}')\n".utf8))]
            return [try! BundleArchive(entries: entries).packed]
        case "keyring":
            return [Array("# role token\nworker abcdef\nsubmitter,reader ghijkl\nsolo-token\n".utf8)]
        case "export":
            return [try! ExportArchive(createdAt: 1, parts: []).encode()]
        default: return []
        }
    }
}
