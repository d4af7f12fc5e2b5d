// swift-tools-version: 6.0
// Micro-benchmarks for Cairn's hot paths, in a nested package so they never slow the main build.
//   swift run -c release --package-path scripts/microbench cairn-microbench [--redis redis://127.0.0.1:6379]
import PackageDescription

let package = Package(
    name: "cairn-microbench",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "cairn-microbench",
            dependencies: [
                .product(name: "CairnKit", package: "cairn"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
