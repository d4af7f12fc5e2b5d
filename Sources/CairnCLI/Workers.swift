import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List connected workers: slots, running tasks, last heartbeat, tasks done.")

    @OptionGroup var connection: Connection

    mutating func run() async throws {
        let json = connection.json
        let workers = try await connection.with { try await $0.workers() }
        if json { Output.printJSON(.array(workers.map(Output.json))); return }
        if workers.isEmpty { print("no workers connected"); return }
        Output.table(["NAME", "ID", "STATE", "RUNNING", "SLOTS", "DONE", "HEARTBEAT", "CONNECTED", "ADDRESS"], workers.map { w in
            [w.name, w.workerID, w.state, "\(w.running)", "\(w.slots)", "\(w.tasksDone)", Output.ago(w.lastHeartbeat),
             Output.ago(w.connectedAt), w.address]
        })
    }
}
