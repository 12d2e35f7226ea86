import ArgumentParser
import Dispatch
import Foundation
import KizunaHost
import KizunaSDK

@main
struct Kizuna: AsyncParsableCommand {
    /// This build of Kizuna.
    static let version = "0.4.0"

    static let configuration = CommandConfiguration(
        commandName: "kizuna",
        abstract: "Connect nearby devices: a plugin host for discovery, transport, file transfer and streaming.",
        version: "kizuna \(version) (KizunaSDK \(SDKInfo.version), Swift \(SDKInfo.compilerVersion))",
        subcommands: [
            Run.self, IdentityCommand.self, Peers.self, Pair.self, TrustCommand.self, Send.self, Transfers.self, Accept.self, Refuse.self, Cancel.self,
            Stream.self, Watch.self, Plugins.self, Status.self,
            Events.self, ConformanceCommand.self,
            ConformanceCheckCommand.self, PluginCommand.self, Demo.self, FuzzCommand.self, ProbePlugin.self,
        ])
}

extension Kizuna {
    /// Parses and runs the command; a mistyped command gets a "did you mean" first.
    static func main() async {
        unblockTerminationSignals()
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            var command = try parseAsRoot(arguments)
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            guard let hint = CommandSuggestion.hint(for: arguments, in: Kizuna.self) else { exit(withError: error) }
            printError(fullMessage(for: error))
            printError(hint)
            exit(withError: ExitCode(exitCode(for: error).rawValue))
        }
    }
}

/// A process inherits its parent's blocked signals (a program that spawns `kizuna` from a
/// Dispatch or Swift concurrency thread passes on a mask that blocks nearly everything):
/// Ctrl-C, SIGTERM and SIGHUP must still reach `kizuna`, so they are unblocked first.
private func unblockTerminationSignals() {
    var signals = sigset_t()
    sigemptyset(&signals)
    for number in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&signals, number) }
    pthread_sigmask(SIG_UNBLOCK, &signals, nil)
}

/// "did you mean 'plugins'?" for a word that names no command where one is expected.
enum CommandSuggestion {
    /// A line for the first word of `arguments` that is not a subcommand of the command
    /// reached so far, if a command's name is close to it; nil otherwise.
    static func hint(for arguments: [String], in root: any ParsableCommand.Type) -> String? {
        var command = root
        var path = [root.configuration.commandName ?? "kizuna"]
        for word in arguments where !word.hasPrefix("-") {
            let subcommands = command.configuration.subcommands
            guard !subcommands.isEmpty else { return nil }
            let named = subcommands.filter { $0.configuration.shouldDisplay }.map { ($0._commandName, $0) }
            if let next = subcommands.first(where: { $0._commandName == word || $0.configuration.aliases.contains(word) }) {
                command = next
                path.append(word)
                continue
            }
            // The word may be right under a sibling whose name was mistyped: `plugin list`.
            if path.count >= 2, let parent = parent(of: path, from: root) {
                let siblings = parent.configuration.subcommands.filter { $0.configuration.shouldDisplay && $0._commandName != path.last }
                if let sibling = siblings.first(where: { close($0._commandName, path.last!) && $0.configuration.subcommands.contains { $0._commandName == word } }) {
                    return "kizuna: did you mean `\((path.dropLast() + [sibling._commandName, word]).joined(separator: " "))`?"
                }
            }
            let near = named.filter { close($0.0, word) }.map(\.0)
            guard !near.isEmpty else { return nil }
            return "kizuna: '\(word)' is not a command of `\(path.joined(separator: " "))`; did you mean \(near.map { "`\((path + [$0]).joined(separator: " "))`" }.joined(separator: " or "))?"
        }
        return nil
    }

    private static func parent(of path: [String], from root: any ParsableCommand.Type) -> (any ParsableCommand.Type)? {
        var command = root
        for word in path.dropFirst().dropLast() {
            guard let next = command.configuration.subcommands.first(where: { $0._commandName == word }) else { return nil }
            command = next
        }
        return command
    }

    /// Within two edits, or one is the start of the other.
    static func close(_ a: String, _ b: String) -> Bool {
        guard a != b else { return false }
        if a.hasPrefix(b) || b.hasPrefix(a) { return min(a.count, b.count) >= 3 }
        return distance(Array(a), Array(b)) <= (max(a.count, b.count) > 4 ? 2 : 1)
    }

    /// Levenshtein distance.
    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() { current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))) }
            previous = current
        }
        return previous[b.count]
    }
}

