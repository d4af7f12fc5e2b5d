import CairnStore
import Foundation
import Logging

/// What every run command needs: the engine that holds the runs, the store (through the hot
/// tier when there is one, so reads see every step), the parsed graphs, and the settings.
struct CommandContext: Sendable {
    let engine: Engine
    let store: any CheckpointStore & MaintainedStore
    let graphs: GraphCache
    let config: CoordinatorConfig
    let hotTier: (any HotTierStatus)?
    let logger: Logger

    var now: Double { Date().timeIntervalSince1970 }

    /// Runs `body` holding a claim on `runID` (`RunClaims`), let go of however it ends.
    func claimed<T>(_ runID: String, _ kind: RunClaims.Kind, doing what: String?, isolation: isolated (any Actor)? = #isolation,
                    _ body: () async throws -> T) async throws -> T {
        try await engine.claim(runID, kind, doing: what)
        do {
            let result = try await body()
            await engine.release(runID, kind)
            return result
        } catch {
            await engine.release(runID, kind)
            throw error
        }
    }
}
