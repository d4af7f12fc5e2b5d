import CairnCore
import CairnProtocol

/// What each request needs of its token's role: decided here, once, for every door (the TCP
/// client conversation and the HTTP API both ask `ClientDoor`, which asks this).
///
/// - reading (status, list, history, state, events, workers, stats, records, verify, debug,
///   export, a cleanup's dry run): `reader`, `submitter`, `admin`;
/// - changing runs (submit, cancel, resume, update, fork, rewind, pin): `submitter`, `admin`;
/// - deleting or importing runs (cleanup, import): `admin`;
/// - registering as a worker: `worker` only (checked at the handshake).
public enum Access {
    public static func needs(_ body: Cairn_V1_ClientRequest.OneOf_Body) -> Grants {
        switch body {
        case .status, .list, .history, .state, .workers, .stats, .watch, .records, .verify, .debug, .exportRun:
            return .read
        case .submit, .cancel, .resume, .update, .fork, .pin:
            return .submit
        case .cleanup(let c):
            return c.dryRun ? .read : .administer
        case .importRun:
            return .administer
        }
    }

    /// The name of a request kind, for a refusal's message.
    static func name(_ body: Cairn_V1_ClientRequest.OneOf_Body) -> String {
        switch body {
        case .submit: "submit a run"
        case .status: "read a run"
        case .cancel: "cancel a run"
        case .list: "list runs"
        case .history: "read a run's history"
        case .state: "read a run's state"
        case .workers: "list workers"
        case .stats: "read stats"
        case .watch: "watch a run"
        case .resume: "resume a run"
        case .update: "update a run's state"
        case .fork: "fork or rewind a run"
        case .records: "read records"
        case .verify: "verify the store"
        case .cleanup: "delete runs"
        case .pin: "pin a run"
        case .exportRun: "export a run"
        case .importRun: "import a run"
        case .debug: "debug a run"
        }
    }

    /// Refuses a request its token may not make: `ERROR_PERMISSION_DENIED`, naming the token's
    /// role and the roles that may.
    public static func check(_ body: Cairn_V1_ClientRequest.OneOf_Body, _ grants: Grants) throws {
        let needed = needs(body)
        guard !grants.isSuperset(of: needed) else { return }
        throw denied(grants, needed, doing: name(body))
    }

    /// Refuses reading with a token that may not read (a worker's): the HTTP API's event streams and graphs.
    public static func checkRead(_ grants: Grants, doing what: String) throws {
        guard !grants.contains(.read) else { return }
        throw denied(grants, .read, doing: what)
    }

    static func denied(_ grants: Grants, _ needed: Grants, doing what: String) -> EngineError {
        let may = Grants.roles.filter { $0.grants.isSuperset(of: needed) }.map(\.name)
        let article = may.first.map { "aeiou".contains($0.prefix(1)) } == true ? "an" : "a"
        return EngineError(.errorPermissionDenied, "this token's role (\(grants)) may not \(what): that takes \(article) \(may.joined(separator: " or ")) token")
    }

    /// A token that may do nothing a client does (a worker's) is refused as a client at once.
    public static let clientGrants: Grants = [.read, .submit, .administer]
}
