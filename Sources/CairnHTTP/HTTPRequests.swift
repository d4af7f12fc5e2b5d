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

/// Requests in, answers out: the door asked and its reply as JSON, bodies and parameters read
/// strictly, errors mapped to the documented status and code, and the token and method
/// middlewares.
extension HTTPAPI {

    /// Asks the door and answers its reply as JSON (the shape `cairn … --json` prints).
    func ask(_ body: Cairn_V1_ClientRequest.OneOf_Body, status: HTTPResponse.Status = .ok) async throws -> Response {
        let reply: Cairn_V1_ClientResponse.OneOf_Body
        do { reply = try await door.answer(body, as: RequestGrants.current) } catch { throw Self.apiError(error) }
        let value: JSONValue
        switch reply {
        case .run(let r): value = MessageJSON.json(r)
        case .runs(let l):
            value = .object(["runs": .array(l.runs.map(MessageJSON.json)), "next_cursor": l.nextCursor.isEmpty ? .null : .string(l.nextCursor)])
        case .history(let h): value = MessageJSON.json(h)
        case .state(let s):
            value = .object(["run_id": .string(s.runID), "checkpoint_id": .string(s.checkpointID), "step": .int(Int64(s.step)),
                             "state": MessageJSON.json(s.stateJson), "next": .array(s.nextNodes.map { .string($0) })])
        case .workers(let w): value = .object(["workers": .array(w.workers.map(MessageJSON.json))])
        case .stats(let s): value = MessageJSON.json(s)
        case .verify(let v): value = MessageJSON.json(v)
        case .cleanup(let c): value = MessageJSON.json(c)
        case .debug(let d): value = MessageJSON.json(d.json)
        case .records(let t):
            let rows = MessageJSON.json(t.rowsJson).arrayValue ?? []
            value = .object(["columns": .array(t.columns.map { .string($0) }),
                             "rows": .array(rows.map { row in .object(Dictionary(uniqueKeysWithValues: zip(t.columns, row.arrayValue ?? []))) })])
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

    /// A duration as the API documents it (`30d`, `1.5h`, `250ms`): digits, an optional
    /// fraction and a unit; nothing else (no exponent, no spaces).
    static func duration(_ text: String) -> Int64? {
        guard text.wholeMatch(of: /[0-9]+(\.[0-9]+)?(ms|s|m|h|d)/) != nil else { return nil }
        return Durations.parseMillis(text)
    }

    /// An optional list of strings: absent is nil.
    static func texts(_ o: [String: JSONValue], _ key: String) throws -> [String]? {
        guard let v = o[key] else { return nil }
        guard let a = v.arrayValue, let s = Optional(a.compactMap(\.stringValue)), s.count == a.count else {
            throw APIError(.badRequest, "invalid_argument", "'\(key)' must be a list of strings")
        }
        return s
    }

    /// An optional boolean field: absent is false.
    /// An optional boolean query parameter: absent is false.
    static func flag(_ request: Request, _ name: String) throws -> Bool {
        switch request.uri.queryParameters.get(name) {
        case nil, "false": return false
        case "true": return true
        case let v?: throw APIError(.badRequest, "invalid_argument", "\(name) takes true or false, not '\(v)'")
        }
    }

    static func flag(_ o: [String: JSONValue], _ key: String) throws -> Bool {
        guard let v = o[key] else { return false }
        guard let b = v.boolValue else { throw APIError(.badRequest, "invalid_argument", "'\(key)' must be true or false") }
        return b
    }

    /// An optional string field: absent is nil; present, it must be a string (null is not one).
    static func text(_ o: [String: JSONValue], _ key: String) throws -> String? {
        guard let v = o[key] else { return nil }
        guard let s = v.stringValue else { throw APIError(.badRequest, "invalid_argument", "'\(key)' must be a string") }
        return s
    }

    /// The door's error as the HTTP status and stable code the API documents.
    static func apiError(_ error: any Error) -> APIError {
        let (code, message) = ClientDoor.failure(error)
        switch code {
        case .errorInvalidArgument: return APIError(.badRequest, "invalid_argument", message)
        case .errorUnauthenticated: return APIError(.unauthorized, "unauthenticated", message)
        case .errorPermissionDenied: return APIError(.forbidden, "permission_denied", message)
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

/// What the token of the request being answered grants: set by `TokenMiddleware` around each
/// `/api/` request and passed to the door, which refuses what the grants do not cover. Outside a
/// request it grants nothing.
enum RequestGrants {
    @TaskLocal static var current: Grants = []
}

/// `/api/` needs `Authorization: Bearer TOKEN` when the coordinator has tokens, looked up as the
/// TCP handshake does (constant time, every token file entry). A refusal says only that a token
/// is needed or wrong; what the token's role may do is the door's to decide (403).
struct TokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let door: ClientDoor

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path.hasPrefix("/api/") || request.uri.path == "/api" else {
            return try await next(request, context)
        }
        let given = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        let presented = given.hasPrefix(prefix) ? String(given.dropFirst(prefix.count)) : nil
        guard let grants = door.grants(for: presented) else {
            var r = HTTPAPI.json(.object(["code": "unauthenticated",
                                          "message": .string(given.isEmpty ? "this API needs the coordinator's token: Authorization: Bearer TOKEN" : "wrong token")]),
                                 status: .unauthorized)
            r.headers[.wwwAuthenticate] = "Bearer"
            return r
        }
        return try await RequestGrants.$current.withValue(grants) { try await next(request, context) }
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
