// Cairn micro-benchmarks: CAIRN_MICROBENCH=1 swift run -c release cairn-microbench [--redis URL]
import CairnCore
import CairnGraph
import CairnProtocol
import CairnHotTier
import CairnRedis
import CairnSQLite
import CairnStore
import Foundation
import Logging
import NIOCore
import SwiftProtobuf

/// Times synchronous work (no executor hops in the measurement).
func bench(_ name: String, iterations: Int, ops: Int = 1, sync body: () throws -> Void) rethrows {
    for _ in 0..<max(1, iterations / 10) { try body() }
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<iterations { try body() }
    report(name, Double(DispatchTime.now().uptimeNanoseconds - start), iterations * ops)
}

func report(_ name: String, _ ns: Double, _ ops: Int) {
    let perOp = ns / Double(ops)
    let name = name.padding(toLength: 46, withPad: " ", startingAt: 0)
    print("  \(name) \(String(format: "%10.0f", perOp)) ns/op   \(String(format: "%12.0f", 1e9 / perOp)) ops/s")
}

/// Times `body` over `iterations` after a warm-up and prints ns per operation.
func bench(_ name: String, iterations: Int, ops: Int = 1, _ body: () async throws -> Void) async rethrows {
    for _ in 0..<max(1, iterations / 10) { try await body() }
    let clock = ContinuousClock()
    let elapsed = try await clock.measure { for _ in 0..<iterations { try await body() } }
    report(name, Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9, iterations * ops)
}

let logger = Logger(label: "microbench")
var redisURL: String?
if let i = CommandLine.arguments.firstIndex(of: "--redis"), i + 1 < CommandLine.arguments.count { redisURL = CommandLine.arguments[i + 1] }

print("cairn micro-benchmarks (ns per operation; lower is better)")

// Frame encode + decode of a typical task result.
var result = Cairn_V1_TaskResult()
result.taskID = String(repeating: "a", count: 32)
result.lease = "1795414393418.123"
result.writesJson = Data(#"{"log":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.utf8)
let codec = WireCodec()
bench("frame: encode + decode a TaskResult", iterations: 200_000) {
    let frame = try! codec.encode(.taskResult(result))
    var buffer = ByteBuffer()
    try! FrameEncoder().encode(data: frame, out: &buffer)
    var decoder = FrameDecoder()
    let back = try! decoder.decode(buffer: &buffer)!
    _ = try! codec.decode(back)
}

// Reducers: one step applying 100 writes to append, sum and merge channels.
let graph = try GraphParser.parse(file: "b.yaml", text: """
    name: b
    state:
      log: { reducer: append }
      n: { reducer: sum }
      m: { reducer: merge }
    nodes:
      a: { run: echo }
    edges:
      - { from: START, to: a }
      - { from: a, to: END }
    """)
let planner = Planner(graph: graph)
let writes: [(channel: String, value: JSONValue)] = (0..<100).flatMap { i in
    [("log", JSONValue.string("item \(i)")), ("n", .int(1)), ("m", .object(["k\(i % 10)": .int(Int64(i))]))]
}
bench("reducers: apply 300 writes (one step)", iterations: 2_000, ops: 300) {
    var state: [String: JSONValue] = [:]
    _ = try! planner.apply(writes, to: &state)
}

// A long run's list channel: 100,000 appends one at a time, as 100,000 steps would make them.
// In place, each costs the same whatever the list's length (a copy per append would make this quadratic).
do {
    let item: [(channel: String, value: JSONValue)] = [("log", .string(String(repeating: "m", count: 25)))]
    var state: [String: JSONValue] = [:]
    var window = DispatchTime.now().uptimeNanoseconds
    for i in 1...100_000 {
        _ = try! planner.apply(item, to: &state)
        if i == 1_000 || i == 100_000 {
            let now = DispatchTime.now().uptimeNanoseconds
            report("reducers: append to a list of \(i == 1_000 ? "0" : "99,000")…\(i) items", Double(now - window), 1_000)
            window = now
        } else if i == 99_000 {
            window = DispatchTime.now().uptimeNanoseconds
        }
    }
}

// SQLite: a batch like one step of a 100-task fan-out, in one transaction.
let dbPath = NSTemporaryDirectory() + "cairn-microbench-\(UUID().uuidString).db"
let sqlite = try SQLiteStore(path: dbPath, logger: logger)
final class Counter: @unchecked Sendable { var value = 0 }
let stepCounter = Counter()
func stepBatch(_ n: Int) -> StoreBatch {
    stepCounter.value += 1
    let counter = stepCounter.value
    var b = StoreBatch()
    for i in 0..<n {
        b.pendingWrites.append(PendingWriteRecord(runID: "r", checkpointID: "c\(counter)", taskID: "t\(i)", idx: 0, channel: "log", value: .string("value \(i)")))
    }
    b.checkpoints.append(CheckpointRecord(runID: "r", checkpointID: String(format: "c%08d", counter), parentID: nil, step: counter, source: "loop",
                                          channelVersions: ["log": "c\(counter)"], nextTasks: .array([]), metadata: .object([:]), createdAt: 0))
    return b
}
try await bench("sqlite: commit a 100-row batch (per row)", iterations: 300, ops: 101) { try await sqlite.commit(stepBatch(100)) }
try await bench("sqlite: commit a 1-row batch (per transaction)", iterations: 2_000) { try await sqlite.commit(stepBatch(0)) }
try? FileManager.default.removeItem(atPath: dbPath)

// Redis: 100 SETs with a TTL in one pipelined round trip.
if let redisURL {
    let client = RedisClient(url: try RedisURL(redisURL), logger: logger)
    let value = [UInt8](repeating: 0x78, count: 200)
    let cmds: [[[UInt8]]] = (0..<100).map { i in [Array("SET".utf8), Array("cairn:microbench:\(i)".utf8), value, Array("PX".utf8), Array("60000".utf8)] }
    try await bench("redis: pipelined SET PX (per command, 100/trip)", iterations: 1_000, ops: 100) { _ = try await client.pipeline(cmds) }
    try await bench("redis: one round trip (PING)", iterations: 5_000) { _ = try await client.command("PING") }
} else {
    print("  redis: skipped (pass --redis redis://127.0.0.1:PORT)")
}

// Where a frame's time goes.
bench("frame: protobuf serialize only", iterations: 200_000) {
    let _: [UInt8] = try! result.serializedBytes()
}
let bytes: [UInt8] = try! result.serializedBytes()
bench("frame: protobuf parse only", iterations: 200_000) {
    _ = try! Cairn_V1_TaskResult(serializedBytes: bytes)
}
bench("frame: WireCodec.encode only", iterations: 200_000) {
    _ = try! codec.encode(.taskResult(result))
}
