// swift-tools-version: 6.1
//
// Test fixture, built by the tests on their own (not part of the host package): a plugin
// that compiles the SDK's sources into itself, i.e. carries its own copy of the SDK — the
// mistake DESIGN.md fact 1 describes. The host must refuse it before running any of it.
import PackageDescription

let package = Package(
    name: "OwnSDKCopy",
    products: [.library(name: "FixtureOwnSDKCopy", type: .dynamic, targets: ["FixtureOwnSDKCopy"])],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .target(name: "CKizunaRuntime"),
        .target(name: "CKizunaPluginABI"),
        .target(
            name: "KizunaSDK",
            dependencies: [
                "CKizunaRuntime", "CKizunaPluginABI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: [
                .enableUpcomingFeature("MemberImportVisibility"), .enableUpcomingFeature("InternalImportsByDefault"),
                .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
            ]),
        .target(
            name: "FixtureOwnSDKCopy", dependencies: ["KizunaSDK"],
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]),
    ]
)
