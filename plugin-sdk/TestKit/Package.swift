// swift-tools-version: 6.1
//
// The plugin test kit: the conformance suite, an in-process test host and an in-process
// transport, for plugin authors' own `swift test`. It is a package of its own so that it
// depends on the KizunaSDK *product* (the one dynamic library): a target of the SDK's own
// package would link the SDK's code into every test and plugin that uses the kit, a second
// copy of every SDK type (DESIGN.md, fact 1).
import PackageDescription

let package = Package(
    name: "TestKit",
    products: [
        .library(name: "KizunaPluginTestKit", targets: ["KizunaPluginTestKit"])
    ],
    dependencies: [
        .package(path: "..")
    ],
    targets: [
        .target(
            name: "KizunaPluginTestKit",
            dependencies: [.product(name: "KizunaSDK", package: "plugin-sdk")],
            swiftSettings: [
                .enableUpcomingFeature("MemberImportVisibility"),
                .enableUpcomingFeature("InternalImportsByDefault"),
                .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
            ])
    ]
)
