import Dispatch

/// Runs an actor's jobs on a serial DispatchQueue (the technique of GRDB's DispatchQueueActor):
/// an actor whose `unownedExecutor` is one of these may call blocking C (SQLite, hiredis)
/// without tying up Swift's cooperative pool.
public final class DispatchQueueExecutor: SerialExecutor, @unchecked Sendable {
    private let queue: DispatchQueue

    public init(label: String) { self.queue = DispatchQueue(label: label) }

    public func enqueue(_ job: UnownedJob) {
        queue.async { job.runSynchronously(on: self.asUnownedSerialExecutor()) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    public func checkIsolated() { dispatchPrecondition(condition: .onQueue(queue)) }
}
