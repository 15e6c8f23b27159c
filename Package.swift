// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "failoverd",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "FailoverEngine", targets: ["FailoverEngine"]),
        .executable(name: "failoverd", targets: ["failoverd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // libpq from the system (libpq-dev): connection strings, passfiles and
        // certificates follow libpq conventions because they are libpq's own.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .target(
            name: "FailoverEngine",
            dependencies: [
                "CLibPQ",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "failoverd",
            dependencies: [
                "FailoverEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What the tests and the benchmarks share, outside the engine: a real etcd cluster on loopback.
        .target(
            name: "FailoverdTestSupport",
            dependencies: ["FailoverEngine"]
        ),
        .executableTarget(
            name: "failoverd-bench",
            dependencies: [
                "FailoverEngine",
                "FailoverdTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "benchmarks"
        ),
        .testTarget(
            name: "FailoverEngineTests",
            dependencies: ["FailoverEngine", "FailoverdTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
