import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// A plugin author's whole path, outside this repository: `kizuna plugin new`, the
/// package's own `swift test` (the conformance suite through the test kit), build.sh,
/// `kizuna conformance` on the built library, then into a running host's plugins
/// directory: load, use, unload.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(15))) struct PluginAuthorTests {
        /// Runs `command` in `folder` through bash; its status and output.
        func shell(_ command: String, in folder: String) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", command + " 2>&1"]
            process.currentDirectoryURL = URL(fileURLWithPath: folder)
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, text)
        }

        @Test func badGeneratorInputIsRefusedClearly() throws {
            let work = Fixtures.temporaryDirectory()
            let badName = try CLI.run(["plugin", "new", "Bad_Name", "--kind", "discovery", "--output", "\(work)/x"])
            #expect(badName.status != 0)
            #expect(badName.stderr.contains("'Bad_Name' is not a plugin name"))
            let badKind = try CLI.run(["plugin", "new", "radio", "--kind", "radio", "--output", "\(work)/x"])
            #expect(badKind.status != 0)
            #expect(badKind.stderr.contains("'radio' is not a plugin kind; use discovery, transport, file-transfer, streaming"))
            let badSDK = try CLI.run(["plugin", "new", "radio", "--kind", "streaming", "--output", "\(work)/x", "--sdk", work])
            #expect(badSDK.status != 0)
            #expect(badSDK.stderr.contains("is not the Kizuna plugin-sdk package"))
            try FileManager.default.createDirectory(atPath: "\(work)/taken", withIntermediateDirectories: true)
            let taken = try CLI.run(["plugin", "new", "radio", "--kind", "streaming", "--output", "\(work)/taken"])
            #expect(taken.status != 0)
            #expect(taken.stderr.contains("already exists"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(work)/taken").isEmpty)
        }

        @Test func aGeneratedPluginBuildsPassesConformanceAndRunsInAHost() throws {
            let work = Fixtures.temporaryDirectory()
            #expect(!work.hasPrefix(BuiltinHost.repository))
            // The README's install step (the debug build this run made), then `kizuna` from
            // PATH, as an author who never looks into the checkout has it.
            let installed = try shell("./install.sh --debug --no-build --prefix \(work)/prefix", in: BuiltinHost.repository)
            #expect(installed.status == 0, "\(installed.output)")
            #expect(installed.output.contains("installed kizuna (debug) in \(work)/prefix/lib/kizuna"), "\(installed.output)")
            let path = "PATH=\(work)/prefix/bin:$PATH"
            let generated = try shell("\(path) kizuna plugin new lan-beacon --kind discovery", in: work)
            #expect(generated.status == 0, "\(generated.output)")
            #expect(generated.output.contains("against \(work)/prefix/lib/kizuna/plugin-sdk"), "\(generated.output)")
            #expect(generated.output.contains("&& kizuna conformance dist/lan-beacon.toml && kizuna plugin install dist/lan-beacon.toml"), "\(generated.output)")
            let package = "\(work)/lan-beacon"
            for file in ["Package.swift", "Sources/LanBeacon/LanBeacon.swift", "Tests/LanBeaconTests/ConformanceTests.swift", "lan-beacon.toml", "build.sh"] {
                #expect(FileManager.default.fileExists(atPath: "\(package)/\(file)"), "\(file)")
            }

            // The author's own tests: the conformance suite in process.
            let tested = try shell("swift test", in: package)
            #expect(tested.status == 0, "\(tested.output.suffix(3000))")
            #expect(tested.output.contains("Test conformance() passed"))

            // The documented build: library and manifest with its sha256.
            let built = try shell("./build.sh debug", in: package)
            #expect(built.status == 0, "\(built.output.suffix(3000))")
            let manifest = try String(contentsOfFile: "\(package)/dist/lan-beacon.toml", encoding: .utf8)
            let digest = try #require(manifest.firstMatch(of: /sha256 = "([0-9a-f]{64})"/).map { String($0.1) })
            #expect(digest == (try Fixtures.sha256(ofFile: "\(package)/dist/libLanBeacon.so")))

            // The suite against the built library, each check in its own process.
            // Its transport is the built-in one that came with the install.
            let checked = try shell("\(path) kizuna conformance dist/lan-beacon.toml --plugins-dir \(work)/no-plugins", in: package)
            #expect(checked.status == 0, "\(checked.output)")
            #expect(checked.output.contains("PASSED    discovery.announces-and-withdraws"), "\(checked.output)")
            #expect(!checked.output.contains("SKIPPED"), "\(checked.output)")

            // Into a running host: load, use, unload.
            let plugins = "\(work)/plugins"
            try FileManager.default.createDirectory(atPath: plugins, withIntermediateDirectories: true)
            let socket = "\(work)/host.sock"
            let host = try BackgroundCLI(["run", "--plugins-dir", plugins, "--socket", socket, "--state-dir", "\(plugins)/state"], limit: 120)
            defer { _ = host.terminate() }
            #expect(host.waitForLine(containing: "host running").last?.contains("0 plugin(s)") == true)
            let put = try shell("\(path) kizuna plugin install dist/lan-beacon.toml --plugins-dir \(plugins)", in: package)
            #expect(put.status == 0, "\(put.output)")
            #expect(put.output.contains("installed lan-beacon (discovery 0.1.0) in \(plugins): libLanBeacon.so, lan-beacon.toml"), "\(put.output)")
            let loaded = try CLI.run(["plugins", "load", "lan-beacon", "--socket", socket])
            #expect(loaded.status == 0, "\(loaded.stderr)")
            #expect(loaded.stdout.contains("loaded lan-beacon (discovery 0.1.0): running"))
            let info = try JSONDecoder().decode(ListedPlugin.self, from: Data(try CLI.run(["plugins", "info", "lan-beacon", "--json", "--socket", socket]).stdout.utf8))
            #expect(info.sha256 == digest)
            #expect(host.waitForLine(containing: "peer found: aiko").last?.contains("peer found: aiko") == true)
            let peers = try JSONDecoder().decode([Peer].self, from: Data(try CLI.run(["peers", "--json", "--socket", socket]).stdout.utf8))
            #expect(peers.map(\.id) == ["aiko"])
            let unloaded = try CLI.run(["plugins", "unload", "lan-beacon", "--socket", socket])
            #expect(unloaded.stdout.contains("unloaded lan-beacon: stopped"), "\(unloaded.stdout)\(unloaded.stderr)")
        }
    }
}
