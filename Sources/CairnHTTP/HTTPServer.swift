import CairnCore
import CairnCoordinator
import CairnGraph
import CairnProtocol
import Foundation
import Hummingbird
import HummingbirdTLS
import NIOSSL
import Logging
import ServiceLifecycle

/// The HTTP API: JSON endpoints and Server-Sent Events over the engine's one door
/// (`ClientDoor`), so every rule is the one the `cairn` binary meets. Served by Hummingbird on
/// `--http HOST:PORT`. Every `/api/` request needs the token (`Authorization: Bearer …`) when
/// the coordinator has one. The endpoints are described by `OpenAPIDocument` (served at
/// `/api/openapi.json`).
public struct HTTPAPI: Sendable {
    public let door: ClientDoor
    public let logger: Logger
    /// The largest request body accepted; larger ones get 413.
    public var maxBodyBytes = 16 * 1024 * 1024
    /// The largest export file `POST /api/import` takes (`cairn import` has no such limit).
    public var maxImportBytes = 256 * 1024 * 1024
    /// An event stream whose client has not taken a write for this long is closed: a client that
    /// stops reading is dropped (the engine also bounds what it holds for it).
    public var streamStall: Duration = .seconds(10)
    let pictures: GraphPictures
    /// The readers of every run's events (`GET /api/events`), fed by one engine subscription:
    /// conflated, and every event (`?every=true`).
    let hub: SSEBroadcast
    let everyHub: SSEBroadcast
    /// The readers of each run's events (`GET /api/runs/{id}/events`), one subscription per run.
    let runHubs: RunSSEBroadcasts

    public init(door: ClientDoor, logger: Logger) {
        self.door = door; self.logger = logger
        pictures = GraphPictures(logger: logger)
        hub = SSEBroadcast(door: door, maxPending: 4 << 20, conflate: true)
        everyHub = SSEBroadcast(door: door, maxPending: 4 << 20)
        runHubs = RunSSEBroadcasts(door: door, maxPending: 4 << 20)
    }

