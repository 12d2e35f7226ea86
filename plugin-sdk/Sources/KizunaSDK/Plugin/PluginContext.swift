/// Who the host is, as plugins announce it to peers.
public struct HostIdentity: Sendable {
    /// The host's identity on the network, derived from its public key: the same across
    /// restarts, and proven to peers by the transport.
    public var id: PeerID
    /// A name for people (by default the machine's host name).
    public var name: String
    /// The Kizuna version the host runs.
    public var version: String
    private let currentServices: @Sendable () -> [String]

    /// Creates an identity; `services` tells, whenever asked, the services the host's
    /// running plugins provide.
    public init(id: PeerID, name: String, version: String, services: @escaping @Sendable () -> [String] = { [] }) {
        self.id = id
        self.name = name
        self.version = version
        currentServices = services
    }

    /// The services (such as `file-transfer` and `streaming`) the host offers right now.
    public var services: [String] { currentServices() }
}

/// What the host hands a plugin: a runtime handle, its shutdown subscription, the event
/// bus, the shared state, its settings, a logger, and the subsystems it requires.
public final class PluginContext: Sendable {
    /// The plugin's name, from its manifest.
    public let name: String
    /// The host the plugin runs in.
    public let host: HostIdentity
    /// A runtime handle scoped to this plugin: its tasks run on the host's workers, are
    /// counted as the plugin's, and are cancelled when the plugin goes away.
    public let runtime: RuntimeHandle
    /// Fires when the host wants the plugin to stop: on unload, reload or host shutdown.
    public let shutdown: ShutdownSubscription
    /// The host's event bus.
    public let events: EventBus
    /// The host's shared state, readable from any thread.
    public let state: SharedState
    /// The `[settings]` table of the plugin's manifest.
    public let settings: PluginSettings
    /// A logger labelled with the plugin's name.
    public let logger: Logger
    /// The loaded transport, for plugins that require one (file transfer, streaming).
    public let transport: (any TransportPlugin)?
    /// Connections peers opened for this plugin's services, delivered by the host.
    public let inbound: BoundedChannel<any Connection>
    /// The host's certificate and key, for transport plugins only (nil for the others): a
    /// transport proves the host's id with them and derives each peer's id from the key the
    /// peer proves it holds.
    public let credentials: HostCredentials?
    /// Which peers this host trusts (paired with `kizuna pair`). Accept nothing from an
    /// untrusted peer silently.
    public let trust: PeerTrust
    private let router: @Sendable (any Connection) async -> Void
    private let onReady: @Sendable () -> Void

    /// Creates a context. Hosts (and the SDK's test kit) call this; plugins receive one.
    public init(
        name: String, host: HostIdentity, runtime: RuntimeHandle, shutdown: ShutdownSubscription, events: EventBus, state: SharedState,
        settings: PluginSettings, logger: Logger, transport: (any TransportPlugin)?,
        inbound: BoundedChannel<any Connection>, router: @escaping @Sendable (any Connection) async -> Void,
        credentials: HostCredentials? = nil, trust: PeerTrust = .nobody, onReady: @escaping @Sendable () -> Void = {}
    ) {
        self.name = name
        self.host = host
        self.runtime = runtime
        self.shutdown = shutdown
        self.events = events
        self.state = state
        self.settings = settings
        self.logger = logger
        self.transport = transport
        self.inbound = inbound
        self.router = router
        self.credentials = credentials
        self.trust = trust
        self.onReady = onReady
    }

    /// Tells the host the plugin serves: a transport listens, a discovery plugin has its
    /// socket, a file-transfer plugin takes inbound connections. Call it once from `run`,
    /// when setup is done. The host reports the plugin `running` only then; a plugin that
    /// has not called it within the host's start timeout is stopped and reported failed.
    /// Calling it again does nothing.
    public func ready() { onReady() }

    /// For transports: hands an inbound connection to the plugin that serves its
    /// ``Connection/service``; the host closes connections that no plugin serves.
    public func routeInbound(_ connection: any Connection) async { await router(connection) }
}
