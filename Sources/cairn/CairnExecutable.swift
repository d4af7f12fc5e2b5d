import ArgumentParser
import CairnCLI
import CairnCoordinatorMain
import CairnWorkerMain

/// The `cairn` executable: every command lives in CairnCLI. Called as `cairn-coordinator` or
/// `cairn-worker` (a link to this binary, as the Docker image ships them), it is that program:
/// one binary carries the Swift runtime once instead of three times.
@main
enum CairnExecutable {
    static func main() async {
        switch CommandLine.arguments.first.map({ $0.split(separator: "/").last.map(String.init) ?? $0 }) {
        case "cairn-coordinator": await CoordinatorMain.main()
        case "cairn-worker": await WorkerCommand.main()
        default: await Cairn.main()
        }
    }
}
