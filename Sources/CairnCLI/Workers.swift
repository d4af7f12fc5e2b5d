import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List connected workers: slots, running tasks, last heartbeat, tasks done.",
        discussion: "With --history: every worker that ran attempts (connected or not), from the stored records: done, failed, lost, stale.")

    @OptionGroup var connection: Connection
    @Flag(help: "Per worker, from the stored attempts: tasks done, failures, lost and stale attempts, busy time.") var history = false
    @Option(help: "With --history: only attempts that started within this long.") var since: String?

    mutating func run() async throws {
        let json = connection.json
        if history || since != nil {
            try await RecordsReport.show(try RecordsReport.request("workers", since: since), connection, empty: "no attempts recorded")
            return
        }
        let list = try await connection.with { try await $0.workerList() }
        let workers = list.workers
        if json { Output.printJSON(.array(workers.map(Output.json))); return }
        if workers.isEmpty { print("no workers connected") } else {
            Output.table(["NAME", "ID", "STATE", "RUNNING", "SLOTS", "DONE", "HEARTBEAT", "CONNECTED", "ADDRESS"], workers.map { w in
                [w.name, w.workerID, w.state, "\(w.running)", "\(w.slots)", "\(w.tasksDone)", Output.ago(w.lastHeartbeat),
                 Output.ago(w.connectedAt), w.address]
            })
        }
        switch list.auth {
        case "none": print(Output.color("auth: none — anyone who reaches the coordinator's port can run code on these workers (loopback only, or --insecure-no-auth)", "33"))
        case "": break
        default: print(Output.dim("auth: \(list.auth)"))
        }
    }
}
