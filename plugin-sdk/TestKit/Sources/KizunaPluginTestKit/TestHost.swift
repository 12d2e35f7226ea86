public import KizunaSDK
import Foundation

/// A small host for testing plugins in-process: the services a real Kizuna host gives a
/// plugin (a scoped runtime handle, a shutdown subscription, the event bus, shared state,
/// settings, a transport, inbound connections routed by service), and nothing else.
///
/// Several test hosts may share one runtime, so one process can hold both ends of a
/// connection. Inbound connections for a service no plugin here provides wait in
/// ``unclaimed``, for checks that exercise a transport alone.
public final class TestHost: Sendable {
    /// Who this host is.
    public let identity: HostIdentity
    /// Its event bus; every event is also recorded in ``state``.
    public let events: EventBus
    /// Its shared state.
    public let state = SharedState()
    /// Inbound connections no plugin of this host serves.
    public let unclaimed: BoundedChannel<any Connection>
    let runtime: RuntimeHandle
    /// What its transports prove its id with, if it was given an identity.
    let credentials: HostCredentials?
    /// Which peers its plugins are told they trust.
    let trust: PeerTrust
    private let plugins = Locked<[HostedPlugin]>([])

    /// Creates a host named `name` whose plugins run on `runtime`; inbound connections no
    /// plugin serves go to `unclaimed` (which several hosts may share). With `identity`,
    /// its id is that one and its transports get the credentials; else its id is random.
    /// Its plugins trust the peers `trust` names.
    public init(
        name: String, runtime: RuntimeHandle, unclaimed: BoundedChannel<any Connection> = BoundedChannel(capacity: 64),
        identity given: (id: PeerID, credentials: HostCredentials)? = nil, trust: PeerTrust = .nobody
    ) {
        self.unclaimed = unclaimed
        self.trust = trust
        credentials = given?.credentials
        identity = HostIdentity(id: given?.id ?? PeerID("\(name)-\(UUID().uuidString.prefix(8).lowercased())"), name: name, version: SDKInfo.version)
        self.runtime = runtime
        events = EventBus(capacity: 4096, state: state)
    }

    /// Starts `object` as plugin `name`: its `run` is spawned with a fresh context. A plugin
    /// that needs a transport gets the transport this host started first.
    @discardableResult
    public func start(_ object: PluginObject, name: String, settings: PluginSettings = PluginSettings(), provides: [String] = []) throws -> HostedPlugin {
        let hosted = HostedPlugin(object: object, name: name, scope: runtime.scoped(name), provides: provides.isEmpty ? [object.kind.rawValue] : provides)
        let transport = plugins.get().first { $0.isRunning && $0.object.kind == .transport }.flatMap { hosted -> (any TransportPlugin)? in
            if case .transport(let plugin) = hosted.object { return plugin }
            return nil
        }
        let context = PluginContext(
            name: name, host: identityWithServices, runtime: hosted.scope, shutdown: hosted.shutdown.subscribe(),
            events: events.view(), state: state, settings: settings, logger: Logger(label: "kizuna.test.\(name)"),
            transport: object.kind == .transport ? nil : transport,
            inbound: hosted.inbound, router: { [weak self] connection in await self?.route(connection) },
            credentials: object.kind == .transport ? credentials : nil, trust: trust, onReady: { [ready = hosted.ready] in ready.signal() })
        let plugin = object.plugin
        hosted.run = try hosted.scope.spawn(name: "\(name).run") { try await plugin.run(context: context) }
        plugins.update { $0.append(hosted) }
        return hosted
    }

    private var identityWithServices: HostIdentity {
        let plugins = plugins
        return HostIdentity(id: identity.id, name: identity.name, version: identity.version) {
            Array(Set(plugins.get().filter(\.isRunning).flatMap(\.provides))).sorted()
        }
    }