/// The child a host runs to open a plugin library before it maps it (``PluginProbe``):
/// reports on descriptor 3, so whatever the library prints cannot pass for a report.
struct ProbePlugin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe-plugin", abstract: "Open a plugin library as a host would, and report on descriptor 3 (run by the host).",
        shouldDisplay: false)
    @Argument(help: "The library to open.") var library: String

    func run() throws {
        Foundation.exit(PluginProbe.runChild(library: library))
    }
}

/// Options every command that talks to a running host takes.
struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "The running host's control socket (default: $KIZUNA_SOCKET, else a per-user path).")
    var socket: String?

    var client: ControlClient { ControlClient(path: socket ?? HostConfiguration.defaultSocketPath) }

    /// Sends `request` and returns the reply, turning a refusal into a one-line error.
    func send(_ request: ControlRequest) throws -> ControlResponse {
        let response = try client.send(request)
        guard response.ok else { throw CommandFailure(response.error ?? "the host refused the request without saying why") }
        return response
    }
}

/// A manifest path as the host must see it: relative paths are the caller's, so they are
/// made absolute here, against this process's working directory, before they are sent
/// (the host's own working directory is elsewhere). A plugin name passes unchanged.
func resolvedManifestArgument(_ argument: String) -> String {
    guard argument.contains("/") || argument.hasSuffix(".toml"), !argument.hasPrefix("/") else { return argument }
    return URL(fileURLWithPath: argument, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)).standardizedFileURL.path
}

/// A failure reported as one line on stderr with a non-zero exit code.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}


struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a host in the foreground with the plugins it finds, serving a control socket until SIGINT or SIGTERM.")

    @Option(name: .long, help: "The plugins directory (default: ~/.kizuna/plugins).")
    var pluginsDir: String?

    @Option(name: .long, help: "The control socket to serve (default: $KIZUNA_SOCKET, else a per-user path).")
    var socket: String?

    @Option(name: .long, help: "Runtime worker threads (default: the CPUs this process may use).")
    var workers: Int?

    @Option(name: .long, help: "Where received files go (the file-transfer plugin's receive-dir setting).")
    var receiveDir: String?

    @Option(
        name: .long,
        help: "Incoming transfers and streams: trusted (the default: accept from paired peers, hold other offers for `kizuna accept ID`), ask (hold every offer), refuse, or auto (accept everything from anyone; warned about).")
    var accept: AcceptPolicy?

    @Option(name: .long, help: "This host's name for people (default: the machine's host name).")
    var name: String?

    @Option(
        name: .long,
        help: "What the host keeps between starts: its identity (key and certificate), the peers it trusts, private copies of plugin libraries and what probing them found (default: $XDG_STATE_HOME/kizuna, else ~/.local/state/kizuna). Each host on a machine needs its own.")
    var stateDir: String?

    @Option(
        name: .long,
        help: "Keep the host to one interface, by name or IP address (such as lo to stay on this machine): discovery runs only there and the transport listens only on its address (they set discovery's 'interface' and the transport's 'listen-host'). Default: every interface that is up, as the built-in manifests say.")
    var interface: String?

    @Flag(name: .long, help: "Probe every plugin library again, even those an earlier probe of the same file passed or refused.")
    var probeAgain = false

    @Flag(name: .long, help: "Do not print peers, transfers and streams as they happen (warnings and errors are still printed).")
    var quiet = false

    @OptionGroup var log: LogOptions

    enum AcceptPolicy: String, ExpressibleByArgument, CaseIterable { case trusted, ask, refuse, auto }

    func run() async throws {
        // Caught from the start: a SIGTERM while plugins load still stops the host cleanly.
        let termination = TerminationSignal.install()
        log.bootstrap()
        var runtime = RuntimeConfiguration()
        if let workers { runtime.workerThreads = workers }
        var transfer: [String: SettingValue] = [:]
        if let receiveDir { transfer["receive-dir"] = .string(URL(fileURLWithPath: receiveDir).standardizedFileURL.path) }
        var streaming: [String: SettingValue] = [:]
        if let accept {
            transfer["accept"] = .string(accept.rawValue)
            // Streams are not held for a decision: `ask` takes them from paired peers only.
            streaming["accept"] = .string(accept == .ask ? "trusted" : accept.rawValue)
        }
        var discovery: [String: SettingValue] = [:]
        var transport: [String: SettingValue] = [:]
        if let interface {
            discovery["interface"] = .string(interface)
            transport["listen-host"] = .string(try NetworkAddresses.address(of: interface))
        }
        var isDirectory: ObjCBool = false
        if let pluginsDir {
            guard FileManager.default.fileExists(atPath: pluginsDir, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandFailure("the plugins directory \(pluginsDir) does not exist or is not a folder; create it (`mkdir -p \(pluginsDir)`) or give another --plugins-dir")
            }
        } else if !FileManager.default.fileExists(atPath: HostConfiguration.defaultPluginsDirectory) {
            printError("kizuna: warning: there is no plugins directory at \(HostConfiguration.defaultPluginsDirectory), so the host starts with no plugins; put manifests there, or give --plugins-dir (such as this checkout's manifests)")
        }
        let state = stateDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? HostConfiguration.defaultStateDirectory
        let identity: DeviceIdentity
        let trust: TrustStore
        let lock: StateDirectoryLock
        do {
            try HostConfiguration.prepareStateDirectory(state)
            lock = try StateDirectoryLock(state)
            identity = try DeviceIdentity.loadOrCreate(in: state)
            trust = try TrustStore(stateDirectory: state)
        } catch {
            throw CommandFailure("\(error)")
        }
        defer { withExtendedLifetime(lock) {} }
        let configuration = HostConfiguration(
            runtime: runtime, pluginsDirectory: pluginsDir, controlSocketPath: socket, stateDirectory: state, probeAgain: probeAgain,
            identity: identity, trust: trust, hostName: name, settingsByKind: [.fileTransfer: transfer, .streaming: streaming, .discovery: discovery, .transport: transport])
        if accept == .auto {
            printError("kizuna: warning: --accept auto takes files and streams from any program on the network, paired or not; use it only on a network you control")
        }
        let host = try KizunaHost(configuration: configuration)
        let server: ControlServer
        do {
            server = try ControlServer.start(host: host, path: configuration.controlSocketPath)
        } catch {
            await host.shutdown()
            throw error
        }
        // Subscribe before the plugins start, so nothing they find is missed; print only
        // once the host is reported running.
        let narration = quiet ? nil : host.events.subscribe()
        // What failed to load is in the log (an error line each), said once.
        _ = await host.loadAll()
        // Status lines go straight to the descriptor, so a supervisor reading a pipe sees
        // "host running" when it happens.
        let plugins = try await host.list()
        writeLine("kizuna: host running as \(configuration.hostName) (\(configuration.hostID)), \(plugins.count) plugin(s), control socket \(server.path)")
        writeLine("  trusts \(trust.all.count) peer(s); state in \(state)")
        for plugin in plugins { writeLine("  \(plugin.name) (\(plugin.kind) \(plugin.version)): \(plugin.state)") }
        if let narration { narrate(narration, on: host) }
        let signal = await termination.wait()
        writeLine("kizuna: \(signal), shutting down")
        server.stop()
        let report = await host.shutdown()
        writeLine("kizuna: stopped; runtime \(report)")
    }
}

/// Prints what happens between hosts (peers, transfers, streams) as it happens.
private func narrate(_ events: BroadcastReceiver<HostEvent>, on host: KizunaHost) {
    _ = try? host.runtime.handle.spawn(name: "narrate") {
        // A discovery plugin may announce a peer again (a refresh, a second address): each
        // peer is told once, and again only when what is known of it changes.
        var known: [PeerID: Peer] = [:]
        for await message in events {
            guard case .element(let event) = message else { continue }
            switch event {
            case .peerFound(let peer):
                guard known[peer.id] != peer else { continue }
                let changed = known[peer.id] != nil
                known[peer.id] = peer
                writeLine("kizuna: \(changed ? event.summary.replacing("peer found:", with: "peer changed:", maxReplacements: 1) : event.summary)")
            case .peerLost(let id):
                guard known.removeValue(forKey: id) != nil else { continue }
                writeLine("kizuna: \(event.summary)")
            case .transferOffered, .transferDone, .transferFailed, .streamStarted, .streamEnded, .pairingRequested, .peerTrusted, .peerUntrusted:
                writeLine("kizuna: \(event.summary)")
            default: break
            }
        }
    }
}

