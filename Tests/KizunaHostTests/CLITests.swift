import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// Runs the real `kizuna` binary.
struct CLI {
    /// The `kizuna` the package built; reading it first sets up the run's folder, so every
    /// `kizuna` a test starts keeps its state there (``Fixtures/runDirectory``).
    static let path: String = {
        _ = Fixtures.runDirectory
        return Fixtures.buildDirectory + "/kizuna"
    }()

    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `kizuna ARGUMENTS` to completion, in `directory` if one is given.
    static func run(_ arguments: [String], in directory: String? = nil) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// A `kizuna` process running in the background whose output is read line by line. A
/// thread drains the output all the time, so a chatty process never blocks on a full pipe
/// while the test does something else.
final class BackgroundCLI: @unchecked Sendable {
    let process = Process()
    private let output = Pipe()
    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var buffer = Data()
    private var ended = false

    /// Starts `kizuna ARGUMENTS`. A watchdog terminates it after `limit`, so a line that
    /// never comes ends the wait (and fails the test) instead of hanging the suite.
    /// In `namespace` (a network namespace, through `ip netns exec`, which becomes the
    /// `kizuna` process itself) if one is given.
    init(_ arguments: [String], limit: Double = 60, namespace: String? = nil) throws {
        if let namespace {
            process.executableURL = URL(fileURLWithPath: NetworkNamespaces.ipTool)
            process.arguments = ["netns", "exec", namespace, CLI.path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: CLI.path)
            process.arguments = arguments
        }
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let process = process
        DispatchQueue.global().asyncAfter(deadline: .now() + limit) { if process.isRunning { process.terminate() } }
        let reader = output.fileHandleForReading
        Thread.detachNewThread { [self] in
            while true {
                let chunk = reader.availableData
                condition.lock()
                if chunk.isEmpty { ended = true } else { buffer += chunk }
                condition.broadcast()
                condition.unlock()
                if chunk.isEmpty { return }
            }
        }
    }

    /// Reads output until a line contains `text`, or the process ends; returns the lines read.
    func waitForLine(containing text: String) -> [String] {
        var lines: [String] = []
        condition.lock()
        defer { condition.unlock() }
        while true {
            while let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                lines.append(line)
                if line.contains(text) { return lines }
            }
            if ended { return lines }  // the process ended
            condition.wait()
        }
    }

    func terminate() -> Int32 {
        process.terminate()  // SIGTERM
        process.waitUntilExit()
        return process.terminationStatus
    }
}

extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(2))) struct CLITests {
        /// Starts `kizuna run` on a directory with a discovery and a transport plugin.
        func startHost() throws -> (host: BackgroundCLI, directory: String, socket: String) {
            let directory = Fixtures.temporaryDirectory()
            Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so", extra: "[settings]\npeers = [\"aiko@127.0.0.1:7000\"]")
            Fixtures.writeManifest(in: directory, name: "memory", kind: .transport, library: "libFixtureTransport.so")
            let socket = "\(directory)/control.sock"
            let state = "\(directory)/state"
            let id = try BuiltinHost.identity(of: state)
            let host = try BackgroundCLI(["run", "--plugins-dir", directory, "--socket", socket, "--workers", "2", "--name", "cli-test", "--state-dir", state])
            let lines = host.waitForLine(containing: "host running")
            #expect(lines.last?.contains("host running as cli-test (\(id)), 2 plugin(s), control socket \(socket)") == true, "\(lines)")
            return (host, directory, socket)
        }

        @Test func aRunningHostIsDrivenOverItsSocket() throws {
            let (host, directory, socket) = try startHost()
            defer { _ = host.terminate() }

            // The socket is owner-only.
            let attributes = try FileManager.default.attributesOfItem(atPath: socket)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)

            let list = try CLI.run(["plugins", "list", "--json", "--socket", socket])
            #expect(list.status == 0)
            let plugins = try JSONDecoder().decode([ListedPlugin].self, from: Data(list.stdout.utf8))
            #expect(Set(plugins.map(\.name)) == ["finder", "memory"])
            #expect(plugins.allSatisfy { $0.state == "running" })

            let table = try CLI.run(["plugins", "list", "--socket", socket])
            #expect(table.stdout.hasPrefix("NAME    KIND       VERSION  STATE    LIBRARY\n"))

            let info = try CLI.run(["plugins", "info", "finder", "--socket", socket])
            #expect(info.status == 0)
            #expect(info.stdout.contains("descriptor        magic 0x4b5a4e41, ABI 1, SDK \(SDKInfo.version)"))
            #expect(info.stdout.contains("events published  1"))

            let status = try CLI.run(["status", "--json", "--socket", socket])
            let figures = try JSONDecoder().decode(HostStatus.self, from: Data(status.stdout.utf8))
            #expect(figures.pluginCount == 2 && figures.running == 2 && figures.peers == 1)

            // Load a file-transfer plugin now that a transport runs, then unload and reload.
            Fixtures.writeManifest(in: directory, name: "files", kind: .fileTransfer, library: "libFixtureFileTransfer.so")
            let load = try CLI.run(["plugins", "load", "files", "--socket", socket])
            #expect(load.status == 0)
            #expect(load.stdout == "loaded files (file-transfer 1.0.0): running\n")
            let reload = try CLI.run(["plugins", "reload", "memory", "--socket", socket])
            #expect(reload.status == 0, "\(reload.stderr)")
            #expect(reload.stdout.hasPrefix("reloaded memory from "))
            let unload = try CLI.run(["plugins", "unload", "files", "--socket", socket])
            #expect(unload.stdout == "unloaded files: stopped\n")

            // A relative manifest path is the caller's, not the host's.
            try FileManager.default.createDirectory(atPath: "\(directory)/elsewhere", withIntermediateDirectories: true)
            Fixtures.writeManifest(in: "\(directory)/elsewhere", name: "seeker", kind: .discovery, library: "libFixtureDiscovery.so")
            let relative = try CLI.run(["plugins", "load", "elsewhere/seeker.toml", "--socket", socket], in: directory)
            #expect(relative.status == 0, "\(relative.stderr)")
            #expect(relative.stdout == "loaded seeker (discovery 1.0.0): running\n")
            // A load that ends failed says why and exits non-zero.
            Fixtures.writeManifest(in: "\(directory)/elsewhere", name: "thrower", kind: .discovery, library: Fixtures.library("FixtureThrowing"))
            let failed = try CLI.run(["plugins", "load", "./thrower.toml", "--socket", socket], in: "\(directory)/elsewhere")
            #expect(failed.status != 0)
            #expect(failed.stderr.contains("thrower was loaded but failed:"), "\(failed.stderr)")

            #expect(host.terminate() == 0)
            #expect(!FileManager.default.fileExists(atPath: socket))
        }

        @Test func badRequestsGetOneLineErrorsAndTheHostKeepsServing() throws {
            let (host, directory, socket) = try startHost()
            defer { _ = host.terminate() }
            Fixtures.writeManifest(in: directory, name: "noentry", kind: .discovery, library: "libFixtureNoEntry.so")
            try "schema = 1\nname = \"broken\"\nversion = \"1.0.0\"\nkind = 7\n".write(toFile: "\(directory)/broken.toml", atomically: true, encoding: .utf8)

            let cases: [([String], String)] = [
                (["plugins", "load", "noentry"], "has no 'kizuna_plugin_entry' symbol"),
                (["plugins", "load", "\(directory)/broken.toml"], "Error: \(directory)/broken.toml:4: field 'kind' must be a string, not an integer"),
                (["plugins", "load", "missing"], "no manifest for this plugin; tried \(directory)/missing.toml"),
                (["plugins", "load", "finder"], "a plugin with this name is already loaded"),
                (["plugins", "unload", "ghost"], "plugin 'ghost': no plugin of this name is loaded (loaded: "),
            ]
            for (arguments, message) in cases {
                let outcome = try CLI.run(arguments + ["--socket", socket])
                #expect(outcome.status != 0, "\(arguments)")
                #expect(outcome.stderr.split(separator: "\n").count == 1, "\(arguments): \(outcome.stderr)")
                #expect(outcome.stderr.contains(message), "\(arguments): \(outcome.stderr)")
            }
            // Still serving after every refusal.
            let list = try CLI.run(["plugins", "list", "--json", "--socket", socket])
            #expect(try JSONDecoder().decode([ListedPlugin].self, from: Data(list.stdout.utf8)).count == 2)
        }

        @Test func eventsAreFollowedLive() throws {
            let (host, directory, socket) = try startHost()
            defer { _ = host.terminate() }
            let follower = try BackgroundCLI(["events", "--socket", socket])
            defer { _ = follower.terminate() }
            // The follower is subscribed once the host has answered its request; loading a
            // plugin now must show up in its output.
            var loaded = false
            Fixtures.writeManifest(in: directory, name: "frames", kind: .streaming, library: "libFixtureStreaming.so")
            while !loaded {
                _ = try CLI.run(["plugins", "unload", "frames", "--socket", socket])
                loaded = try CLI.run(["plugins", "load", "frames", "--socket", socket]).status == 0
            }
            let lines = follower.waitForLine(containing: "plugin frames: running")
            // Each line starts with the local time the host passed the event on.
            #expect(lines.last?.wholeMatch(of: /\d\d:\d\d:\d\d  plugin frames: running/) != nil, "\(lines)")
        }

        @Test func actionsAreListedAndCalledThroughTheCLI() throws {
            let (host, directory, socket) = try startHost()
            defer { _ = host.terminate() }
            Fixtures.writeManifest(in: directory, name: "actor", kind: .discovery, library: "libFixtureDiscovery.so", extra: fixtureActions)
            #expect(try CLI.run(["plugins", "load", "actor", "--socket", socket]).status == 0)
            let listed = try CLI.run(["plugins", "actions", "actor", "--socket", socket])
            let greetLine = listed.stdout.split(separator: "\n").first { $0.hasPrefix("greet ") }
            #expect(greetLine?.contains("const char * fixture_greet(const char *)") == true, "\(listed.stdout)")
            #expect(greetLine?.hasSuffix("Says hello") == true)
            let greeting = try CLI.run(["plugins", "call", "actor", "greet", "world", "--socket", socket])
            #expect(greeting.status == 0)
            #expect(greeting.stdout == "hello, world\n")
            let negative = try CLI.run(["plugins", "call", "actor", "add-int32", "--socket", socket, "--", "-5", "3"])
            #expect(negative.stdout == "-2\n", "\(negative.stderr)")
            #expect(try CLI.run(["plugins", "call", "actor", "add-int32", "-5", "-6", "--socket", socket]).stdout == "-11\n")
            let overflow = try CLI.run(["plugins", "call", "actor", "add-int8", "200", "1", "--socket", socket])
            #expect(overflow.status != 0)
            #expect(overflow.stderr.contains("argument 1 of action 'add-int8' is '200', which does not fit in int8 (-128 to 127)"))
            // Still serving.
            #expect(try CLI.run(["plugins", "call", "actor", "not", "false", "--socket", socket]).stdout == "true\n")
        }

        @Test func manifestsAreInspectedOfflineWithoutAHost() throws {
            let directory = Fixtures.temporaryDirectory()
            Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so")
            try "schema = 1\nname = \"x\"\nflavour = 1\n".write(toFile: "\(directory)/odd.toml", atomically: true, encoding: .utf8)
            let outcome = try CLI.run(["plugins", "list", "--dir", directory, "--json"])
            // Listed, and the unreadable manifest makes the exit status 1.
            #expect(outcome.status == 1)
            let plugins = try JSONDecoder().decode([ListedPlugin].self, from: Data(outcome.stdout.utf8))
            #expect(plugins.map(\.name) == ["finder", "odd"])
            #expect(plugins[0].state == "discovered" && plugins[0].kind == "discovery")
            #expect(plugins[1].reason?.contains("field 'flavour' is not a manifest key") == true)
            #expect(plugins[1].kind == nil, "no kind is invented for a manifest that cannot be read")
            let table = try CLI.run(["plugins", "list", "--dir", directory])
            #expect(table.status == 1)
            #expect(table.stdout.contains(/\nodd +\? +- +failed +-\n/), "\(table.stdout)")
            let empty = Fixtures.temporaryDirectory()
            #expect(try CLI.run(["plugins", "list", "--dir", empty]).stdout == "NAME  KIND  VERSION  STATE  LIBRARY\nno manifests (*.toml) in \(empty)\n")
        }

        @Test func withoutAHostTheErrorSaysHowToStartOne() throws {
            let outcome = try CLI.run(["status", "--socket", "/nonexistent/kizuna.sock"])
            #expect(outcome.status != 0)
            #expect(outcome.stderr.contains("cannot reach a Kizuna host at /nonexistent/kizuna.sock"))
            #expect(outcome.stderr.contains("start one with `kizuna run`"))
        }

        /// Runs the real CLI as the `nobody` user against a host owned by root. Needs root
        /// and setpriv (util-linux), as on CI; elsewhere the test is skipped.
        @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
        func anotherUserIsRefused() throws {
            let (host, _, socket) = try startHost()
            defer { _ = host.terminate() }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid", "65534", "--regid", "65534", "--clear-groups", CLI.path, "status", "--socket", socket]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = Pipe()
            try process.run()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus != 0)
            #expect(message.contains("cannot reach a Kizuna host at \(socket) (Permission denied)"), "\(message)")
        }

        @Test func subsystemCommandsRefuseWhatTheHostCannotDo() throws {
            let (host, directory, socket) = try startHost()
            defer { _ = host.terminate() }
            let peers = try CLI.run(["peers", "--socket", socket])
            #expect(peers.status == 0)
            #expect(peers.stdout.contains("aiko"))
            let file = "\(directory)/note.txt"
            try Data("hi".utf8).write(to: URL(fileURLWithPath: file))
            let send = try CLI.run(["send", file, "--to", "aiko", "--socket", socket])
            #expect(send.status != 0)
            #expect(send.stderr.contains("no file-transfer plugin is running; load one with `kizuna plugins load file-transfer`"))
            let watch = try CLI.run(["watch", "--socket", socket])
            #expect(watch.status != 0)
            #expect(watch.stderr.contains("no streaming plugin is running"))
            let stream = try CLI.run(["stream", "--to", "aiko", "--frame-bytes", "0", file, "--socket", socket])
            #expect(stream.status != 0)
            #expect(stream.stderr.contains("--frame-bytes must be from 1 to 8388608"))
            let badPolicy = try CLI.run(["run", "--accept", "maybe", "--socket", "\(directory)/other.sock"])
            #expect(badPolicy.status != 0)
            #expect(badPolicy.stderr.contains("The value 'maybe' is invalid for '--accept <accept>'"), "\(badPolicy.stderr)")
            let unknownPeer = try CLI.run(["stream", "--to", "nobody", file, "--socket", socket])
            #expect(unknownPeer.status != 0)
            #expect(unknownPeer.stderr.contains("no peer matches 'nobody'"))
        }

        /// SIGTERM while plugins are still starting (before "host running") stops the host
        /// cleanly instead of killing it.
        @Test func aSignalDuringStartupStopsTheHostCleanly() throws {
            let directory = Fixtures.temporaryDirectory()
            Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so")
            let host = try BackgroundCLI(["run", "--plugins-dir", directory, "--socket", "\(directory)/control.sock", "--state-dir", "\(directory)/state", "-v"])
            #expect(host.waitForLine(containing: "plugin started").last?.contains("plugin started") == true)
            #expect(host.terminate() == 0)
            #expect(host.process.terminationReason == .exit)
        }

        @Test func aSecondHostOnTheSameSocketIsRefused() throws {
            let (host, directory, socket) = try startHost()
            defer { _ = host.terminate() }
            let second = try CLI.run(["run", "--plugins-dir", directory, "--socket", socket, "--state-dir", "\(directory)/second-state"])
            #expect(second.status != 0)
            #expect(second.stderr.contains("a Kizuna host is already serving \(socket)"))
        }
    }
}
