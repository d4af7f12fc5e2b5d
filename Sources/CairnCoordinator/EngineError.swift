import CairnProtocol

/// A command was accepted, but its write is not yet durable because the store refuses writes: it
/// takes effect once the store heals (or never, if the coordinator stops first).
struct Unconfirmed: Error {
    let storeError: String

    /// What the client is told, about `what` ("run r-1 is submitted").
    func answer(_ what: String, check runID: String) -> EngineError {
        EngineError(.errorUnavailable, "\(what) but not yet recorded: the store refuses writes (\(storeError)). It takes effect once the store accepts writes again, unless the coordinator stops first; cairn status \(runID) tells whether it is recorded")
    }
}

/// A failure the coordinator reports to a client with an error code.
struct EngineError: Error, CustomStringConvertible {
    let code: Cairn_V1_ErrorCode
    let message: String
    init(_ code: Cairn_V1_ErrorCode, _ message: String) { self.code = code; self.message = message }
    var description: String { message }
}