    private func route(_ connection: any Connection) async {
        let target = plugins.get().first { $0.isRunning && $0.object.kind != .transport && $0.provides.contains(connection.service) }
        do {
            try await (target?.inbound ?? unclaimed).send(connection)
        } catch {
            await connection.close()
        }
    }

    /// The running plugin of `kind` that was started first.
    public func running(_ kind: PluginKind) -> HostedPlugin? { plugins.get().first { $0.isRunning && $0.object.kind == kind } }

    /// Stops every plugin, the last started first, and closes the event bus.
    public func stopAll(grace: Duration = .seconds(5)) async {
        for plugin in plugins.get().reversed() where plugin.isRunning { _ = await plugin.stop(grace: grace) }
    }

    /// Stops everything and ends the bus.
    func close(grace: Duration) async {
        await stopAll(grace: grace)
        events.close()
    }
}

/// A plugin running in a ``TestHost``.
public final class HostedPlugin: Sendable {
    /// The plugin, typed by its kind.
    public let object: PluginObject
    /// Its name.
    public let name: String
    /// The runtime handle scoped to it: its task count is the plugin's.
    public let scope: RuntimeHandle
    let provides: [String]
    let shutdown = ShutdownSignal()
    /// Fired when the plugin calls ``PluginContext/ready()``.
    public let ready = ShutdownSignal()
    let inbound = BoundedChannel<any Connection>(capacity: 16)
    private let runTask = Locked<Task<Void, any Error>?>(nil)
    private let stopped = Locked(false)

    init(object: PluginObject, name: String, scope: RuntimeHandle, provides: [String]) {
        self.object = object
        self.name = name
        self.scope = scope
        self.provides = provides
    }

    var run: Task<Void, any Error>? {
        get { runTask.get() }
        set { runTask.set(newValue) }
    }

    var isRunning: Bool { !stopped.get() }

    /// How `run` ended, if it has: nil while it runs.
    public func runEnded(within limit: Duration) async -> Result<Void, any Error>? {
        guard let run else { return nil }
        let finished = ShutdownSignal()
        _ = try? scope.spawn(name: "watch run") {
            _ = await run.result
            finished.signal()
        }
        guard await finished.subscribe().wait(within: limit) else { return nil }
        return await run.result
    }

    /// What happened when the plugin was asked to stop.
    public struct StopReport: Sendable {
        /// `run` returned (or threw) within the grace period after its shutdown subscription fired.
        public var returnedInGrace: Bool
        /// `run` ended at all, after its tasks were cancelled if need be.
        public var ended: Bool
        /// What `run` threw, if it threw.
        public var error: String?
        /// Tasks of the plugin (other than `run`) still alive after `run` ended and a
        /// second's grace, which were then cancelled.
        public var leftoverTasks: [String]
    }

    /// Fires the plugin's shutdown subscription and waits `grace` for `run` to end; then
    /// cancels its tasks and waits a second more. Tasks still alive a second after `run`
    /// ended are cancelled and reported as leftovers.
    public func stop(grace: Duration = .seconds(5)) async -> StopReport {
        stopped.set(true)
        shutdown.signal()
        var result = await runEnded(within: grace)
        let returnedInGrace = result != nil
        if result == nil {
            _ = scope.cancelScope()
            result = await runEnded(within: .seconds(1))
        }
        inbound.finish()
        var leftovers: [String] = []
        if result != nil, !(await scope.waitForScopeTasks(within: .seconds(1))) {
            leftovers = scope.cancelScope().filter { $0 != "\(name).run" && $0 != "watch run" }
        }
        var error: String?
        if case .failure(let failure)? = result { error = "\(failure)" }
        return StopReport(returnedInGrace: returnedInGrace, ended: result != nil, error: error, leftoverTasks: leftovers)
    }
}

/// A value behind a lock, for the kit's few shared tables.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.withLock { value } }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
    func update<T>(_ body: (inout Value) -> T) -> T { lock.withLock { body(&value) } }
}
