import ArgumentParser
import CairnCLI

/// The `cairn` executable: every command lives in CairnCLI.
@main
enum CairnExecutable {
    static func main() async {
        await Cairn.main()
    }
}
