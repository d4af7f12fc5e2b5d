import ArgumentParser
import CairnCoordinatorMain

/// The `cairn-coordinator` executable: the command lives in CairnCoordinatorMain (the `cairn` binary runs it too, when called by this name).
@main
enum CoordinatorExecutable {
    static func main() async {
        await CoordinatorMain.main()
    }
}