struct Plugins: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, inspect, load, unload and reload plugins.",
        subcommands: [List.self, Info.self, Load.self, Unload.self, Reload.self, Actions.self, Call.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the plugins of a running host, or the manifests in a directory with --dir.")

        @OptionGroup var socket: SocketOption
        @Flag(name: .long, help: "Print JSON for scripts.") var json = false
        @Option(name: .long, help: "Inspect the manifests in this directory instead of asking a running host.") var dir: String?

        func run() throws {
            let plugins = try dir.map(Self.inspect) ?? (socket.send(ControlRequest(.list)).plugins ?? [])
            if json {
                print(try encodeJSON(plugins.map(PluginJSON.init)))
            } else {
                printTable(
                    ["NAME", "KIND", "VERSION", "STATE", "LIBRARY"],
                    plugins.map { [$0.name, $0.manifestReadable ? $0.kind.rawValue : "?", $0.version, Self.shortState($0.state), $0.library] })
                // Reasons are sentences: under the table, one per line, not in a column.
                for plugin in plugins {
                    if case .failed(let reason) = plugin.state { print("\(plugin.name): \(reason)") }
                }
                if dir != nil, plugins.isEmpty { print("no manifests (*.toml) in \(dir!)") }
            }
            // Offline, a manifest that cannot be used is an error the exit status tells.
            if dir != nil, plugins.contains(where: { !$0.manifestReadable }) { throw ExitCode(1) }
        }

        /// The state column: `blocked` for a library the probe refused, else the state's name.
        static func shortState(_ state: PluginState) -> String {
            if case .failed(let reason) = state, reason.hasPrefix("blocked: ") { return "blocked" }
            return state.name
        }

        static func inspect(_ directory: String) throws -> [PluginInfo] {
            try PluginInfo.inspectManifests(in: directory)
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one plugin: manifest, descriptor, state, tasks and events.",
            discussion: "Given a manifest path (or --dir), it reads the manifest without a running host: what it declares, and whether its library is there and matches its pin.")
        @OptionGroup var socket: SocketOption
        @Flag(name: .long, help: "Print JSON for scripts.") var json = false
        @Option(name: .long, help: "Read NAME's manifest in this directory instead of asking a running host.") var dir: String?
        @Argument(help: "The plugin's name, or a manifest's path.") var name: String

        func run() throws {
            if dir != nil || name.hasSuffix(".toml") || name.contains("/") { return try offline() }
            let plugin = try socket.send(ControlRequest(.info, name)).plugin!
            if json { return print(try encodeJSON(PluginJSON(plugin))) }
            printFields([
                ("name", plugin.name), ("kind", plugin.kind.rawValue), ("version", plugin.version),
                ("state", plugin.state.description), ("description", plugin.description ?? "-"),
                ("manifest", plugin.manifest), ("library", plugin.library), ("mapped copy", plugin.image ?? "-"), ("sha256", plugin.sha256 ?? "-"),
                ("descriptor", plugin.descriptor ?? "-"), ("provides", plugin.provides.joined(separator: ", ")),
                ("requires", plugin.requires.map(\.rawValue).joined(separator: ", ")), ("tasks", "\(plugin.tasks)"),
                ("permits held", "\(plugin.permitsHeld)"),
                ("events published", "\(plugin.eventsPublished)"), ("leftover tasks", "\(plugin.leftoverTasks)"),
            ])
        }

        /// What the manifest says, read from disk: no host, nothing loaded.
        func offline() throws {
            let path = dir.map { "\($0)/\(name).toml" } ?? name
            guard FileManager.default.fileExists(atPath: path) else {
                throw CommandFailure("no manifest at \(path); give a manifest's path, or a plugin name with --dir DIR (`kizuna plugins list --dir DIR` lists them)")
            }
            let manifest: PluginManifest
            do { manifest = try PluginManifest(contentsOf: path) } catch { throw CommandFailure("\(error)") }
            let check = PluginInstall.check(libraryOf: manifest)
            let (library, libraryState, usable): (String, String, Bool) =
                switch check {
                case .missing(let path): (path, "missing: no file at \(path); build it, or fix the manifest's library", false)
                case .unreadable(let path, let reason): (path, "the host would refuse it: \(reason)", false)
                case .mismatch(let path, let digest): (path, "does not match the manifest's pin (its sha256 is \(digest)); build again", false)
                case .matchesPin(let path): (path, "there, matches the pin", true)
                case .notPinned(let path): (path, "there, not pinned", true)
                }
            if json {
                return print(try encodeJSON(PluginJSON(PluginInfo(declaredBy: manifest, library: library))))
            }
            var fields: [(String, String)] = [
                ("name", manifest.name), ("kind", manifest.kind.rawValue), ("version", manifest.version),
                ("state", "not loaded (read from the manifest)"), ("description", manifest.description ?? "-"),
                ("license", manifest.license ?? "-"), ("authors", manifest.authors.isEmpty ? "-" : manifest.authors.joined(separator: ", ")),
                ("manifest", path), ("library", "\(library) (\(libraryState))"), ("sha256", manifest.sha256 ?? "-"),
                ("provides", manifest.provides.joined(separator: ", ")), ("requires", manifest.requiredKinds.map(\.rawValue).joined(separator: ", ")),
            ]
            for key in manifest.settings.values.keys.sorted() { fields.append(("setting \(key)", "\(manifest.settings.values[key]!)")) }
            for action in manifest.actions.values.sorted(by: { $0.name < $1.name }) {
                fields.append(("action \(action.name)", action.signature + (action.description.map { ": \($0)" } ?? "")))
            }
            printFields(fields)
            if !usable { throw ExitCode(1) }
        }
    }

    struct Load: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load and start a plugin by manifest path or name.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "A manifest path, or a plugin name found in the host's search directories.") var plugin: String
        @Flag(name: .long, help: "Probe the library again, even if an earlier probe of this same file is remembered.") var probeAgain = false

        func run() throws {
            let info = try socket.send(ControlRequest(.load, resolvedManifestArgument(plugin), probeAgain: probeAgain)).plugin!
            if case .failed(let reason) = info.state { throw CommandFailure("\(info.name) was loaded but failed: \(reason)") }
            print("loaded \(info.name) (\(info.kind) \(info.version)): \(info.state)")
        }
    }

    struct Unload: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a plugin and forget it.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The plugin's name.") var name: String

        func run() throws {
            let info = try socket.send(ControlRequest(.unload, name)).plugin!
            let leftovers = info.leftoverTasks > 0 ? ", \(info.leftoverTasks) leftover task(s) cancelled" : ""
            print("unloaded \(info.name): \(info.state)\(leftovers)")
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load a plugin's current build and swap it in; the old one keeps running if that fails.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The plugin's name.") var name: String
        @Flag(name: .long, help: "Probe the library again, even if an earlier probe of this same file is remembered.") var probeAgain = false

        func run() throws {
            let info = try socket.send(ControlRequest(.reload, name, probeAgain: probeAgain)).plugin!
            print("reloaded \(info.name) from \(info.library): \(info.state)")
        }
    }
}

