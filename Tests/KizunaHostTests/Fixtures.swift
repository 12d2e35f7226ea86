import Foundation
import KizunaHost
import KizunaSDK

/// Locates the fixture plugins the package builds and writes manifests for them.
enum Fixtures {
    /// The folder the test binary, libKizunaSDK.so and the fixture libraries were built into.
    static let buildDirectory: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }()

    /// The path of fixture library `name` (for example "FixtureDiscovery").
    static func library(_ name: String) -> String { "\(buildDirectory)/lib\(name).so" }

    /// A fresh temporary folder.
    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "kizuna-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes a manifest for `library` into `directory` and returns its path.
    @discardableResult
    static func writeManifest(
        in directory: String, name: String, kind: PluginKind, library: String, extra: String = ""
    ) -> String {
        let path = "\(directory)/\(name).toml"
        let text = """
            schema = 1
            name = "\(name)"
            version = "1.0.0"
            kind = "\(kind.rawValue)"
            library = "\(library)"
            \(extra)
            """
        try! text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A manifest for a fixture library, written into a fresh temporary folder.
    static func manifest(_ fixture: String, name: String, kind: PluginKind, extra: String = "") throws -> PluginManifest {
        let directory = temporaryDirectory()
        return try PluginManifest(contentsOf: writeManifest(in: directory, name: name, kind: kind, library: library(fixture), extra: extra))
    }
}
