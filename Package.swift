// swift-tools-version: 6.1
//
// The Kizuna host package: host library, `kizuna` CLI, built-in plugins, examples and
// benchmarks. Everything that crosses the host/plugin boundary comes from the one
// dynamic `KizunaSDK` product of ./plugin-sdk (DESIGN.md facts 1 and 2): packages such
// as swift-log and swift-metrics are dependencies of the SDK only, never of this package.
import PackageDescription

let sdk = Target.Dependency.product(name: "KizunaSDK", package: "plugin-sdk")

let package = Package(
    name: "kizuna",
    products: [
        .executable(name: "kizuna-runtime-demo", targets: ["RuntimeDemo"]),
        .executable(name: "kizuna-bench", targets: ["RuntimeBenchmarks"]),
    ],
    dependencies: [
        .package(path: "plugin-sdk")
    ],
    targets: [
        .executableTarget(name: "RuntimeDemo", dependencies: [sdk], path: "Examples/RuntimeDemo"),
        .executableTarget(name: "RuntimeBenchmarks", dependencies: [sdk], path: "Benchmarks/RuntimeBenchmarks"),
        .testTarget(name: "KizunaSDKTests", dependencies: [sdk]),
    ]
)

for target in package.targets {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("NonisolatedNonsendingByDefault"))
    target.swiftSettings = settings
}
