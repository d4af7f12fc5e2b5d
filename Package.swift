// swift-tools-version: 6.2
import Foundation
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "cairn",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cairn-coordinator", targets: ["cairn-coordinator"]),
        .executable(name: "cairn-worker", targets: ["cairn-worker"]),
        .executable(name: "cairn", targets: ["cairn"]),
        .library(name: "CairnClient", targets: ["CairnClient"]),
        .library(name: "CairnWorker", targets: ["CairnWorker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // C libraries, wrapped as system libraries with a thin safe layer on top.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),

        // Values, hashing and compression shared by every module.
        .target(
            name: "CairnCore",
            dependencies: [
                "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Graph model: channels, reducers, nodes, edges, validation, planning, rendering.
        .target(
            name: "CairnGraph",
            dependencies: ["CairnCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // Wire protocol: frames and protobuf messages. NIOCore only.
        .target(
            name: "CairnProtocol",
            dependencies: [
                "CairnCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["cairn.proto", "PROTOCOL.md"],
            swiftSettings: swiftSettings
        ),
        // TLS for the protocol's port, its workers and clients (swift-nio-ssl): contexts from files, failures in words.
        .target(
            name: "CairnTLS",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The storage contract: the store protocol, its records, the one writer, an in-memory store.
        .target(
            name: "CairnStore",
            dependencies: [
                "CairnCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The authoritative store: one SQLite file (GRDB), migrations, checksummed rows.
        .target(
            name: "CairnSQLite",
            dependencies: [
                "CairnCore", "CairnStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The authoritative store in PostgreSQL (postgres-nio): the same records as SQLite's, for
        // coordinators that outgrow one machine.
        .target(
            name: "CairnPostgres",
            dependencies: [
                "CairnCore", "CairnStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // A Redis client over hiredis.
        .target(
            name: "CairnRedis",
            dependencies: [
                "CHiredis", "CairnCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The hot tier: Redis in front of the authoritative store.
        .target(
            name: "CairnHotTier",
            dependencies: [
                "CairnCore", "CairnStore", "CairnRedis",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP API (Hummingbird): JSON over the engine's one door, Server-Sent Events, and
        // the web dashboard (its files compiled in).
        .target(
            name: "CairnHTTP",
            dependencies: [
                "CairnCore", "CairnProtocol", "CairnCoordinator", "CairnGraph",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Dashboard"],
            swiftSettings: swiftSettings
        ),
        // Operations: the /metrics and /healthz HTTP endpoint.
        .target(
            name: "CairnOps",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CairnCoordinator",
            dependencies: [
                "CairnCore", "CairnGraph", "CairnProtocol", "CairnStore", "CairnTLS",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Builds a coordinator from configuration: the one place that knows which stores exist.
        .target(
            name: "CairnStack",
            dependencies: [
                "CairnCoordinator", "CairnCore", "CairnStore", "CairnSQLite", "CairnPostgres", "CairnRedis", "CairnHotTier",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CairnWorker",
            dependencies: [
                "CairnCore", "CairnProtocol", "CairnTLS",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CairnClient",
            dependencies: [
                "CairnCore", "CairnProtocol", "CairnTLS",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CairnTestSupport",
            dependencies: ["CairnCore", "CairnStore"],
            swiftSettings: swiftSettings
        ),
        // The coordinator's and the worker's command lines, as libraries: the `cairn` executable
        // runs either when called by that name (the image ships one binary and two links to it).
        .target(
            name: "CairnCoordinatorMain",
            dependencies: [
                "CairnCoordinator", "CairnStack", "CairnStore", "CairnHotTier", "CairnOps", "CairnCore", "CairnHTTP", "CairnTLS", "CairnProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // What a worker or a client presents to a coordinator (token, TLS files): options declared once.
        .target(
            name: "CairnOptions",
            dependencies: ["CairnCore", "CairnTLS", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CairnWorkerMain",
            dependencies: [
                "CairnWorker", "CairnOps", "CairnCore", "CairnTLS", "CairnOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "cairn-coordinator", dependencies: ["CairnCoordinatorMain", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        .executableTarget(name: "cairn-worker", dependencies: ["CairnWorkerMain", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: swiftSettings),
        // The client's commands, one file each; the `cairn` executable only runs them.
        .target(
            name: "CairnCLI",
            dependencies: [
                "CairnClient", "CairnGraph", "CairnCore", "CairnProtocol", "CairnTLS", "CairnOptions",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "cairn",
            dependencies: ["CairnCLI", "CairnCoordinatorMain", "CairnWorkerMain", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnHTTPTests",
            dependencies: ["CairnHTTP", "CairnProtocol"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnGraphTests",
            dependencies: ["CairnGraph"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnWorkerTests",
            dependencies: ["CairnWorker", "CairnProtocol", "CairnCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnCLITests",
            dependencies: ["CairnCLI", "CairnProtocol", "CairnCore", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnProtocolTests",
            dependencies: [
                "CairnProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnStoreTests",
            dependencies: ["CairnStore", "CairnSQLite", "CairnPostgres", "CairnCore", "CairnTestSupport", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "NIOPosix", package: "swift-nio"), .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnCoordinatorTests",
            dependencies: ["CairnCoordinator", "CairnCore", "CairnGraph", "CairnProtocol", "CairnStore", "CairnWorker", "CairnSQLite",
                           "CairnTestSupport", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnRedisTests",
            dependencies: ["CairnRedis", "CairnHotTier", "CairnSQLite", "CairnStore", "CairnCore", "CairnTestSupport",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CairnIntegrationTests",
            dependencies: ["CairnClient", "CairnTestSupport", "CairnProtocol", "CairnGraph",
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings
        ),
    ]
)

// Micro-benchmarks of the hot paths, only when asked for, so they never slow the main build:
//   CAIRN_MICROBENCH=1 swift run -c release cairn-microbench [--redis redis://127.0.0.1:6379]
if ProcessInfo.processInfo.environment["CAIRN_MICROBENCH"] != nil {
    package.targets.append(.executableTarget(
        name: "cairn-microbench",
        dependencies: [
            "CairnCore", "CairnGraph", "CairnProtocol", "CairnStore", "CairnSQLite", "CairnRedis", "CairnHotTier",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ],
        path: "scripts/microbench",
        swiftSettings: swiftSettings
    ))
}

// libFuzzer targets for the parsers, only when asked for (scripts/fuzz builds them with
// -sanitize=fuzzer,address into .build-fuzz): CAIRN_FUZZ=1 swift build --product cairn-fuzz …
if ProcessInfo.processInfo.environment["CAIRN_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "cairn-fuzz",
        dependencies: [
            "CairnCore", "CairnGraph", "CairnProtocol", "CairnWorker",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ],
        path: "scripts/fuzz-targets",
        swiftSettings: swiftSettings
    ))
}
