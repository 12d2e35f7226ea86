public import KizunaSDK

/// What the host reports about one plugin (`kizuna plugins list` and `info`).
public struct PluginInfo: Sendable, Hashable, Codable {
    public var name: String
    public var kind: PluginKind
    public var version: String
    public var state: PluginState
    /// The library file the plugin was loaded from.
    public var library: String
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
    /// Events the plugin has published.
    public var eventsPublished: Int
    /// Tasks that were still alive when the plugin stopped (cancelled by the host).
    public var leftoverTasks: Int
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
    public var controlSocket: String
    public var sdkVersion: String
    public var swiftVersion: String
}
