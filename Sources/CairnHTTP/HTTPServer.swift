import CairnCore
import CairnCoordinator
import CairnProtocol
import Foundation
import Hummingbird
import Logging

/// The HTTP API: JSON endpoints and Server-Sent Events over the engine's one door
/// (`ClientDoor`), so every rule is the one the `cairn` binary meets. Served by Hummingbird on
/// `--http HOST:PORT`. Every `/api/` request needs the token (`Authorization: Bearer …`) when
/// the coordinator has one. The endpoints are described by `OpenAPIDocument` (served at
/// `/api/openapi.json`).
public struct HTTPAPI: Sendable {
    public let door: ClientDoor
    public let token: String?
    public let logger: Logger
    /// The largest request body accepted; larger ones get 413.
    public var maxBodyBytes = 16 * 1024 * 1024

    public init(door: ClientDoor, token: String?, logger: Logger) {
        self.door = door; self.token = token; self.logger = logger
    }

    /// The application, ready to run as a service. `onListening` is told the bound port.
    public func application(host: String, port: Int, onListening: @escaping @Sendable (Int) async -> Void = { _ in })
        -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: TokenMiddleware(token: token))
        router.add(middleware: MethodMiddleware(routes: Self.methods))
        routes(router)
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "cairn"),
                           onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    func routes(_ router: Router<BasicRequestContext>) {
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
        api.get("workers") { _, _ in try await self.ask(.workers(Cairn_V1_Empty())) }
        api.get("stats") { _, _ in try await self.ask(.stats(Cairn_V1_Empty())) }
    }

    /// Each path and the methods it answers (a known path asked with another method gets 405).
    static let methods: [(path: [String], methods: [HTTPRequest.Method])] = [
        (["api", "openapi.json"], [.get]), (["api", "runs"], [.get, .post]), (["api", "runs", "*"], [.get]),
        (["api", "runs", "*", "cancel"], [.post]), (["api", "runs", "*", "resume"], [.post]),
        (["api", "runs", "*", "history"], [.get]), (["api", "runs", "*", "state"], [.get]), (["api", "runs", "*", "events"], [.get]),
        (["api", "workers"], [.get]), (["api", "stats"], [.get]),
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
            guard let ms = Durations.parseMillis(since) else { throw APIError(.badRequest, "invalid_argument", "since takes a duration like 30m, 24h or 7d") }
            l.sinceMs = UInt64(ms)  // 0: all time
        }
        if let limit = q.get("limit") {
            guard let n = Int(limit), n >= 1, n <= 10_000 else { throw APIError(.badRequest, "invalid_argument", "limit takes a number from 1 to 10000") }
            l.limit = UInt32(n)
        }
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
        if let input = o["input"], input != .null {
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

    /// `text/event-stream` of the run's events, `event: KIND` and `data: JSON` each, ending with
    /// the final one. A client that stops reading holds back only its own stream, which the
    /// engine bounds (the oldest events beyond 10,000 are dropped for it).
    func events(_ runID: String) async throws -> Response {
        let stream: AsyncStream<Cairn_V1_RunEvent>
        do { stream = try await door.events(runID) } catch { throw Self.apiError(error) }
        let body = ResponseBody { writer in
            for await event in stream {
                var text = "event: \(event.kind)\ndata: "
                text += MessageJSON.json(event).compactString
                text += "\n\n"
                try await writer.write(ByteBuffer(string: text))
                if event.final { break }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }

    // MARK: plumbing

    /// Asks the door and answers its reply as JSON (the shape `cairn … --json` prints).
    func ask(_ body: Cairn_V1_ClientRequest.OneOf_Body, status: HTTPResponse.Status = .ok) async throws -> Response {
        let reply: Cairn_V1_ClientResponse.OneOf_Body
        do { reply = try await door.answer(body) } catch { throw Self.apiError(error) }
        let value: JSONValue
        switch reply {
        case .run(let r): value = MessageJSON.json(r)
        case .runs(let l): value = .object(["runs": .array(l.runs.map(MessageJSON.json))])
        case .history(let h): value = MessageJSON.json(h)
        case .state(let s):
            value = .object(["run_id": .string(s.runID), "checkpoint_id": .string(s.checkpointID), "step": .int(Int64(s.step)),
                             "state": MessageJSON.json(s.stateJson), "next": .array(s.nextNodes.map { .string($0) })])
        case .workers(let w): value = .object(["workers": .array(w.workers.map(MessageJSON.json))])
        case .stats(let s): value = MessageJSON.json(s)
        default: throw APIError(.internalServerError, "internal", "an answer this endpoint does not expect")
        }
        return Self.json(value, status: status)
    }

    static func json(_ v: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: v.jsonBytes())))
    }

    static func query(_ runID: String) -> Cairn_V1_RunQuery {
        var q = Cairn_V1_RunQuery()
        q.runID = runID
        return q
    }

    static func runID(_ context: BasicRequestContext) throws -> String {
        guard let id = context.parameters.get("id"), !id.isEmpty else { throw APIError(.badRequest, "invalid_argument", "a run id is needed") }
        return id
    }

    /// The request's JSON object, with only `allowed` fields (an unknown field is a mistake the
    /// caller should hear about, not something silently ignored).
    static func body(_ request: Request, limit: Int, allowed: Set<String>) async throws -> [String: JSONValue] {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: limit) } catch {
            throw APIError(.contentTooLarge, "too_large", "the request body is larger than \(limit) bytes")
        }
        if buffer.readableBytes == 0 && allowed.isEmpty { return [:] }
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(Array(buffer.readableBytesView)) } catch {
            throw APIError(.badRequest, "invalid_json", "the request body is not JSON: \(error)")
        }
        guard case .object(let o) = parsed else { throw APIError(.badRequest, "invalid_argument", "the request body must be a JSON object") }
        if let unknown = o.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw APIError(.badRequest, "unknown_field", "unknown field '\(unknown)'" + (allowed.isEmpty ? " (this request takes no body)" : " (fields: \(allowed.sorted().joined(separator: ", ")))"))
        }
        return o
    }

    static func text(_ o: [String: JSONValue], _ key: String) throws -> String? {
        guard let v = o[key], v != .null else { return nil }
        guard let s = v.stringValue else { throw APIError(.badRequest, "invalid_argument", "'\(key)' must be a string") }
        return s
    }

    /// The door's error as the HTTP status and stable code the API documents.
    static func apiError(_ error: any Error) -> APIError {
        let (code, message) = ClientDoor.failure(error)
        switch code {
        case .errorInvalidArgument: return APIError(.badRequest, "invalid_argument", message)
        case .errorUnauthenticated: return APIError(.unauthorized, "unauthenticated", message)
        case .errorNotFound: return APIError(.notFound, "not_found", message)
        case .errorConflict: return APIError(.conflict, "conflict", message)
        case .errorLimit, .errorFrameTooLarge: return APIError(.contentTooLarge, "too_large", message)
        case .errorUnavailable: return APIError(.serviceUnavailable, "unavailable", message)
        case .errorDataDamaged: return APIError(.internalServerError, "data_damaged", message)
        default: return APIError(.internalServerError, "internal", message)
        }
    }
}

