import CairnCore
import CairnGraph
import CairnStore

/// What a submit decides, as pure functions with time and ids passed in: the input read
/// against the graph, the run's durability, and the rows that start it (its graph, bundle,
/// input values, first checkpoint with the tasks planned, and its record: queued, or paused
/// when the graph interrupts before its first node). The engine checks the run id against
/// what is active and stored, writes `batch`, and starts the run (`SubmissionTests`).
struct Submission {
    /// Why a submit is refused: said to the client as an invalid argument.
    struct Refusal: Error, CustomStringConvertible {
        let description: String
    }

    let record: RunRecord
    let checkpoint: CheckpointRecord
    let state: [String: JSONValue]
    /// The tasks of step 1.
    let first: [PlannedTask]
    let bundleHash: String?
    let batch: StoreBatch

    /// The input: a JSON object of the graph's channels (empty bytes: none).
    static func input(_ bytes: [UInt8], for graph: Graph) throws -> [String: JSONValue] {
        guard !bytes.isEmpty else { return [:] }
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(bytes) } catch {
            throw Refusal(description: "input is not JSON (\(error)); it must be a JSON object of channel to value")
        }
        guard case .object(let o) = parsed else { throw Refusal(description: "input must be a JSON object of channel to value") }
        for k in o.keys.sorted() where graph.channels[k] == nil {
            throw Refusal(description: "input names '\(k)', which is not a channel of graph '\(graph.name)' (channels: \(graph.channelNames.joined(separator: ", ")))")
        }
        return o
    }

    /// `hot` or `sync` as asked (default: hot with a hot tier); without one, every run is sync.
    static func durability(_ asked: String, hotTier: Bool) throws -> String {
        switch asked {
        case "": return hotTier ? "hot" : "sync"
        case "hot", "sync": return hotTier ? asked : "sync"
        default: throw Refusal(description: "durability must be 'hot' or 'sync', not '\(asked)'")
        }
    }

    static func validRunID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 128 && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.:".contains($0)) }
    }

    /// The rows that start run `runID` of `graph` (its `source`, as submitted) with `input`.
    /// `bundle`: the packed graph folder, checked against `bundleHash` when one is given.
    init(graph: Graph, source: String, fileName: String, input: [String: JSONValue], bundle: [UInt8], bundleHash expected: String?,
         runID: String, durability: String, checkpointID c0: String, now: Double) throws {
        var batch = StoreBatch()
        var bundleHash: String?
        if !bundle.isEmpty {
            do {
                let archive = try BundleArchive(packed: bundle, expectedHash: expected)
                bundleHash = archive.hash
                batch.bundles.append(BundleRecord(hash: archive.hash, data: archive.packed))
            } catch {
                throw Refusal(description: "graph bundle rejected: \(error)")
            }
        }
        let graphHash = Hashing.sha256Hex(Array(source.utf8) + [0] + Array((bundleHash ?? "").utf8))
        batch.graphs.append(GraphRecord(hash: graphHash, name: graph.name, version: graph.version, fileName: fileName,
                                        source: source, bundleHash: bundleHash, createdAt: now))

        let planner = Planner(graph: graph)
        var state = graph.initialState
        let written: Set<String>
        do { written = try planner.apply(input.keys.sorted().map { ($0, input[$0]!) }, to: &state) } catch {
            throw Refusal(description: "input: \(error)")
        }
        var versions: [String: String] = [:]
        for ch in written.sorted() {
            versions[ch] = c0
            batch.channelValues.append(ChannelValueRecord(runID: runID, channel: ch, version: c0, baseVersion: nil, value: state[ch] ?? .null))
        }
        let first: [PlannedTask]
        do { first = try planner.firstTasks(checkpointID: c0, step: 1, state: state) } catch {
            throw Refusal(description: "\(error)")
        }
        var record = RunRecord(runID: runID, graphHash: graphHash, graphName: graph.name, graphVersion: graph.version,
                               status: .queued, durability: durability, input: .object(input), createdAt: now)
        record.checkpointID = c0
        // Which channels a checkpoint updated is not stored: they are the ones whose version is it.
        var zero = CheckpointBuilder(runID: runID, id: c0, parentID: nil, step: 0, source: "input", versions: versions)
        zero.next = first
        if let n = first.first(where: { graph.interruptBefore.contains($0.node) })?.node {
            record.status = .paused
            record.interrupt = PendingInterrupt.record(checkpointID: c0, pending: [PendingInterrupt.pause(
                "interrupt_before", node: n, checkpointID: c0, graph: graph, now: now)])
            zero.interrupt = record.interrupt
        }
        let cp = zero.build(at: now)
        batch.checkpoints.append(cp)
        batch.runs.append(record)
        self.record = record
        self.checkpoint = cp
        self.state = state
        self.first = first
        self.bundleHash = bundleHash
        self.batch = batch
    }
}
