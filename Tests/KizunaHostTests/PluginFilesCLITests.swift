import Foundation
import KizunaHost
import KizunaSDK
import Testing

extension ProcessSuites {
    /// Plugin files changed under a running `kizuna run` process, as an author's build loop
    /// changes them.
    @Suite(.serialized, .timeLimit(.minutes(2))) struct PluginFilesCLITests {
        /// The author loop: load, rebuild over the same path in place (`cp`, which rewrites
        /// the file the host would have mapped), reload; the host serves on and runs the
        /// new build. Then unload, overwrite again, and stop: the host stops cleanly.
        @Test func aBuildCopiedOverALoadedLibraryIsReloadedAndNeverCrashesTheHost() throws {
            let directory = Fixtures.temporaryDirectory()
            let plugins = "\(directory)/plugins"
            try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
            let library = "\(plugins)/libMine.so"
            try FileManager.default.copyItem(atPath: Fixtures.library("FixtureTransport"), toPath: library)
            Fixtures.writeManifest(in: plugins, name: "mine", kind: .transport, library: "libMine.so")
            Fixtures.writeManifest(in: plugins, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
            let socket = "\(directory)/control.sock"
            let host = try BackgroundCLI(["run", "--plugins-dir", plugins, "--socket", socket, "--state-dir", "\(directory)/state", "--quiet"])
            defer { _ = host.terminate() }
            #expect(host.waitForLine(containing: "host running").last?.contains("2 plugin(s)") == true)

            func info() throws -> ListedPlugin {
                let outcome = try CLI.run(["plugins", "info", "mine", "--json", "--socket", socket])
                return try JSONDecoder().decode(ListedPlugin.self, from: Data(outcome.stdout.utf8))
            }
            let first = try info()
            #expect(first.sha256 == (try Fixtures.sha256(ofFile: Fixtures.library("FixtureTransport"))))
            #expect(first.image?.hasPrefix("\(directory)/state/images/") == true)

            // `cp` keeps the inode and rewrites its bytes: what crashed a host that mapped it.
            try overwriteInPlace(library, with: Fixtures.library("FixtureFaultyTransport"))
            let reload = try CLI.run(["plugins", "reload", "mine", "--socket", socket])
            #expect(reload.status == 0, "\(reload.stderr)")
            let second = try info()
            #expect(second.sha256 == (try Fixtures.sha256(ofFile: Fixtures.library("FixtureFaultyTransport"))))
            #expect(second.state == "running" && second.image != first.image)
            let status = try CLI.run(["status", "--socket", socket])
            #expect(status.status == 0 && status.stdout.contains("2 running"), "\(status.stdout)")

            #expect(try CLI.run(["plugins", "unload", "mine", "--socket", socket]).status == 0)
            try overwriteInPlace(library, with: Fixtures.library("FixtureTransport"))
            #expect(host.terminate() == 0)
            #expect(host.waitForLine(containing: "kizuna: stopped").last?.contains("kizuna: stopped") == true)
        }

        /// A second start with the same state directory reuses the copies and remembered
        /// probe results; a refused library stays listed as blocked, with its reason.
        @Test func aBlockedLibraryIsListedWithItsReason() throws {
            let directory = Fixtures.temporaryDirectory()
            try PluginProbeTests.buildLibrary(
                "aborts", "#include <stdlib.h>\n__attribute__((constructor)) static void start(void) { abort(); }\n" + PluginProbeTests.entry, in: directory)
            Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
            let socket = "\(directory)/control.sock"
            for start in 1 ... 2 {
                let host = try BackgroundCLI(["run", "--plugins-dir", directory, "--socket", socket, "--state-dir", "\(directory)/state", "--quiet"])
                defer { _ = host.terminate() }
                let lines = host.waitForLine(containing: "host running")
                let refusal = lines.first { $0.contains("plugin 'aborts'") } ?? ""
                #expect(refusal.contains("crashed when it was opened, with signal 6 (SIGABRT"), "\(lines)")
                #expect(refusal.contains("remembered from an earlier probe") == (start == 2), "\(refusal)")
                let table = try CLI.run(["plugins", "list", "--socket", socket])
                let row = table.stdout.split(separator: "\n").first { $0.hasPrefix("aborts ") } ?? ""
                #expect(row.contains(" blocked "), "\(table.stdout)")
                #expect(table.stdout.contains("aborts: blocked: crashed when it was opened"), "\(table.stdout)")
                #expect(table.stdout.split(separator: "\n").first { $0.hasPrefix("finder ") }?.contains(" running ") == true)
            }
        }

        /// A state directory others can write (where the host keeps the library copies it
        /// maps) is refused at start with the fix; a missing one is created owner-only.
        @Test func aStateDirectoryOthersCanWriteIsRefused() throws {
            let directory = Fixtures.temporaryDirectory()
            let shared = "\(directory)/shared-state"
            try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o777])
            let refused = try CLI.run(["run", "--plugins-dir", directory, "--socket", "\(directory)/h.sock", "--state-dir", shared])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("the state directory \(shared) can be written by others (mode 777); make it owner-only with `chmod 700 \(shared)`"), "\(refused.stderr)")

            let fresh = "\(directory)/new/state"
            let host = try BackgroundCLI(["run", "--plugins-dir", directory, "--socket", "\(directory)/h.sock", "--state-dir", fresh, "--quiet"])
            defer { _ = host.terminate() }
            #expect(host.waitForLine(containing: "host running").last?.contains("host running") == true)
            let attributes = try FileManager.default.attributesOfItem(atPath: fresh)
            #expect((attributes[.posixPermissions] as? Int) == 0o700)
        }

        func overwriteInPlace(_ path: String, with source: String) throws {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: try Data(contentsOf: URL(fileURLWithPath: source)))
            try handle.close()
        }
    }
}
