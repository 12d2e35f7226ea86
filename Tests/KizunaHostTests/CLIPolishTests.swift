import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// What a person typing commands meets: hints for typos, the version, the log kept out of
/// the way unless asked for, tables that line up whatever the script.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(2))) struct CLIPolishTests {
        @Test func aMistypedCommandGetsADidYouMean() throws {
            let typo = try CLI.run(["pluginz", "list"])
            #expect(typo.status == 64)
            #expect(typo.stderr.contains("'pluginz' is not a command of `kizuna`; did you mean `kizuna plugins`"), "\(typo.stderr)")
            let singular = try CLI.run(["plugin", "list"])
            #expect(singular.status == 64)
            #expect(singular.stderr.contains("did you mean `kizuna plugins list`?"), "\(singular.stderr)")
            let nested = try CLI.run(["plugins", "lst"])
            #expect(nested.stderr.contains("did you mean `kizuna plugins list`?"), "\(nested.stderr)")
            // Nothing close: the parser's own error, no guess.
            let far = try CLI.run(["xyzzy"])
            #expect(far.status == 64 && !far.stderr.contains("did you mean"))
            #expect(try CLI.run(["trasnfers"]).stderr.contains("did you mean `kizuna transfers`?"))
        }

        @Test func versionAndAMissingPluginsDirectory() throws {
            let version = try CLI.run(["--version"])
            #expect(version.status == 0 && version.stdout.contains(/^kizuna \d+\.\d+\.\d+ \(KizunaSDK \d+\.\d+\.\d+, Swift \d+\.\d+\.\d+\)\n$/) && version.stdout.contains("KizunaSDK \(SDKInfo.version)"), "\(version.stdout)")
            let missing = Fixtures.temporaryDirectory() + "/does-not-exist"
            let run = try CLI.run(["run", "--plugins-dir", missing, "--socket", "\(missing).sock"])
            #expect(run.status == 1)
            #expect(run.stderr.contains("the plugins directory \(missing) does not exist or is not a folder; create it (`mkdir -p \(missing)`)"), "\(run.stderr)")
        }

        /// `kizuna plugin install` makes the folder, refuses a library that is not the one the
        /// manifest pins or not beside it, and leaves nothing behind when it refuses;
        /// `plugins info` on those manifests, with no host, tells the same.
        @Test func pluginInstallChecksWhatItCopies() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let dist = "\(work)/dist"
            try FileManager.default.createDirectory(atPath: dist, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Fixtures.library("FixtureDiscovery"), toPath: "\(dist)/libFixtureDiscovery.so")
            let digest = try Fixtures.sha256(ofFile: "\(dist)/libFixtureDiscovery.so")
            _ = Fixtures.writeManifest(in: dist, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so", extra: "sha256 = \"\(digest)\"")
            let target = "\(work)/not/yet/plugins"

            let installed = try CLI.run(["plugin", "install", "\(dist)/finder.toml", "--plugins-dir", target])
            #expect(installed.status == 0, "\(installed.stderr)")
            #expect(installed.stdout.contains("installed finder (discovery 1.0.0) in \(target): libFixtureDiscovery.so, finder.toml"))
            #expect(try Fixtures.sha256(ofFile: "\(target)/libFixtureDiscovery.so") == digest)
            #expect(try FileManager.default.contentsOfDirectory(atPath: target).sorted() == ["finder.toml", "libFixtureDiscovery.so"])

            // Another build's library under the same pin.
            let other = "\(work)/other"
            try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Fixtures.library("FixtureTransport"), toPath: "\(other)/libFixtureDiscovery.so")
            _ = Fixtures.writeManifest(in: other, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so", extra: "sha256 = \"\(digest)\"")
            let mismatched = try CLI.run(["plugin", "install", "\(other)/finder.toml", "--plugins-dir", target])
            #expect(mismatched.status == 1)
            #expect(mismatched.stderr.contains("but \(other)/finder.toml pins \(digest); the two are from different builds"), "\(mismatched.stderr)")
            #expect(try Fixtures.sha256(ofFile: "\(target)/libFixtureDiscovery.so") == digest, "the installed build was replaced")

            let missing = "\(work)/missing"
            try FileManager.default.createDirectory(atPath: missing, withIntermediateDirectories: true)
            _ = Fixtures.writeManifest(in: missing, name: "ghost", kind: .discovery, library: "libGhost.so")
            let absent = try CLI.run(["plugin", "install", "\(missing)/ghost.toml", "--plugins-dir", target])
            #expect(absent.status == 1)
            #expect(absent.stderr.contains("no library at \(missing)/libGhost.so"), "\(absent.stderr)")

            let pathed = Fixtures.writeManifest(in: missing, name: "pathed", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
            let byPath = try CLI.run(["plugin", "install", pathed, "--plugins-dir", target])
            #expect(byPath.status == 1)
            #expect(byPath.stderr.contains("field 'library' is a path"), "\(byPath.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target).sorted() == ["finder.toml", "libFixtureDiscovery.so"])

            // `plugins info` reads the same manifests without a host.
            let info = try CLI.run(["plugins", "info", "finder", "--dir", target, "--socket", "\(work)/no-host.sock"])
            #expect(info.status == 0, "\(info.stderr)")
            #expect(info.stdout.contains("not loaded (read from the manifest)"), "\(info.stdout)")
            #expect(info.stdout.contains("\(target)/libFixtureDiscovery.so (there, matches the pin)"), "\(info.stdout)")
            let wrong = try CLI.run(["plugins", "info", "\(other)/finder.toml"])
            #expect(wrong.status == 1)
            #expect(wrong.stdout.contains("does not match the manifest's pin"), "\(wrong.stdout)")
            let gone = try CLI.run(["plugins", "info", "\(missing)/ghost.toml"])
            #expect(gone.status == 1)
            #expect(gone.stdout.contains("missing: no file at \(missing)/libGhost.so"), "\(gone.stdout)")
            let nothing = try CLI.run(["plugins", "info", "nobody", "--dir", target])
            #expect(nothing.status == 1)
            #expect(nothing.stderr.contains("no manifest at \(target)/nobody.toml"), "\(nothing.stderr)")

            // A library that is a FIFO is refused as the host refuses it, and never waited on.
            #expect(mkfifo("\(missing)/libFifo.so", 0o644) == 0)
            let fifo = Fixtures.writeManifest(in: missing, name: "fifo", kind: .discovery, library: "libFifo.so")
            let fifoInfo = try CLI.run(["plugins", "info", fifo])
            #expect(fifoInfo.status == 1)
            #expect(fifoInfo.stdout.contains("the host would refuse it: is a FIFO (named pipe), not a regular file"), "\(fifoInfo.stdout)")
            let fifoInstall = try CLI.run(["plugin", "install", fifo, "--plugins-dir", target])
            #expect(fifoInstall.status == 1)
            #expect(fifoInstall.stderr.contains("is a FIFO (named pipe), not a regular file"), "\(fifoInstall.stderr)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target).sorted() == ["finder.toml", "libFixtureDiscovery.so"])
        }

        /// A client whose host was killed is told the host is gone, not to check what the
        /// socket is; a new host starts on the same socket path.
        @Test func aClientOfACrashedHostIsToldItIsGone() throws {
            let directory = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let socket = "\(directory)/control.sock"
            let arguments = ["run", "--plugins-dir", directory, "--socket", socket, "--state-dir", "\(directory)/state"]
            let host = try BackgroundCLI(arguments)
            #expect(host.waitForLine(containing: "host running").last?.contains("host running") == true)
            kill(host.process.processIdentifier, SIGKILL)
            host.process.waitUntilExit()
            let asked = try CLI.run(["peers", "--socket", socket])
            #expect(asked.status == 1)
            #expect(asked.stderr.contains("no Kizuna host serves \(socket) any more: the host that made it stopped or crashed"), "\(asked.stderr)")
            let again = try BackgroundCLI(arguments)
            defer { _ = again.terminate() }
            #expect(again.waitForLine(containing: "host running").last?.contains("host running") == true)
            #expect(try CLI.run(["peers", "--socket", socket]).status == 0)
        }

        /// Starts a host on fixtures plus one bad manifest, with `arguments`; returns all it
        /// printed once stopped.
        func hostOutput(_ arguments: [String]) throws -> [String] {
            let directory = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"), extra: "[settings]\npeers = [\"東京の家@127.0.0.1:7000\"]")
            Fixtures.writeManifest(in: directory, name: "memory", kind: .transport, library: Fixtures.library("FixtureTransport"))
            try "schema = 1\nname = \"broken\"\n".write(toFile: "\(directory)/broken.toml", atomically: true, encoding: .utf8)
            let socket = "\(directory)/control.sock"
            let host = try BackgroundCLI(["run", "--plugins-dir", directory, "--socket", socket, "--state-dir", "\(directory)/state"] + arguments)
            var lines = host.waitForLine(containing: "host running")
            // A table with a name in CJK: the columns after it still line up.
            let peers = try CLI.run(["peers", "--socket", socket]).stdout.split(separator: "\n").map(String.init)
            #expect(peers.count == 2, "\(peers)")
            if peers.count == 2, let header = peers[0].range(of: "TRUSTED"), let cell = peers[1].range(of: " no ") {
                // Terminal cells: CJK characters take two.
                func cells(_ text: Substring) -> Int { text.count + text.unicodeScalars.filter { (0x3000...0x9FFF).contains($0.value) }.count }
                #expect(cells(peers[0][..<header.lowerBound]) == cells(peers[1][..<cell.lowerBound]) + 1, "\(peers)")
            }
            _ = host.terminate()
            lines += host.waitForLine(containing: "\u{0}")
            return lines
        }

        @Test func theLogIsQuietUnlessAskedAndSaysEachThingOnce() throws {
            let plain = try hostOutput([])
            #expect(!plain.contains { $0.contains("plugin started") }, "info lines by default: \(plain)")
            // The bad manifest: one line, not two.
            #expect(plain.filter { $0.contains("broken.toml") }.count == 1, "\(plain)")
            #expect(plain.contains { $0.hasPrefix("kizuna: error: host: ") && $0.contains("broken.toml") }, "\(plain)")
            // A peer is told once.
            #expect(plain.filter { $0.contains("peer found") }.count == 1, "\(plain)")

            let verbose = try hostOutput(["-v"])
            #expect(verbose.contains { $0.hasPrefix("kizuna: host: plugin started (kind=transport, plugin=memory)") }, "\(verbose)")

            let structured = try hostOutput(["--log-format", "json", "--log-level", "info"])
            let objects = structured.filter { $0.hasPrefix("{") }.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let started = objects.first { $0["message"] as? String == "plugin started" }
            #expect(started?["level"] as? String == "info" && started?["source"] as? String == "host" && started?["time"] is String, "\(structured)")
        }
    }
}