extension Plugins {
    struct Actions: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the actions a loaded plugin declares.")
        @OptionGroup var socket: SocketOption
        @Flag(name: .long, help: "Print JSON for scripts.") var json = false
        @Argument(help: "The plugin's name.") var name: String

        func run() throws {
            let actions = try socket.send(ControlRequest(.actions, name)).actions ?? []
            if json { return print(try encodeJSON(actions)) }
            printTable(["ACTION", "SIGNATURE", "DESCRIPTION"], actions.map { [$0.name, $0.signature, $0.description ?? ""] })
        }
    }

    struct Call: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Call a plugin action; arguments are converted by the types its manifest declares.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The plugin's name.") var name: String
        @Argument(help: "The action's name.") var action: String
        @Argument(parsing: .allUnrecognized, help: "The action's arguments, as text.") var arguments: [String] = []

        func run() throws {
            // `--` may separate negative numbers from options; it is not an argument.
            let values = arguments.first == "--" ? Array(arguments.dropFirst()) : arguments
            let result = try socket.send(ControlRequest(.call, name, arguments: [action] + values)).result ?? ""
            if !result.isEmpty { print(result) }
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a running host's figures.")
    @OptionGroup var socket: SocketOption
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false

    func run() throws {
        let status = try socket.send(ControlRequest(.status)).status!
        if json { return print(try encodeJSON(status)) }
        printFields([
            ("plugins", "\(status.pluginCount) (\(status.running) running, \(status.failed) failed)"),
            ("peers", "\(status.peers)"), ("connections", "\(status.connections)"), ("tasks", "\(status.tasksAlive)"),
            ("workers", "\(status.workerThreads) (queue \(status.workerQueueDepth))"), ("permits in use", "\(status.permitsInUse)"),
            ("inbound refused", "\(status.refusedInbound) (no plugin could take them)"),
            ("violations", Self.violations(status.violations)),
            ("control socket", status.controlSocket), ("sdk", status.sdkVersion), ("swift", status.swiftVersion),
        ] + partialFiles())
    }

    /// "12 (tcp-transport 10, file-transfer 2)": what peers did wrong, by plugin.
    static func violations(_ counts: [String: UInt64]) -> String {
        let total = counts.values.reduce(0, &+)
        let named = counts.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        return named.isEmpty ? "\(total) (by peers, refused and closed)" : "\(total) (\(named.joined(separator: ", ")))"
    }

    /// What the file-transfer plugin's partial files hold, if it is loaded and says.
    private func partialFiles() -> [(String, String)] {
        guard let bytes = try? socket.send(ControlRequest(.call, "file-transfer", arguments: ["partial-bytes"])).result else { return [] }
        return [("partial files", "\(bytes) bytes (kept for resuming; see partial-max-age-days)")]
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Follow a running host's event bus live.")
    @OptionGroup var socket: SocketOption
    @Flag(name: .long, help: "Print one JSON object per event.") var json = false

    func run() throws {
        try socket.client.followEvents { response in
            // Written straight to the descriptor: a follower piped into another program
            // must see each event as it happens, not when a buffer fills.
            let time = response.time ?? Date()
            if let event = response.event {
                writeLine(json ? ((try? encodeJSON(EventJSON(event, time: time), pretty: false)) ?? "") : "\(clockTime(time))  \(event.summary)")
            } else if let missed = response.missedEvents {
                var line = EventJSON(type: "missed", time: time)
                line.count = missed
                writeLine(json ? ((try? encodeJSON(line, pretty: false)) ?? "") : "\(clockTime(time))  (missed \(missed) events)")
            }
            return true
        }
    }
}

// MARK: Output

func encodeJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { column in ([header] + rows).map { terminalWidth($0[column]) }.max() ?? 0 }
    for row in [header] + rows {
        print(row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : padded(cell, to: widths[index])
        }.joined(separator: "  "))
    }
}

