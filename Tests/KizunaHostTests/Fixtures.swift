import Crypto
import Foundation
import Glibc
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

    /// A fresh temporary folder, inside this test run's own folder, which is removed when
    /// the run exits, whether its tests passed or failed (and, if a run was killed, by
    /// the next run).
    static func temporaryDirectory() -> String {
        let path = runDirectory + "/" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// `/tmp/kizuna-tests-PID`: everything the tests of this process make on disk.
    static let runDirectory: String = {
        let base = NSTemporaryDirectory()
        // Folders of earlier runs whose process is gone (killed before it could clean up).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: base)) ?? [] where name.hasPrefix("kizuna-tests-") {
            if let pid = Int32(name.dropFirst("kizuna-tests-".count)), kill(pid, 0) != 0, errno == ESRCH {
                try? FileManager.default.removeItem(atPath: base + name)
            }
        }
        let path = base + "kizuna-tests-\(getpid())"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "kizuna-tests-\(getpid())") }
        // Hosts keep their state (private library copies, probe results) here too, in
        // this process and in every `kizuna` it starts, never in the user's own.
        setenv("XDG_STATE_HOME", path + "/state", 1)
        return path
    }()

    /// The SHA-256 of a file, lowercase hex (as `sha256sum` prints it).
    static func sha256(ofFile path: String) throws -> String {
        SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))).map { String(format: "%02x", $0) }.joined()
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