/// An API error: its status, a stable `code` and a message, answered as `{"code", "message"}`.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    init(_ status: HTTPResponse.Status, _ code: String, _ message: String) { self.status = status; self.code = code; self.message = message }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        HTTPAPI.json(.object(["code": .string(code), "message": .string(message)]), status: status)
    }
}

/// `/api/` needs `Authorization: Bearer TOKEN` when the coordinator has a token; compared in
/// constant time. A refusal says only that a token is needed or wrong.
struct TokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, request.uri.path.hasPrefix("/api/") || request.uri.path == "/api" else {
            return try await next(request, context)
        }
        let given = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard given.hasPrefix(prefix), Hashing.constantTimeEquals(Array(given.dropFirst(prefix.count).utf8), Array(token.utf8)) else {
            var r = HTTPAPI.json(.object(["code": "unauthenticated",
                                          "message": .string(given.isEmpty ? "this API needs the coordinator's token: Authorization: Bearer TOKEN" : "wrong token")]),
                                 status: .unauthorized)
            r.headers[.wwwAuthenticate] = "Bearer"
            return r
        }
        return try await next(request, context)
    }
}

/// A path the API serves, asked with a method it does not answer: 405 with `Allow`, not 404.
struct MethodMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: [(path: [String], methods: [HTTPRequest.Method])]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let parts = request.uri.path.split(separator: "/").map(String.init)
        guard let route = routes.first(where: { r in
            r.path.count == parts.count && zip(r.path, parts).allSatisfy { $0 == "*" || $0 == $1 }
        }), !route.methods.contains(request.method) else {
            return try await next(request, context)
        }
        var r = HTTPAPI.json(.object(["code": "method_not_allowed",
                                      "message": .string("\(request.uri.path) answers \(route.methods.map(\.rawValue).joined(separator: ", ")), not \(request.method.rawValue)")]),
                             status: .methodNotAllowed)
        r.headers[.allow] = route.methods.map(\.rawValue).joined(separator: ", ")
        return r
    }
}
