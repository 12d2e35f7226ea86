import Foundation
import Glibc
public import KizunaSDK

/// How a ``KizunaHost`` is set up. Every field has a default.
public struct HostConfiguration: Sendable {
    /// The runtime the host and its plugins run on.
    public var runtime: RuntimeConfiguration
    /// The plugins directory, searched first: `~/.kizuna/plugins` unless set.
    public var pluginsDirectory: String
    /// More directories to search, in order (`KIZUNA_PLUGIN_PATH`, colon-separated).
    public var searchPath: [String]
    /// Where the host itself is installed: its built-in plugins' manifests are searched
    /// there last, and plugin libraries are also looked for there. Defaults to the
    /// folder of the running executable.
    public var installDirectory: String
    /// The control socket `kizuna` commands talk to a running host through.
    public var controlSocketPath: String
    /// How long a plugin has to return from `run` after its shutdown subscription fires,
    /// before its tasks are cancelled.
    public var stopGracePeriod: Duration
    /// How long a cancelled plugin has to return before it is reported stuck.
    public var cancellationGracePeriod: Duration
    /// How long a starting plugin has to call ``PluginContext/ready()`` before it is
    /// stopped and reported failed.
    public var startTimeout: Duration
    /// What the host keeps between starts, owner-only: the private copies of plugin
    /// libraries it maps (named by content) and what probing them found.
    /// `$XDG_STATE_HOME/kizuna`, else `~/.local/state/kizuna`, unless set.
    public var stateDirectory: String
    /// The `kizuna` executable that probes plugin libraries in a child process before the
    /// host maps them: `kizuna` in the install directory unless set; nil opens libraries
    /// in the host unprobed.
    public var probeExecutable: String?
    /// How long a probe may take before the library is refused.
    public var probeTimeout: Duration
    /// Probe every library again, ignoring remembered results.
    public var probeAgain: Bool
    /// The host's key pair and certificate; `kizuna run` loads it from the state directory
    /// (``DeviceIdentity/loadOrCreate(in:)``); a fresh one in memory unless set.
    public var identity: DeviceIdentity
    /// The peers this host trusts; `kizuna run` opens the state directory's; an empty one
    /// in memory unless set.
    public var trust: TrustStore
    /// The host's identity on the network, derived from its public key.
    public var hostID: PeerID { identity.peerID }
    /// The host's name for people; the machine's host name unless set.
    public var hostName: String
    /// Settings given to every plugin of a kind, over those of its manifest (how
    /// `kizuna run --receive-dir` reaches the file-transfer plugin).
    public var settingsByKind: [PluginKind: [String: SettingValue]]

    /// Creates a configuration; every argument has the documented default.
    public init(
        runtime: RuntimeConfiguration = RuntimeConfiguration(),
        pluginsDirectory: String? = nil,
        searchPath: [String]? = nil,
        installDirectory: String? = nil,
        controlSocketPath: String? = nil,
        stopGracePeriod: Duration = .seconds(5),
        cancellationGracePeriod: Duration = .seconds(1),
        startTimeout: Duration = .seconds(10),
        stateDirectory: String? = nil,
        probeExecutable: String?? = nil,
        probeTimeout: Duration = .seconds(10),
        probeAgain: Bool = false,
        identity: DeviceIdentity? = nil,
        trust: TrustStore? = nil,
        hostName: String? = nil,
        settingsByKind: [PluginKind: [String: SettingValue]] = [:]
    ) {
        let environment = ProcessInfo.processInfo.environment
        self.runtime = runtime
        self.pluginsDirectory = pluginsDirectory ?? Self.defaultPluginsDirectory
        self.searchPath = searchPath ?? (environment["KIZUNA_PLUGIN_PATH"] ?? "").split(separator: ":").map(String.init)
        self.installDirectory = installDirectory ?? Self.executableDirectory
        self.controlSocketPath = controlSocketPath ?? Self.defaultSocketPath
        self.stopGracePeriod = stopGracePeriod
        self.cancellationGracePeriod = cancellationGracePeriod
        self.startTimeout = startTimeout
        self.stateDirectory = stateDirectory ?? Self.defaultStateDirectory
        let installed = "\(self.installDirectory)/kizuna"
        self.probeExecutable = probeExecutable ?? (access(installed, X_OK) == 0 ? installed : nil)
        self.probeTimeout = probeTimeout
        self.probeAgain = probeAgain
        self.identity = identity ?? DeviceIdentity.ephemeral()
        self.trust = trust ?? TrustStore()
        self.hostName = hostName ?? ProcessInfo.processInfo.hostName
        self.settingsByKind = settingsByKind
    }