    /// The application, ready to run as a service. `onListening` is told the bound port.
    public func application(host: String, port: Int, tls: TLSConfiguration? = nil,
                            onListening: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: TokenMiddleware(door: door))
        router.add(middleware: MethodMiddleware(routes: Self.methods))
        routes(router)
        return Application(router: router, server: try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1(),
                           configuration: .init(address: .hostname(host, port: port), serverName: "cairn"),
                           onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    func routes(_ router: Router<BasicRequestContext>) {
        Dashboard.routes(router)
        let api = router.group("api")
        api.get("openapi.json") { _, _ in Self.json(try JSONValue.parse(Array(OpenAPIDocument.text.utf8))) }
        api.get("runs") { request, _ in try await self.list(request) }
        api.post("runs") { request, _ in try await self.submit(request) }
        api.get("runs/:id") { _, context in try await self.ask(.status(Self.query(try Self.runID(context)))) }
        api.post("runs/:id/cancel") { request, context in
            _ = try await Self.body(request, limit: 1024, allowed: [])
            return try await self.ask(.cancel(Self.query(try Self.runID(context))))
        }
        api.post("runs/:id/resume") { request, context in try await self.resume(request, try Self.runID(context)) }
        api.get("runs/:id/history") { _, context in try await self.ask(.history(Self.query(try Self.runID(context)))) }
        api.get("runs/:id/state") { request, context in
            var s = Cairn_V1_StateRequest()
            s.runID = try Self.runID(context)
            s.checkpointID = request.uri.queryParameters.get("checkpoint") ?? ""
            return try await self.ask(.state(s))
        }
        api.get("runs/:id/events") { _, context in try await self.events(try Self.runID(context)) }
        api.get("events") { request, _ in try await self.allEvents(request) }
        api.get("runs/:id/graph") { _, context in
            let graph: Graph
            do { graph = try await self.door.graph(try Self.runID(context), as: RequestGrants.current) } catch let e as APIError { throw e } catch { throw Self.apiError(error) }
            return Self.json(await self.pictures.json(graph))
        }
        api.post("runs/:id/update") { request, context in try await self.update(request, try Self.runID(context)) }
        api.post("runs/:id/fork") { request, context in try await self.branch(request, try Self.runID(context), inPlace: false) }
        api.post("runs/:id/rewind") { request, context in try await self.branch(request, try Self.runID(context), inPlace: true) }
        api.get("runs/:id/tasks") { request, context in
            let q = request.uri.queryParameters
            return try await self.records(report: "attempts", runID: try Self.runID(context), node: q.get("node"), task: q.get("task"), request)
        }
        api.get("runs/:id/debug") { request, context in
            var d = Cairn_V1_DebugRequest()
            d.runID = try Self.runID(context)
            if let step = request.uri.queryParameters.get("step") {
                guard let n = UInt32(step) else { throw APIError(.badRequest, "invalid_argument", "step takes a step number of 0 or more") }
                d.step = n; d.stepGiven = true
            }
            return try await self.ask(.debug(d))
        }
        api.get("records/:report") { request, context in
            guard let report = context.parameters.get("report") else { throw APIError(.badRequest, "invalid_argument", "a report is needed") }
            return try await self.records(report: report, runID: request.uri.queryParameters.get("run_id"), node: nil, task: nil, request)
        }
        api.get("workers") { _, _ in try await self.ask(.workers(Cairn_V1_Empty())) }
        api.get("stats") { _, _ in try await self.ask(.stats(Cairn_V1_Empty())) }
        api.post("verify") { request, _ in try await self.verify(request) }
        api.post("cleanup") { request, _ in try await self.cleanup(request) }
        api.post("runs/:id/pin") { request, context in try await self.pin(request, try Self.runID(context), true) }
        api.post("runs/:id/unpin") { request, context in try await self.pin(request, try Self.runID(context), false) }
        api.get("export") { request, _ in try await self.export(request) }
        api.post("import") { request, _ in try await self.importArchive(request) }
    }

    /// Each path and the methods it answers (a known path asked with another method gets 405).
    static let methods: [(path: [String], methods: [HTTPRequest.Method])] = [
        (["api", "openapi.json"], [.get]), (["api", "runs"], [.get, .post]), (["api", "runs", "*"], [.get]),
        (["api", "runs", "*", "cancel"], [.post]), (["api", "runs", "*", "resume"], [.post]),
        (["api", "runs", "*", "history"], [.get]), (["api", "runs", "*", "state"], [.get]), (["api", "runs", "*", "events"], [.get]),
        (["api", "workers"], [.get]), (["api", "stats"], [.get]), (["api", "events"], [.get]), (["api", "runs", "*", "graph"], [.get]),
        (["api", "runs", "*", "update"], [.post]), (["api", "runs", "*", "fork"], [.post]), (["api", "runs", "*", "rewind"], [.post]),
        (["api", "runs", "*", "tasks"], [.get]), (["api", "runs", "*", "debug"], [.get]), (["api", "records", "*"], [.get]),
        (["api", "verify"], [.post]), (["api", "cleanup"], [.post]), (["api", "runs", "*", "pin"], [.post]),
        (["api", "runs", "*", "unpin"], [.post]), (["api", "export"], [.get]), (["api", "import"], [.post]),
    ]

    // MARK: endpoints

    func list(_ request: Request) async throws -> Response {
        let q = request.uri.queryParameters
        var l = Cairn_V1_ListRequest()
        if let status = q.get("status") {
            // Present means a filter: an empty or unknown status is a mistake, not "all".
            guard ["queued", "running", "paused", "completed", "failed", "cancelled"].contains(status) else {
                throw APIError(.badRequest, "invalid_argument", "unknown status '\(status)' (one of: queued, running, paused, completed, failed, cancelled)")
            }
            l.status = status
        }
        l.graph = q.get("graph") ?? ""
        if let since = q.get("since") {
            guard let ms = Self.duration(since) else { throw APIError(.badRequest, "invalid_argument", "since takes a duration like 30m, 24h or 7d") }
            l.sinceMs = UInt64(ms)  // 0: all time
        }
        if let limit = q.get("limit") {
            guard let n = Int(limit), n >= 1, n <= 10_000 else { throw APIError(.badRequest, "invalid_argument", "limit takes a number from 1 to 10000") }
            l.limit = UInt32(n)
        }
        l.cursor = q.get("cursor") ?? ""
        return try await ask(.list(l))
    }

    func submit(_ request: Request) async throws -> Response {
        let o = try await Self.body(request, limit: maxBodyBytes, allowed: ["graph", "file_name", "input", "run_id", "durability"])
        guard let graph = o["graph"]?.stringValue else {
            throw APIError(.badRequest, "invalid_argument", "'graph' is required: the graph file's text (YAML or JSON)")
        }
        var s = Cairn_V1_SubmitRequest()
        s.graphSource = Data(graph.utf8)
        s.graphFileName = try Self.text(o, "file_name") ?? "graph.yaml"
        if let input = o["input"] {
            guard case .object = input else { throw APIError(.badRequest, "invalid_argument", "'input' must be a JSON object of channel to value") }
            s.inputJson = Data(input.jsonBytes())
        }
        s.runID = try Self.text(o, "run_id") ?? ""
        s.durability = try Self.text(o, "durability") ?? ""
        return try await ask(.submit(s), status: .created)
    }

    func resume(_ request: Request, _ runID: String) async throws -> Response {
        let o = try await Self.body(request, limit: maxBodyBytes, allowed: ["value", "interrupt_id", "by"])
        var r = Cairn_V1_ResumeRequest()
        r.runID = runID
        if let v = o["value"] { r.valueJson = Data(v.jsonBytes()) }
        r.interruptID = try Self.text(o, "interrupt_id") ?? ""
        r.by = try Self.text(o, "by") ?? "http"
        return try await ask(.resume(r))
    }

    func update(_ request: Request, _ runID: String) async throws -> Response {
        let o = try await Self.body(request, limit: maxBodyBytes, allowed: ["values", "as_node", "by"])
        var u = Cairn_V1_UpdateRequest()
        u.runID = runID
        guard let values = o["values"], case .object = values else {
            throw APIError(.badRequest, "invalid_argument", "'values' is required: a JSON object of channel to value")
        }
        u.valuesJson = Data(values.jsonBytes())
        u.asNode = try Self.text(o, "as_node") ?? ""
        u.by = try Self.text(o, "by") ?? "http"
        return try await ask(.update(u))
    }

    /// A fork (a new run, 201) or a rewind (the same run, re-run) from a checkpoint.
    func branch(_ request: Request, _ runID: String, inPlace: Bool) async throws -> Response {
        let o = try await Self.body(request, limit: maxBodyBytes, allowed: inPlace ? ["checkpoint_id", "values", "as_node", "by"]
                                                                                 : ["checkpoint_id", "values", "as_node", "run_id", "by"])
        var f = Cairn_V1_ForkRequest()
        f.runID = runID
        guard let cp = try Self.text(o, "checkpoint_id"), !cp.isEmpty else {
            throw APIError(.badRequest, "invalid_argument", "'checkpoint_id' is required: the checkpoint to start from (its history lists them)")
        }
        f.checkpointID = cp
        if let values = o["values"] {
            guard case .object = values else { throw APIError(.badRequest, "invalid_argument", "'values' must be a JSON object of channel to value") }
            f.valuesJson = Data(values.jsonBytes())
        }
        f.asNode = try Self.text(o, "as_node") ?? ""
        f.newRunID = try Self.text(o, "run_id") ?? ""
        f.inPlace = inPlace
        f.by = try Self.text(o, "by") ?? "http"
        return try await ask(.fork(f), status: inPlace ? .ok : .created)
    }

    /// One of the operator's reports (`cairn failures`, `stats --by`, `assets`, `tasks`,
    /// `waiting`, `workers --history`), as `{"rows": [objects]}`.
    func records(report: String, runID: String?, node: String?, task: String?, _ request: Request) async throws -> Response {
        let q = request.uri.queryParameters
        var r = Cairn_V1_RecordsRequest()
        r.report = report
        r.by = q.get("by") ?? ""
        if let since = q.get("since") {
            // As for /api/runs: the same durations, 0 meaning all time.
            guard let ms = Self.duration(since) else { throw APIError(.badRequest, "invalid_argument", "since takes a duration like 30m, 24h or 7d") }
            r.sinceMs = UInt64(ms)
        }
        r.graph = q.get("graph") ?? ""
        r.runID = runID ?? ""
        r.node = node ?? ""
        r.taskID = task ?? ""
        r.uri = q.get("uri") ?? ""
        if let limit = q.get("limit") {
            guard let n = UInt32(limit), n >= 1, n <= 100_000 else { throw APIError(.badRequest, "invalid_argument", "limit takes a number from 1 to 100000") }
            r.limit = n
        }
        return try await ask(.records(r))
    }

    // MARK: the life of stored data

    /// `{"run_ids": [...]}` or `{"all": true}`: every stored byte checked. 200 either way; `ok`
    /// says whether all was intact and `damage` lists what was not.
    func verify(_ request: Request) async throws -> Response {
        let o = try await Self.body(request, limit: 1 << 20, allowed: ["run_ids", "all"])
        guard o.count == 1 else {
            throw APIError(.badRequest, "invalid_argument", o.isEmpty ? "name the runs to check in 'run_ids', or give \"all\": true" : "give 'run_ids' or 'all', not both")
        }
        if o["all"] != nil, try !Self.flag(o, "all") { throw APIError(.badRequest, "invalid_argument", "'all' is true or absent (name runs in 'run_ids')") }
        let ids = try Self.texts(o, "run_ids") ?? []
        guard o["all"] != nil || !ids.isEmpty else { throw APIError(.badRequest, "invalid_argument", "'run_ids' names one run or more") }
        guard ids.count <= 10_000, !ids.contains("") else { throw APIError(.badRequest, "invalid_argument", "'run_ids' holds up to 10000 run ids, none empty") }
        var v = Cairn_V1_VerifyRequest()
        v.runIds = ids
        return try await ask(.verify(v))
    }

    /// Deletes finished runs as `cairn cleanup` does (`dry_run`: only says which it would).
    func cleanup(_ request: Request) async throws -> Response {
        let o = try await Self.body(request, limit: 1 << 20, allowed: ["older_than", "statuses", "graph", "keep_latest", "dry_run"])
        guard let olderThan = try Self.text(o, "older_than") else {
            throw APIError(.badRequest, "invalid_argument", "'older_than' is required: a duration like 30d, 12h or 0s (any age)")
        }
        guard let ms = Self.duration(olderThan) else {
            throw APIError(.badRequest, "invalid_argument", "'older_than' takes a duration like 30d, 12h or 0s")
        }
        var c = Cairn_V1_CleanupRequest()
        c.olderThanMs = UInt64(ms)
        c.statuses = try Self.texts(o, "statuses") ?? []
        c.graph = try Self.text(o, "graph") ?? ""
        if let k = o["keep_latest"] {
            guard let n = k.intValue, n >= 0, n <= 1_000_000 else {
                throw APIError(.badRequest, "invalid_argument", "'keep_latest' takes a count from 0 to 1000000")
            }
            c.keepLatest = UInt32(n)
        }
        c.dryRun = try Self.flag(o, "dry_run")
        return try await ask(.cleanup(c))
    }

    func pin(_ request: Request, _ runID: String, _ pinned: Bool) async throws -> Response {
        _ = try await Self.body(request, limit: 1024, allowed: [])
        var p = Cairn_V1_PinRequest()
        p.runID = runID
        p.pinned = pinned
        return try await ask(.pin(p))
    }

    /// `?runs=ID,ID`: the file `cairn export` writes (fork parents included), as a download.
    func export(_ request: Request) async throws -> Response {
        let ids = (request.uri.queryParameters.get("runs") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !ids.isEmpty else { throw APIError(.badRequest, "invalid_argument", "name the runs to export: ?runs=ID[,ID…]") }
        guard ids.count <= 1000 else { throw APIError(.badRequest, "invalid_argument", "at most 1000 runs in one export") }
        let parts: [ExportArchive.Part]
        do {
            parts = try await ExportArchive.gather(ids) { id in
                var e = Cairn_V1_ExportRequest()
                e.runID = id
                guard case .exportRun(let r) = try await door.answer(.exportRun(e), as: RequestGrants.current) else {
                    throw APIError(.internalServerError, "internal", "an answer an export does not expect")
                }
                return r
            }
        } catch let e as APIError { throw e } catch let e as ExportArchive.Damaged {
            throw APIError(.internalServerError, "data_damaged", e.description)
        } catch { throw Self.apiError(error) }
        let file = try ExportArchive(createdAt: Date().timeIntervalSince1970, parts: parts).encode()
        let name = (ids.count == 1 ? ids[0] : "runs").filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .contentDisposition: "attachment; filename=\"\(name).cairn\"",
                                               .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(bytes: file)))
    }

    /// The body is a file `cairn export` (or `GET /api/export`) wrote. It is checked whole before
    /// anything is written; `?dry_run=true` only checks it.
    func importArchive(_ request: Request) async throws -> Response {
        let dryRun = try Self.flag(request, "dry_run")
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxImportBytes) } catch {
            throw APIError(.contentTooLarge, "too_large", "an import is at most \(maxImportBytes) bytes; import larger files with cairn import")
        }
        let archive: ExportArchive
        do { archive = try ExportArchive.decode(Array(buffer.readableBytesView)) } catch {
            throw APIError(.badRequest, "invalid_archive", "\(error); nothing was imported")
        }
        let replies: [Cairn_V1_ImportReply]
        do {
            replies = try await archive.importAll(dryRun: dryRun) { req in
                guard case .importRun(let r) = try await door.answer(.importRun(req), as: RequestGrants.current) else {
                    throw APIError(.internalServerError, "internal", "an answer an import does not expect")
                }
                return r
            }
        } catch let e as APIError { throw e } catch { throw Self.apiError(error) }
        return Self.json(.object(["dry_run": .bool(dryRun), "runs": .array(replies.map(MessageJSON.json))]))
    }

}
