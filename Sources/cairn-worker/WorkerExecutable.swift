import ArgumentParser
import CairnWorkerMain

/// The `cairn-worker` executable: the command lives in CairnWorkerMain (the `cairn` binary runs it too, when called by this name).
@main
enum WorkerExecutable {
    static func main() async {
        await WorkerCommand.main()
    }
}
