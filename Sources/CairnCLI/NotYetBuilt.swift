import ArgumentParser
import CairnClient
import CairnCore
import CairnGraph
import CairnProtocol
import Foundation

/// Commands from the design that are not built yet: they say so instead of "unknown command".
enum NotYetBuilt {
    static let names = ["export": "exporting a run", "import": "importing a run", "cleanup": "retention cleanup",
                        "verify": "verifying stored checksums"]
}

protocol NotBuiltCommand: AsyncParsableCommand {
    static var name: String { get }
}

extension NotBuiltCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: name, abstract: "\(NotYetBuilt.names[name] ?? name) (not built yet).", shouldDisplay: false)
    }

    mutating func run() async throws {
        FileHandle.standardError.write(Data("cairn \(Self.name): \(NotYetBuilt.names[Self.name] ?? Self.name) is not built yet in this version of Cairn.\n".utf8))
        throw ExitCode(1)
    }
}

struct Export: NotBuiltCommand {
    static let name = "export"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}

struct Import: NotBuiltCommand {
    static let name = "import"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}

struct Cleanup: NotBuiltCommand {
    static let name = "cleanup"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}

struct Verify: NotBuiltCommand {
    static let name = "verify"
    @Argument(parsing: .allUnrecognized) var rest: [String] = []
}
