// The files `kizuna plugin new` writes that do not depend on the plugin's kind.
// Placeholders: __NAME__ (the plugin's name), __TYPE__ (its Swift type and product),
// __KIND__ (its kind), __SDK__ (the plugin-sdk package's path).

enum PackageTemplates {
    static let packageSwift = #"""
    // swift-tools-version: 6.1
    // A Kizuna plugin: a dynamic library built against the KizunaSDK product, which the
    // host loads with dlopen as its manifest (__NAME__.toml) declares.
    import PackageDescription

    let package = Package(
        name: "__NAME__",
        products: [
            .library(name: "__TYPE__", type: .dynamic, targets: ["__TYPE__"])
        ],
        dependencies: [
            .package(path: "__SDK__"),
            .package(path: "__SDK__/TestKit"),
        ],
        targets: [
            .target(name: "__TYPE__", dependencies: [.product(name: "KizunaSDK", package: "plugin-sdk")]),
            .testTarget(
                name: "__TYPE__Tests",
                dependencies: [
                    "__TYPE__",
                    .product(name: "KizunaSDK", package: "plugin-sdk"),
                    .product(name: "KizunaPluginTestKit", package: "TestKit"),
                ]),
        ]
    )

    """#

    static let manifest = #"""
    # The manifest the Kizuna host reads to load this plugin. build.sh copies it to dist/
    # with the library's sha256 filled in.
    schema = 1
    name = "__NAME__"
    version = "0.1.0"
    kind = "__KIND__"
    library = "lib__TYPE__.so"
    # sha256 = "filled in by build.sh"
    description = "A __KIND__ plugin"
    license = "Apache-2.0"
    authors = ["You"]
    __REQUIRES__
    [settings]
    __SETTINGS__
    """#

    static let buildScript = #"""
    #!/usr/bin/env bash
    # Builds the plugin and puts the library and its manifest, with the library's sha256
    # filled in, into dist/: drop both into a Kizuna plugins directory.
    #   ./build.sh            release build
    #   ./build.sh debug      debug build (shares its build with `swift test`)
    set -euo pipefail
    cd "$(dirname "$0")"
    configuration=${1:-release}
    swift build -c "$configuration" --product __TYPE__
    mkdir -p dist
    cp ".build/$configuration/lib__TYPE__.so" dist/
    sum=$(sha256sum dist/lib__TYPE__.so | cut -d' ' -f1)
    sed "s/^# sha256 = .*/sha256 = \"$sum\"/" __NAME__.toml > dist/__NAME__.toml
    echo "built dist/lib__TYPE__.so and dist/__NAME__.toml (sha256 $sum)"

    """#

    static let conformanceTest = #"""
    import KizunaPluginTestKit
    import KizunaSDK
    import Testing
    @testable import __TYPE__

    /// The Kizuna conformance suite, in process: the same checks `kizuna conformance`
    /// runs against the built library, each in a child process of its own.
    @Test(.timeLimit(.minutes(5))) func conformance() async throws {
        let subject = PluginSubject(name: "__NAME__", kind: .__KINDCASE__, settings: __TESTSETTINGS____TESTTRANSPORT__) {
            .__KINDCASE__(__TYPE__())
        }
        let results = await Conformance.run(subject)
        #expect(!results.isEmpty)
        for result in results {
            #expect(result.status.isSuccess, "\(result)")
        }
    }

    """#

    static let readme = #"""
    # __NAME__

    A Kizuna __KIND__ plugin.

    ```sh
    swift test          # the conformance suite, in process
    ./build.sh          # dist/lib__TYPE__.so and dist/__NAME__.toml, sha256 filled in
    kizuna conformance dist/__NAME__.toml     # the suite against the built library
    cp dist/* ~/.kizuna/plugins/ && kizuna plugins load __NAME__
    ```

    The plugin is in `Sources/__TYPE__/__TYPE__.swift`; its settings are in `__NAME__.toml`.

    """#

    static let gitignore = """
    .build/
    dist/
    Package.resolved

    """
}
