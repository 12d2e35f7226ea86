// swift-tools-version: 6.1
//
// The Kizuna plugin SDK: the one contract the host and every plugin compile
// against. Its product is a *dynamic* library so that a process holds exactly
// one copy of every SDK type, and of every package whose types cross the
// host/plugin boundary (swift-log, swift-metrics): those are dependencies of
// this package only, re-exported from `KizunaSDK`. See ../../shared/DESIGN.md,
// facts 1 and 2.
import PackageDescription

let package = Package(
    name: "plugin-sdk",
    products: [
        .library(name: "KizunaSDK", type: .dynamic, targets: ["KizunaSDK"])
    ],
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
                "CKizunaRuntime",
                "CKizunaPluginABI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
    ]
)

for target in package.targets where target.type != .system {
    guard !target.name.hasPrefix("C") else { continue }
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    settings.append(.enableUpcomingFeature("NonisolatedNonsendingByDefault"))
    target.swiftSettings = settings
}
