// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "vitalsd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vitalsd", targets: ["vitalsd"]),
        .executable(name: "format-fuzz", targets: ["format-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swiftcsv/SwiftCSV", from: "0.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        // Already in the graph through Hummingbird; named for NIOThreadPool and the TLS configuration.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // The C library, through Debian's libmosquitto-dev. Only MQTTClient imports it.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        .target(
            name: "MQTTClient",
            dependencies: [
                "CMosquitto",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // glibc's mallopt (malloc.h), for the daemon's arena limit.
        .target(name: "CGlibcMalloc"),
        .target(name: "VitalsDomain", swiftSettings: strict),
        // The clinical rules as pure functions: readings, state, policy and a time in, task changes out.
        .target(name: "VitalsAlerting", dependencies: ["VitalsDomain"], swiftSettings: strict),
        // Device and standard payload formats (SenML, FHIR, vendor webhooks): pure decoders.
        .target(name: "VitalsFormats", dependencies: ["VitalsDomain"], swiftSettings: strict),
        // Seeded generation and mutation of payloads, for the format-fuzz run and its test.
        .target(name: "FormatFuzzing", dependencies: ["VitalsFormats", "VitalsDomain"], swiftSettings: strict),
        .executableTarget(name: "format-fuzz", dependencies: ["FormatFuzzing", "VitalsDomain"], swiftSettings: strict),
        .target(
            name: "VitalsStore",
            dependencies: [
                "VitalsDomain", "VitalsFormats", "VitalsAlerting",
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for the statements bound column by column (RawStatement.swift).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // FHIR R4 resources from stored rows, search parameters and SMART scopes: pure, no I/O.
        .target(name: "VitalsFHIR", dependencies: ["VitalsDomain"], swiftSettings: strict),
        // The FHIR API (routes, SMART Backend Services tokens, access log) and the FHIR push channel.
        .target(
            name: "VitalsFHIRServer",
            dependencies: [
                "VitalsFHIR", "VitalsDomain", "VitalsStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // PostgreSQL as a shared store: settings, versioned migrations, MQTT session leases with
        // epochs, and ingest batches fenced by the lease in the same transaction.
        .target(
            name: "VitalsPostgres",
            dependencies: [
                "VitalsDomain", "VitalsAlerting",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VitalsConfig",
            dependencies: ["VitalsDomain", "VitalsFormats", "Yams"],
            swiftSettings: strict
        ),
        // The care manager's workspace: sign-in, sessions, the worklist and task pages, served over
        // HTTP(S) by Hummingbird with server-rendered Mustache templates.
        .target(
            name: "VitalsWeb",
            dependencies: [
                "VitalsDomain", "VitalsStore", "VitalsConfig",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "VitalsDaemon",
            dependencies: [
                "MQTTClient", "VitalsDomain", "VitalsStore", "VitalsConfig", "VitalsFormats", "VitalsFHIRServer", "VitalsWeb", "VitalsAlerting",
                "VitalsPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                "SwiftCSV",
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "vitalsd",
            dependencies: [
                "VitalsDaemon", "VitalsStore", "VitalsDomain", "VitalsConfig", "MQTTClient", "VitalsFHIRServer", "VitalsWeb",
                "VitalsPostgres",
                .target(name: "CGlibcMalloc", condition: .when(platforms: [.linux])),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Live-latency load generator for scripts/bench; never part of the test suite.
        .executableTarget(
            name: "vitalsd-bench",
            dependencies: [
                "MQTTClient",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The storage half of a backlog drain on SQLite and on PostgreSQL, for scripts/bench-postgres.
        .executableTarget(
            name: "vitalsd-store-bench",
            dependencies: [
                "VitalsStore", "VitalsPostgres", "VitalsAlerting", "VitalsDomain",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "VitalsDomainTests", dependencies: ["VitalsDomain"], swiftSettings: strict),
        .testTarget(name: "VitalsFHIRTests", dependencies: ["VitalsFHIR", "VitalsDomain"], swiftSettings: strict),
        .testTarget(name: "VitalsAlertingTests", dependencies: ["VitalsAlerting", "VitalsDomain"], swiftSettings: strict),
        .testTarget(
            name: "VitalsFormatsTests",
            dependencies: ["VitalsFormats", "VitalsDomain", "FormatFuzzing"],
            resources: [.copy("Fixtures")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "VitalsStoreTests",
            dependencies: ["VitalsStore", "VitalsDomain", "VitalsConfig", "VitalsFormats", "VitalsAlerting", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strict
        ),
        // The tests' throw-away PostgreSQL cluster, shared by the storage and the integration tests.
        .target(
            name: "PostgresTestSupport",
            dependencies: [
                "VitalsPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/PostgresTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "VitalsPostgresTests",
            dependencies: [
                "VitalsPostgres", "VitalsDomain", "VitalsStore", "VitalsAlerting", "PostgresTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "VitalsDaemon", "VitalsStore", "VitalsDomain", "VitalsConfig", "VitalsFormats", "MQTTClient",
                "VitalsFHIR", "VitalsFHIRServer", "VitalsWeb", "VitalsPostgres", "PostgresTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: strict
        ),
    ]
)
