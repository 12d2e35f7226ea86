import Foundation
public import KizunaSDK

/// What the host reports about one plugin (`kizuna plugins list` and `info`).
public struct PluginInfo: Sendable, Hashable, Codable {
    public var name: String
    public var kind: PluginKind
    public var version: String
    public var state: PluginState
    /// The library file the plugin was loaded from (the one its manifest names).
    public var library: String
    /// The host's private copy of that file, which is what the host mapped (nil when
    /// nothing was mapped).
    public var image: String?
    /// The manifest file.
    public var manifest: String
    public var sha256: String?
    /// What the plugin's descriptor said.
    public var descriptor: String?
    public var description: String?
    public var provides: [String]
    public var requires: [PluginKind]
    /// Tasks of the plugin alive right now.
    public var tasks: Int
    /// Operation permits the plugin holds right now.
    public var permitsHeld: Int
    /// Events the plugin has published.
    public var eventsPublished: Int
    /// Tasks that were still alive when the plugin stopped (cancelled by the host).
    public var leftoverTasks: Int
    /// False for a manifest that could not be read (``inspectManifests(in:)``): its kind,
    /// version and library are then unknown, and `kind` means nothing.
    public var manifestReadable = true
}

extension PluginInfo {
    /// What `manifest` declares, for a plugin not loaded: `discovered`, nothing running.
    public init(declaredBy manifest: PluginManifest, library: String? = nil) {
        self.init(
            name: manifest.name, kind: manifest.kind, version: manifest.version, state: .discovered,
            library: library ?? manifest.libraryPath, image: nil, manifest: manifest.path, sha256: manifest.sha256, descriptor: nil,
            description: manifest.description, provides: manifest.provides, requires: manifest.requiredKinds,
            tasks: 0, permitsHeld: 0, eventsPublished: 0, leftoverTasks: 0)
    }

    /// What the manifests in `directory` say, without loading anything: each plugin is
    /// `discovered`, or `failed` with the manifest's error.
    /// - Throws: ``PluginLoadError`` if the directory cannot be read.
    public static func inspectManifests(in directory: String) throws(PluginLoadError) -> [PluginInfo] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw PluginLoadError(.notFound, plugin: nil, file: directory, "cannot read this directory; check that it exists and is readable")
        }
        return names.filter { $0.hasSuffix(".toml") }.sorted().map { name in
            let path = "\(directory)/\(name)"
            do {
                return PluginInfo(declaredBy: try PluginManifest(contentsOf: path))
            } catch {
                return PluginInfo(
                    name: (name as NSString).deletingPathExtension, kind: .discovery, version: "-",
                    state: .failed(reason: "\(error)"), library: "-", image: nil, manifest: path, sha256: nil, descriptor: nil,
                    description: nil, provides: [], requires: [], tasks: 0, permitsHeld: 0, eventsPublished: 0, leftoverTasks: 0,
                    manifestReadable: false)
            }
        }
    }
}

/// What the host reports about itself (`kizuna status`).
public struct HostStatus: Sendable, Hashable, Codable {
    public var pluginCount: Int
    public var running: Int
    public var failed: Int
    public var peers: Int
    public var connections: Int
    public var tasksAlive: Int
    public var workerThreads: Int
    public var workerQueueDepth: Int
    public var permitsInUse: Int
    /// Inbound connections the host closed because no running plugin could take them
    /// (their service is served by nobody, or its plugin's queue was full).
    public var refusedInbound: Int
    /// What peers did wrong, by plugin: the count each running plugin reports through an
    /// action named `violations` (connections or messages it refused for breaking its
    /// protocol or its limits). Plugins without such an action are not listed.
    public var violations: [String: UInt64]
    public var controlSocket: String
    public var sdkVersion: String
    public var swiftVersion: String
}