    /// Every directory searched for manifests, in order.
    public var manifestDirectories: [String] { [pluginsDirectory] + searchPath + [installDirectory] }

    /// `~/.kizuna/plugins`.
    public static var defaultPluginsDirectory: String { homeDirectory + "/.kizuna/plugins" }

    /// `$KIZUNA_SOCKET`, else a per-user path under `$XDG_RUNTIME_DIR` or the temporary folder.
    public static var defaultSocketPath: String {
        let environment = ProcessInfo.processInfo.environment
        if let socket = environment["KIZUNA_SOCKET"], !socket.isEmpty { return socket }
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/kizuna.sock" }
        return NSTemporaryDirectory() + "kizuna-\(getuid()).sock"
    }

    /// Creates the state directory `path` owner-only (0700) if it is missing.
    /// - Throws: an error saying what is wrong and the fix if it is not a directory of
    ///   this user's, or others can write it (its identity and library copies would be
    ///   theirs to change).
    public static func prepareStateDirectory(_ path: String) throws {
        do {
            try StateDirectory.makePrivateDirectory(path)
        } catch {
            throw HostConfigurationError(description: "the state directory \(error)")
        }
    }

    /// `$XDG_STATE_HOME/kizuna`, else `~/.local/state/kizuna`.
    public static var defaultStateDirectory: String {
        if let state = ProcessInfo.processInfo.environment["XDG_STATE_HOME"], state.hasPrefix("/") { return state + "/kizuna" }
        return homeDirectory + "/.local/state/kizuna"
    }

    static var homeDirectory: String { ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory() }

    /// The built-in plugins' manifests that came with this `kizuna`: `manifests/` beside it
    /// (an installed copy, see the README's "Install"), or, for a build in a checkout
    /// (`CHECKOUT/.build/…/kizuna`), the checkout's `manifests/`. Nil if neither holds
    /// them. Searched only for what a command needs by default (the conformance suite's
    /// transport), never loaded by `run` unasked.
    public var builtinManifestsDirectory: String? {
        var candidates = ["\(installDirectory)/manifests"]
        var directory = installDirectory
        while directory.count > 1 {
            if (directory as NSString).lastPathComponent == ".build" {
                candidates.append(((directory as NSString).deletingLastPathComponent as NSString).appendingPathComponent("manifests"))
                break
            }
            directory = (directory as NSString).deletingLastPathComponent
        }
        return candidates.first { FileManager.default.fileExists(atPath: "\($0)/tcp-transport.toml") }
    }

    static var executableDirectory: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (executable as NSString).deletingLastPathComponent
    }
}

/// Holds a state directory for one host: two hosts sharing one would share an identity.
/// Released when the process ends (or this is dropped).
public final class StateDirectoryLock: Sendable {
    private let fd: Int32

    /// - Throws: ``HostConfigurationError`` if another process holds the lock.
    public init(_ stateDirectory: String) throws {
        let path = stateDirectory + "/lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw HostConfigurationError(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw HostConfigurationError(
                description: "another Kizuna host is running with the state directory \(stateDirectory) (it holds \(path)); give each host its own with --state-dir DIR")
        }
    }

    deinit { close(fd) }
}

/// A host configuration that cannot be used, and the fix.
public struct HostConfigurationError: Error, CustomStringConvertible {
    public var description: String
}
