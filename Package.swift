// swift-tools-version: 6.1
//
// The Kizuna host package: host library, `kizuna` CLI, built-in plugins, examples and
// benchmarks. Everything that crosses the host/plugin boundary comes from the one
// dynamic `KizunaSDK` product of ./plugin-sdk (DESIGN.md facts 1 and 2): packages such
// as swift-log and swift-metrics are dependencies of the SDK only, never of this package.
import PackageDescription

let sdk = Target.Dependency.product(name: "KizunaSDK", package: "plugin-sdk")

/// Plugins the tests load: real shared libraries, built with the package (`swift test`
/// builds every product). Each lives in Tests/Fixtures/NAME.
let fixturePlugins = [
    "FixtureDiscovery", "FixtureTransport", "FixtureFileTransfer", "FixtureStreaming", "FixtureThrowing",
    "FixtureIgnoresShutdown", "FixtureNeverReturns", "FixtureWrongABI", "FixtureNoEntry", "FixtureOldSDK",
    "FixtureOtherCompiler", "FixtureForeignSDK", "FixtureCrashesInRun", "FixtureLeaksTasks", "FixtureFaultyTransport",
    "FixtureNeverReady", "FixtureHogsBlockingPool",
]

/// The built-in plugins: one folder each in Plugins/, one dynamic library each, with a
/// manifest in manifests/. Only these link SwiftNIO and swift-crypto of their own; no type
/// of those packages crosses the plugin boundary.
let builtinPlugins: [(product: String, folder: String, dependencies: [Target.Dependency])] = [
    (
        "KizunaTransportTCP", "TransportTCP",
        [
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Crypto", package: "swift-crypto"), "KizunaBuiltinSupport",
        ]
    ),
    ("KizunaDiscoveryMDNS", "DiscoveryMDNS", ["KizunaBuiltinSupport"]),
    ("KizunaFileTransfer", "FileTransfer", [.product(name: "Crypto", package: "swift-crypto"), "CKizunaFiles", "KizunaBuiltinSupport"]),
    ("KizunaStreaming", "Streaming", ["KizunaBuiltinSupport"]),
]

let package = Package(
    name: "kizuna",
    products: [
        .library(name: "KizunaHost", targets: ["KizunaHost"]),
        .executable(name: "kizuna", targets: ["KizunaCLI"]),
        .executable(name: "kizuna-runtime-demo", targets: ["RuntimeDemo"]),
        .executable(name: "kizuna-bench", targets: ["RuntimeBenchmarks"]),
        .executable(name: "kizuna-host-bench", targets: ["HostBenchmarks"]),
    ],
    dependencies: [
        .package(path: "plugin-sdk"),
        .package(path: "plugin-sdk/TestKit"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        .target(name: "CKizunaHost"),
        .target(name: "CKizunaFiles"),
        // What the built-in plugins share (checking their settings); linked into each.
        .target(name: "KizunaBuiltinSupport", dependencies: [sdk], path: "Plugins/Support"),
        .systemLibrary(name: "CFFI", pkgConfig: "libffi", providers: [.apt(["libffi-dev"])]),
        .target(
            name: "KizunaHost",
            dependencies: [
                sdk, .product(name: "KizunaPluginTestKit", package: "TestKit"), "CKizunaHost", "CFFI", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"), .product(name: "SwiftASN1", package: "swift-asn1"),
            ]),
        .executableTarget(
            name: "KizunaCLI",
            dependencies: [
                "KizunaHost", sdk, .product(name: "KizunaPluginTestKit", package: "TestKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "RuntimeDemo", dependencies: [sdk], path: "Examples/RuntimeDemo"),
        .executableTarget(name: "RuntimeBenchmarks", dependencies: [sdk], path: "Benchmarks/RuntimeBenchmarks"),
        .executableTarget(name: "HostBenchmarks", dependencies: ["KizunaHost", sdk], path: "Benchmarks/HostBenchmarks"),
        .testTarget(name: "KizunaSDKTests", dependencies: [sdk]),
        .testTarget(
            name: "KizunaHostTests",
            dependencies: [
                "KizunaHost", "CKizunaHost", sdk, .product(name: "KizunaPluginTestKit", package: "TestKit"), .product(name: "Crypto", package: "swift-crypto"),
                // A hostile peer with a certificate of its own, and a relay in the middle.
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
    ]
)

package.products += builtinPlugins.map { .library(name: $0.product, type: .dynamic, targets: [$0.product]) }
package.targets += builtinPlugins.map { .target(name: $0.product, dependencies: [sdk] + $0.dependencies, path: "Plugins/\($0.folder)") }
package.products += fixturePlugins.map { .library(name: $0, type: .dynamic, targets: [$0]) }
package.targets += fixturePlugins.map { name in
    let testKit = Target.Dependency.product(name: "KizunaPluginTestKit", package: "TestKit")
    return .target(name: name, dependencies: name == "FixtureFaultyTransport" ? [sdk, testKit] : [sdk], path: "Tests/Fixtures/\(name)")
}

for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("NonisolatedNonsendingByDefault"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    target.swiftSettings = settings
}