func printFields(_ fields: [(String, String)]) {
    let width = fields.map { terminalWidth($0.0) }.max() ?? 0
    for (name, value) in fields { print("\(padded(name, to: width))  \(value)") }
}

/// `text` with spaces after it to fill `width` terminal cells.
func padded(_ text: String, to width: Int) -> String {
    text + String(repeating: " ", count: max(0, width - terminalWidth(text)))
}

/// The cells `text` takes in a terminal: two for each wide (East Asian) character or
/// emoji, none for combining marks and other zero-width characters, one for the rest.
func terminalWidth(_ text: String) -> Int {
    text.reduce(0) { width, character in
        guard let first = character.unicodeScalars.first else { return width }
        if first.properties.generalCategory == .nonspacingMark || first.properties.generalCategory == .format
            || first.properties.generalCategory == .enclosingMark
        {
            return width
        }
        if first.properties.isEmojiPresentation || isWide(first.value) { return width + 2 }
        return width + 1
    }
}

/// East Asian Wide and Fullwidth ranges (Unicode's EastAsianWidth W and F, in blocks).
private func isWide(_ value: UInt32) -> Bool {
    switch value {
    case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF, 0xA960...0xA97F, 0xAC00...0xD7A3,
        0xF900...0xFAFF, 0xFE10...0xFE19, 0xFE30...0xFE6F, 0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1F9FF, 0x20000...0x2FFFD,
        0x30000...0x3FFFD:
        return true
    default:
        return false
    }
}

func writeLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// SIGINT and SIGTERM, caught from the moment ``install()`` is called: a signal that
/// comes before anyone waits is kept, not lost to the default action.
final class TerminationSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var received: String?
    private var waiter: CheckedContinuation<String, Never>?
    private var sources: [DispatchSourceSignal] = []

    static func install() -> TerminationSignal {
        let termination = TerminationSignal()
        for (number, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { termination.deliver(name) }
            source.resume()
            termination.sources.append(source)
        }
        return termination
    }

    private func deliver(_ name: String) {
        let waiting = lock.withLock { () -> CheckedContinuation<String, Never>? in
            guard received == nil else { return nil }
            received = name
            defer { waiter = nil }
            return waiter
        }
        waiting?.resume(returning: name)
    }

    /// The first signal caught, waiting for one if none has come yet.
    func wait() async -> String {
        await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
            let already = lock.withLock { () -> String? in
                if received == nil { waiter = continuation }
                return received
            }
            if let already { continuation.resume(returning: already) }
        }
    }
}
