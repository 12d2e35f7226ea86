import Foundation
import Glibc
public import KizunaSDK
import Synchronization

/// A Kizuna host: the runtime, the event bus, the shared state, and the plugins that
/// provide every subsystem, each moved through its lifecycle here.
///
/// Every method checks that the host is not shut down; calls after ``shutdown()`` fail
/// with ``PluginLoadError/Code/hostShutDown``.
public actor KizunaHost {
    /// How the host was set up.
    public nonisolated let configuration: HostConfiguration
    /// The runtime the host and every plugin run on.
    public nonisolated let runtime: AsyncRuntime
    /// Peers, connections, transfers and plugin states, readable from any thread.
    public nonisolated let state = SharedState()
    /// The host's event bus; every shared-state change is published on it.
    public nonisolated let events: EventBus
    /// Pairing requests to and from peers (service `pairing` on the transport).
    public nonisolated let pairing: PairingService
    private let search: PluginSearch
    private let logger: Logger
    /// The private copies every library is mapped from.
    private let images: PluginImageStore
    /// Which copy each library file was and what probing it found, kept between starts.
    private var memory: PluginLoadMemory
    /// The child-process probe; nil when no `kizuna` executable was found to run it.
    private let probe: PluginProbe?
    /// Plugins the probe refused, by name, with why (shown by ``list()``) until a load of
    /// the same name succeeds.
    private var blocked: [String: PluginInfo] = [:]

    private var plugins: [String: LoadedPlugin] = [:]
    /// Plugin names in the order they were started.
    private var startOrder: [String] = []
    private var isShutDown = false
    /// What running plugins provide, for ``HostIdentity/services``, readable from any thread.
    private nonisolated let offeredServices = Mutex<[String]>([])
    /// Who this host is, as its plugins announce it.
    public nonisolated var identity: HostIdentity {
        HostIdentity(
            id: configuration.hostID, name: configuration.hostName, version: SDKInfo.version,
            services: { [weak self] in self?.offeredServices.withLock { $0 } ?? [] })
    }

    /// Creates a host and starts its runtime; no plugin is loaded yet.
    /// - Throws: ``RuntimeError`` if the runtime configuration is invalid.
    public init(configuration: HostConfiguration = HostConfiguration()) throws(RuntimeError) {
        // A write to a socket whose peer has gone must fail with EPIPE, never end the host,
        // whichever plugins are loaded and however they write.
        signal(SIGPIPE, SIG_IGN)
        self.configuration = configuration
        runtime = try AsyncRuntime(configuration: configuration.runtime)
        events = EventBus(capacity: 4096, state: state)
        pairing = PairingService(me: configuration.hostID, name: configuration.hostName, trust: configuration.trust, events: events)
        search = PluginSearch(directories: configuration.manifestDirectories, installDirectory: configuration.installDirectory)
        logger = Logger(label: "kizuna.host")
        images = PluginImageStore(stateDirectory: configuration.stateDirectory)
        probe = configuration.probeExecutable.map { PluginProbe(executable: $0, timeout: configuration.probeTimeout) }
        memory = PluginLoadMemory(stateDirectory: configuration.stateDirectory, probe: configuration.probeExecutable)
        if configuration.probeAgain { memory.forgetVerdicts() }
        if probe == nil {
            logger.warning("no kizuna executable to probe plugin libraries with was found in \(configuration.installDirectory); libraries are opened in the host without a probe")
        }
    }

    // MARK: Loading

    /// Loads every plugin whose manifest is in the search directories: those that require
    /// nothing first, then those that require them, discovery last among its rank.
    /// - Returns: the failures; one bad plugin never stops the others.
    @discardableResult
    public func loadAll() async -> [PluginLoadError] {
        var failures: [PluginLoadError] = []
        var manifests: [PluginManifest] = []
        for file in search.manifestFiles() {
            do {
                manifests.append(try PluginManifest(contentsOf: file))
            } catch {
                failures.append(PluginLoadError(.manifestInvalid, plugin: nil, file: error.location, error.detail))
            }
        }
        // Plugins that need others start after them; discovery starts last of its rank, so
        // it announces every service from the first announcement. Ties keep search order.
        manifests = manifests.enumerated().sorted { a, b in
            (a.element.requiredKinds.count, a.element.kind == .discovery ? 1 : 0, a.offset) < (b.element.requiredKinds.count, b.element.kind == .discovery ? 1 : 0, b.offset)
        }.map(\.element)
        // Every library is copied and probed at once, each in its own child, before any
        // starts: a slow probe costs its own time, not everyone's.
        let examined = await examine(manifests)
        // Copies no remembered file and no loaded plugin uses, once per start.
        let keep = memory.digests.union(plugins.values.map(\.library.sha256))
        let store = images
        Thread.detachNewThread { store.prune(keeping: keep, olderThan: Duration.seconds(86_400)) }
        for manifest in manifests {
            do {
                _ = try await start(manifest, examined: examined[manifest.path])
            } catch {
                failures.append(error)
            }
        }
        for failure in failures { logger.error("\(failure)") }
        return failures
    }

    /// The private copy of each manifest's library and what its probe found (remembered, or
    /// probed now, concurrently), or why there is none.
    private func examine(_ manifests: [PluginManifest], probeAgain: Bool = false) async -> [String: Result<PluginImage, PluginLoadError>] {
        var sources: [(manifest: PluginManifest, source: String)] = []
        var results: [String: Result<PluginImage, PluginLoadError>] = [:]
        for manifest in manifests {
            do throws(PluginLoadError) {
                sources.append((manifest, try search.library(for: manifest)))
            } catch {
                results[manifest.path] = .failure(error)
            }
        }
        let memory = memory, images = images, probe = probe
        let found = await withTaskGroup(of: (PluginManifest, Examination).self) { group in
            for (manifest, source) in sources {
                group.addTask { (manifest, await Self.examine(manifest, source: source, images: images, memory: memory, probe: probe, probeAgain: probeAgain)) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        for (manifest, examination) in found {
            if let image = examination.image { self.memory.remember(image, verdict: examination.fresh) }
            results[manifest.path] = examination.result
        }
        self.memory.save()
        return results
    }

    /// What examining one library found: its copy (if it got that far), the probe's
    /// verdict if it is new (to remember), and whether it may be opened.
    private struct Examination: Sendable {
        var image: PluginImage?
        var fresh: ProbeVerdict?
        var result: Result<PluginImage, PluginLoadError>
    }

    /// Copies `source` privately (or finds the copy of this very file) and, unless its
    /// verdict is remembered, probes the copy. The result is a failure if the file is
    /// unfit, its pin does not match, or the probe refused it (remembered or new).
    private nonisolated static func examine(
        _ manifest: PluginManifest, source: String, images: PluginImageStore, memory: PluginLoadMemory, probe: PluginProbe?, probeAgain: Bool
    ) async -> Examination {
        let image: PluginImage
        do throws(PluginLoadError) {
            image = try await onOwnThread(named: "kizuna-files") { () throws(PluginLoadError) in
                try images.image(of: source, plugin: manifest.name) { memory.digest(of: $0) }
            }
        } catch {
            return Examination(result: .failure(error))
        }
        // A pinned library that does not match is refused before any of its code runs,
        // in the probe or here.
        if let pinned = manifest.sha256, pinned != image.sha256 {
            return Examination(image: image, result: .failure(PluginLoadError(
                .checksumMismatch, plugin: manifest.name, file: source,
                "its SHA-256 is \(image.sha256) but the manifest pins \(pinned); if this build is the one you mean to load, update 'sha256' in \(manifest.path)")))
        }
        var fresh: ProbeVerdict?
        let verdict: ProbeVerdict
        if !probeAgain, let remembered = memory.verdict(for: image.sha256) {
            verdict = remembered
        } else if let probe {
            verdict = await probe.probe(image.path)
            fresh = verdict
        } else {
            verdict = .passed
        }
        if case .refused(let code, let message) = verdict {
            let remembered = " (remembered from an earlier probe of this same file; `kizuna plugins load --probe-again` or `kizuna run --probe-again` probes it again)"
            return Examination(image: image, fresh: fresh, result: .failure(PluginLoadError(code, plugin: manifest.name, file: source, fresh == nil ? message + remembered : message)))
        }
        return Examination(image: image, fresh: fresh, result: .success(image))
    }

    /// Loads and starts one plugin: by manifest path, or by name from the search directories.
    /// - Throws: ``PluginLoadError`` saying what is wrong and how to fix it; nothing else
    ///   in the host is disturbed.
    /// - Parameter probeAgain: probe the library again even if a result is remembered.
    public func load(_ nameOrPath: String, probeAgain: Bool = false) async throws(PluginLoadError) -> PluginInfo {
        try checkRunning()
        let manifest = try search.manifest(for: nameOrPath)
        try checkCanStart(manifest)
        return try await start(manifest, examined: probeAgain ? await examine([manifest], probeAgain: true)[manifest.path] : nil)
    }

    private func start(_ manifest: PluginManifest, examined: Result<PluginImage, PluginLoadError>? = nil) async throws(PluginLoadError) -> PluginInfo {
        try checkRunning()
        try checkCanStart(manifest)
        let image = try await image(for: manifest, examined: examined)
        let library = try PluginLibrary.open(manifest, image: image)
        let info = try await start(manifest, library: library, plugin: try library.makePlugin(for: manifest))
        blocked[manifest.name] = nil
        return info
    }

    /// The checked private copy of `manifest`'s library: `examined` if given, else found
    /// now. A probe's refusal is recorded in ``blocked``.
    private func image(for manifest: PluginManifest, examined: Result<PluginImage, PluginLoadError>? = nil) async throws(PluginLoadError) -> PluginImage {
        let result: Result<PluginImage, PluginLoadError>
        if let examined {
            result = examined
        } else {
            result = await examine([manifest])[manifest.path] ?? .failure(PluginLoadError(.notFound, plugin: manifest.name, file: manifest.path, "was not examined"))
        }
        do throws(PluginLoadError) {
            let image = try result.get()
            try checkRunning()
            return image
        } catch {
            if error.code == .probeFailed {
                blocked[manifest.name] = PluginInfo(
                    name: manifest.name, kind: manifest.kind, version: manifest.version, state: .failed(reason: "blocked: \(error.message)"),
                    library: error.file, image: nil, manifest: manifest.path, sha256: nil, descriptor: nil, description: manifest.description,
                    provides: manifest.provides, requires: manifest.requiredKinds, tasks: 0, permitsHeld: 0, eventsPublished: 0, leftoverTasks: 0)
            }
            throw error
        }
    }

    private func checkCanStart(_ manifest: PluginManifest) throws(PluginLoadError) {
        if let existing = plugins[manifest.name] {
            throw PluginLoadError(
                .nameClash, plugin: manifest.name, file: manifest.path,
                "a plugin with this name is already loaded from \(existing.manifest.path); unload it first, or give this one another name")
        }
        for kind in manifest.requiredKinds where runningPlugin(of: kind) == nil {
            throw PluginLoadError(
                .requirementMissing, plugin: manifest.name, file: manifest.path,
                "requires a \(kind) plugin and none is running; load one first (for example `kizuna plugins load NAME` with a \(kind) plugin)")
        }
    }

    private func start(_ manifest: PluginManifest, library: PluginLibrary, plugin object: PluginObject) async throws(PluginLoadError) -> PluginInfo {
        let plugin = object.plugin
        let loaded = LoadedPlugin(manifest: manifest, library: library, object: object, scope: runtime.handle.scoped(manifest.name), bus: events.view())
        plugins[manifest.name] = loaded
        startOrder.append(manifest.name)
        setState(loaded, .loaded)

        var transport: (any TransportPlugin)?
        if manifest.requiredKinds.contains(.transport), case .transport(let running)? = runningPlugin(of: .transport)?.object {
            transport = running
        }
        let settings = PluginSettings(manifest.settings.values.merging(configuration.settingsByKind[manifest.kind] ?? [:]) { $1 })
        let context = PluginContext(
            name: manifest.name, host: identity, runtime: loaded.scope, shutdown: loaded.shutdown.subscribe(), events: loaded.bus,
            state: state, settings: settings, logger: Logger(label: "kizuna.plugin.\(manifest.name)"),
            transport: transport, inbound: loaded.inbound,
            router: { [weak self] connection in await self?.route(connection) },
            credentials: manifest.kind == .transport ? configuration.identity.credentials : nil, trust: configuration.trust.view,
            onReady: { [ready = loaded.ready, settled = loaded.startSettled] in
                ready.signal()
                settled.signal()
            })
        setState(loaded, .starting)
        do {
            let runTask = try loaded.scope.spawn(name: "\(manifest.name).run") { try await plugin.run(context: context) }
            let finished = loaded.runFinished
            let settled = loaded.startSettled
            try runtime.handle.spawn(name: "\(manifest.name).monitor") { [weak self] in
                let result = await runTask.result
                finished.signal()
                settled.signal()
                await self?.runEnded(loaded, result)
            }
        } catch {
            plugins[manifest.name] = nil
            startOrder.removeAll { $0 == manifest.name }
            throw PluginLoadError(.hostShutDown, plugin: manifest.name, file: manifest.path, "the host is shutting down and starts no plugins")
        }
        // Running once it says it serves; if run ends first, runEnded reports why.
        let settledInTime = await loaded.startSettled.subscribe().wait(within: configuration.startTimeout)
        if loaded.ready.isSignalled, !loaded.runFinished.isSignalled, plugins[manifest.name] === loaded, loaded.state == .starting {
            setState(loaded, .running)
            logger.info("plugin started", metadata: ["plugin": "\(manifest.name)", "kind": "\(manifest.kind)"])
        } else if loaded.runFinished.isSignalled {
            // run ended before it was ready: wait for runEnded to record why.
            _ = await loaded.endHandled.subscribe().wait(within: configuration.cancellationGracePeriod * 3)
        } else if !settledInTime, plugins[manifest.name] === loaded {
            _ = await stop(loaded)
            setState(loaded, .failed(reason: "did not call context.ready() within \(configuration.startTimeout) of starting; it was stopped. Call ready() in run once the plugin serves"))
            logger.error("plugin did not become ready", metadata: ["plugin": "\(manifest.name)"])
        }
        return info(of: loaded)
    }

    /// `run` returned or threw without being asked to stop.
    private func runEnded(_ loaded: LoadedPlugin, _ result: Result<Void, any Error>) async {
        defer { loaded.endHandled.signal() }
        guard plugins[loaded.manifest.name] === loaded, loaded.state != .stopping else { return }
        await settleLeftovers(of: loaded)
        guard plugins[loaded.manifest.name] === loaded, loaded.state != .stopping else { return }
        switch result {
        case .success:
            setState(loaded, .stopped)
        case .failure(let error):
            setState(loaded, .failed(reason: "run threw: \(error)"))
        }
    }

    // MARK: Unloading and reloading

    /// Stops a plugin and forgets it: its shutdown subscription fires, it has the grace
    /// period to return, then its tasks are cancelled; one that still does not return is
    /// reported stuck. Its library stays mapped (Swift code is never unloaded).
    /// - Throws: ``PluginLoadError`` if no such plugin is loaded, or a running plugin needs it.
    public func unload(_ name: String) async throws(PluginLoadError) -> PluginInfo {
        try checkRunning()
        let loaded = try plugin(named: name)
        if let dependent = dependents(of: loaded).first {
            throw PluginLoadError(
                .requirementMissing, plugin: name, file: loaded.manifest.path,
                "plugin '\(dependent.manifest.name)' (\(dependent.manifest.kind)) requires this \(loaded.manifest.kind); unload '\(dependent.manifest.name)' first")
        }
        let report = await stop(loaded)
        plugins[name] = nil
        startOrder.removeAll { $0 == name }
        return report
    }

    /// Loads the plugin's current build and manifest and swaps it in. The new build is
    /// copied, probed, opened and checked first (a new build's private copy has a path of
    /// its own, which matters since Swift images are never unmapped); if it fails, the old
    /// one keeps running. Plugins that require the reloaded one are restarted.
    /// - Parameter probeAgain: probe the library again even if a result is remembered.
    public func reload(_ name: String, probeAgain: Bool = false) async throws(PluginLoadError) -> PluginInfo {
        try checkRunning()
        let old = try plugin(named: name)
        let manifest: PluginManifest
        do {
            manifest = try PluginManifest(contentsOf: old.manifest.path)
        } catch {
            throw PluginLoadError(.manifestInvalid, plugin: name, file: error.location, "\(error.detail); the loaded build keeps running")
        }
        guard manifest.name == name else {
            throw PluginLoadError(.manifestInvalid, plugin: name, file: manifest.path, "the manifest now names the plugin '\(manifest.name)'; reload keeps the name, so unload '\(name)' and load '\(manifest.name)' instead")
        }
        let library: PluginLibrary
        do {
            let examined = probeAgain ? await examine([manifest], probeAgain: true)[manifest.path] : nil
            library = try PluginLibrary.open(manifest, image: try await image(for: manifest, examined: examined))
        } catch {
            throw PluginLoadError(error.code, plugin: error.plugin, file: error.file, "\(error.message); the loaded build keeps running")
        }
        let plugin = try library.makePlugin(for: manifest)

        let dependents = dependents(of: old)
        for dependent in dependents.reversed() { _ = await stop(dependent) }
        _ = await stop(old)
        plugins[name] = nil
        startOrder.removeAll { $0 == name }
        let info = try await start(manifest, library: library, plugin: plugin)
        for dependent in dependents {
            plugins[dependent.manifest.name] = nil
            startOrder.removeAll { $0 == dependent.manifest.name }
            do {
                _ = try await start(dependent.manifest, library: dependent.library, plugin: try dependent.library.makePlugin(for: dependent.manifest))
            } catch {
                logger.error("\(error)")
            }
        }
        return info
    }

    /// Stops `loaded`: fires its subscription, waits the grace period, cancels, waits again.
    private func stop(_ loaded: LoadedPlugin) async -> PluginInfo {
        var returned = loaded.runFinished.isSignalled
        if !returned {
            setState(loaded, .stopping)
            loaded.shutdown.signal()
            returned = await loaded.runFinished.subscribe().wait(within: configuration.stopGracePeriod)
            if !returned {
                loaded.leftoverTasks += Self.countLeftovers(loaded.scope.cancelScope(), of: loaded)
                returned = await loaded.runFinished.subscribe().wait(within: configuration.cancellationGracePeriod)
            }
        }
        // A stuck plugin's tasks were cancelled and counted above; waiting again is pointless.
        if returned { await settleLeftovers(of: loaded) }
        loaded.inbound.finish()
        // Connections routed to the plugin that it never took are closed, not leaked.
        while let connection = await loaded.inbound.receive() { await connection.close() }
        if !returned {
            setState(loaded, .stuck(tasks: loaded.scope.taskCount))
        } else if case .failed = loaded.state {
            // keep the failure reason
        } else {
            setState(loaded, .stopped)
        }
        logger.info("plugin stopped", metadata: ["plugin": "\(loaded.manifest.name)", "state": "\(loaded.state)"])
        forgetPeersIfNoDiscoveryRuns(besides: loaded)
        return info(of: loaded)
    }

    /// Once the last discovery plugin stops, nothing vouches for the peers it found: they
    /// are lost (an event each), not listed for ever. (While another discovery plugin runs,
    /// they stay until it loses them.)
    private func forgetPeersIfNoDiscoveryRuns(besides stopped: LoadedPlugin) {
        guard stopped.manifest.kind == .discovery,
            !plugins.values.contains(where: { $0 !== stopped && $0.manifest.kind == .discovery && ($0.state == .running || $0.state == .starting) })
        else { return }
        for peer in state.peers.keys.sorted(by: { $0.rawValue < $1.rawValue }) { events.publish(.peerLost(peer)) }
    }

    /// After `run` has ended: gives the plugin's other tasks the cancellation grace period
    /// to finish on their own (a plugin may have just cancelled them), then cancels and
    /// counts the ones still alive, never hiding them, and waits the grace period again.
    private func settleLeftovers(of loaded: LoadedPlugin) async {
        guard loaded.scope.taskCount > 0 else { return }
        if await loaded.scope.waitForScopeTasks(within: configuration.cancellationGracePeriod) { return }
        loaded.leftoverTasks += Self.countLeftovers(loaded.scope.cancelScope(), of: loaded)
        _ = await loaded.scope.waitForScopeTasks(within: configuration.cancellationGracePeriod)
    }

    /// The cancelled tasks other than the plugin's `run`.
    private static func countLeftovers(_ cancelled: [String], of loaded: LoadedPlugin) -> Int {
        cancelled.filter { $0 != "\(loaded.manifest.name).run" }.count
    }

    // MARK: Routing

    /// The kinds of plugin that take inbound connections; a transport or discovery plugin
    /// never reads ``PluginContext/inbound``, so nothing is routed to one.
    static let kindsTakingInbound: Set<PluginKind> = [.fileTransfer, .streaming]

    /// Hands an inbound connection to the running plugin that provides its service, or
    /// closes it: no plugin serves the service, or that plugin has as many connections
    /// waiting as its queue holds. Never waits, so a flood of connections cannot stall the
    /// host.
    private func route(_ connection: any Connection) async {
        if connection.service == PairingService.service {
            let pairing = pairing
            if (try? runtime.handle.spawn(name: "pairing", { await pairing.serve(connection) })) == nil { await connection.close() }
            return
        }
        let target = plugins.values.first {
            $0.state == .running && Self.kindsTakingInbound.contains($0.manifest.kind) && $0.manifest.provides.contains(connection.service)
        }
        guard let target else {
            refusedInbound += 1
            logger.warning("no plugin serves an inbound connection; closing it", metadata: ["service": "\(connection.service)", "peer": "\(connection.peer)"])
            await connection.close()
            return
        }
        guard target.inbound.trySend(connection) else {
            refusedInbound += 1
            logger.warning(
                "an inbound connection found the plugin's queue full; closing it",
                metadata: ["plugin": "\(target.manifest.name)", "peer": "\(connection.peer)", "queued": "\(target.inbound.capacity)"])
            await connection.close()
            return
        }
    }

    /// Inbound connections closed because no plugin could take them.
    public private(set) var refusedInbound = 0

    // MARK: Actions

    /// The actions a loaded plugin declares, by name.
    public func actions(_ name: String) throws(PluginLoadError) -> [PluginAction] {
        try checkRunning()
        return try plugin(named: name).manifest.actions.values.sorted { $0.name < $1.name }
    }

    /// Calls action `action` of plugin `name` with `arguments` converted by the declared
    /// types, through libffi, as a task of the plugin. Everything is checked before the
    /// call: the action exists, the arity, each argument's syntax and range, the symbol.
    /// - Returns: the result as text (empty for void).
    public func call(_ name: String, action actionName: String, arguments: [String]) async throws(PluginLoadError) -> String {
        try checkRunning()
        let loaded = try plugin(named: name)
        guard let action = loaded.manifest.actions[actionName] else {
            let known = loaded.manifest.actions.keys.sorted()
            throw PluginLoadError(
                .actionUnknown, plugin: name, file: loaded.manifest.path,
                "declares no action '\(actionName)'; \(known.isEmpty ? "it declares none" : "its actions are \(known.joined(separator: ", "))")")
        }
        let values = try ActionCall.convert(arguments, for: action, plugin: name)
        guard let function = loaded.library.address(of: action.symbol) else {
            throw PluginLoadError(
                .actionSymbolMissing, plugin: name, file: loaded.library.path,
                "action '\(action.name)' names symbol '\(action.symbol)', which the library does not export; export `\(action.signature)` with @_cdecl(\"\(action.symbol)\") or fix 'symbol' in \(loaded.manifest.path)")
        }
        let address = UInt(bitPattern: function)
        do {
            return try await loaded.scope.spawn(name: "action \(action.name)") {
                ActionCall.invoke(UnsafeMutableRawPointer(bitPattern: address)!, action, values)
            }.value
        } catch {
            throw PluginLoadError(.hostShutDown, plugin: name, file: "", "the plugin is stopping and takes no more calls")
        }
    }

    // MARK: Queries

    /// Every loaded plugin, in start order.
    public func list() throws(PluginLoadError) -> [PluginInfo] {
        try checkRunning()
        return startOrder.compactMap { plugins[$0] }.map(info(of:)) + blocked.values.sorted { $0.name < $1.name }
    }

    /// One plugin.
    public func info(_ name: String) throws(PluginLoadError) -> PluginInfo {
        try checkRunning()
        if plugins[name] == nil, let blocked = blocked[name] { return blocked }
        return info(of: try plugin(named: name))
    }

    /// The running plugin of `kind`, if any (the subsystem slot), typed by its kind.
    public func subsystem(_ kind: PluginKind) -> PluginObject? { runningPlugin(of: kind)?.object }

    /// The host's own figures, and each running plugin's count of peers' violations.
    public func status() async throws(PluginLoadError) -> HostStatus {
        try checkRunning()
        var violations: [String: UInt64] = [:]
        for name in startOrder {
            guard let loaded = plugins[name], loaded.state == .running, let action = loaded.manifest.actions[Self.violationsAction],
                action.parameters.isEmpty, let count = try? await call(name, action: action.name, arguments: []), let value = UInt64(count)
            else { continue }
            violations[name] = value
        }
        let metrics = runtime.metrics
        return HostStatus(
            pluginCount: plugins.count,
            running: plugins.values.filter { $0.state == .running }.count,
            failed: plugins.values.filter { if case .failed = $0.state { true } else { false } }.count,
            peers: state.peers.count, connections: state.connections.count, tasksAlive: metrics.tasksAlive,
            workerThreads: metrics.workerThreads, workerQueueDepth: metrics.workerQueueDepth, permitsInUse: metrics.permitsInUse,
            refusedInbound: refusedInbound, violations: violations, controlSocket: configuration.controlSocketPath, sdkVersion: SDKInfo.version, swiftVersion: SDKInfo.compilerVersion)
    }

    /// The action through which a plugin reports how often peers broke its protocol.
    public static let violationsAction = "violations"

    /// True once ``shutdown()`` has begun.
    public var shutDown: Bool { isShutDown }

    // MARK: Shutdown

    /// Stops every plugin, the ones that require others first, then drains the runtime.
    /// Later calls return the same result at once.
    @discardableResult
    public func shutdown() async -> ShutdownReport {
        if isShutDown { return await runtime.shutdown(gracePeriod: .zero) }
        isShutDown = true
        // Reverse dependency order: plugins that require others first, each group in
        // reverse start order (the sort is stable).
        let order = startOrder.reversed().compactMap { plugins[$0] }
            .sorted { $0.manifest.requiredKinds.count > $1.manifest.requiredKinds.count }
        for loaded in order { _ = await stop(loaded) }
        events.close()
        let report = await runtime.shutdown(gracePeriod: configuration.stopGracePeriod, cancellationGracePeriod: configuration.cancellationGracePeriod)
        plugins.removeAll()
        startOrder.removeAll()
        return report
    }

    // MARK: Helpers

    private func checkRunning() throws(PluginLoadError) {
        guard !isShutDown else {
            throw PluginLoadError(.hostShutDown, plugin: nil, file: "", "the host is shut down and takes no more requests; start a new one with `kizuna run`")
        }
    }

    private func plugin(named name: String) throws(PluginLoadError) -> LoadedPlugin {
        guard let loaded = plugins[name] else {
            let known = startOrder.isEmpty ? "none is loaded" : "loaded: \(startOrder.joined(separator: ", "))"
            throw PluginLoadError(.notFound, plugin: name, file: "", "no plugin of this name is loaded (\(known)); `kizuna plugins list` shows them")
        }
        return loaded
    }

    private func runningPlugin(of kind: PluginKind) -> LoadedPlugin? {
        startOrder.compactMap { plugins[$0] }.first { $0.manifest.kind == kind && $0.state == .running }
    }

    /// Running plugins that need `loaded` (because it is the only running one of its kind).
    private func dependents(of loaded: LoadedPlugin) -> [LoadedPlugin] {
        let others = plugins.values.filter { $0 !== loaded && $0.manifest.kind == loaded.manifest.kind && $0.state == .running }
        guard others.isEmpty else { return [] }
        return startOrder.compactMap { plugins[$0] }.filter { $0.manifest.requiredKinds.contains(loaded.manifest.kind) && $0.state == .running }
    }

    private func setState(_ loaded: LoadedPlugin, _ state: PluginState) {
        loaded.state = state
        let services = Set(plugins.values.filter { $0.state == .running }.flatMap(\.manifest.provides)).sorted()
        offeredServices.withLock { $0 = services }
        events.publish(.pluginStateChanged(name: loaded.manifest.name, state: state))
    }

    private func info(of loaded: LoadedPlugin) -> PluginInfo {
        PluginInfo(
            name: loaded.manifest.name, kind: loaded.manifest.kind, version: loaded.manifest.version, state: loaded.state,
            library: loaded.library.path, image: loaded.library.image, manifest: loaded.manifest.path, sha256: loaded.library.sha256,
            descriptor: loaded.library.descriptor.description, description: loaded.manifest.description,
            provides: loaded.manifest.provides, requires: loaded.manifest.requiredKinds, tasks: loaded.scope.taskCount,
            permitsHeld: loaded.scope.permitsHeld,
            eventsPublished: loaded.bus.publishedCount, leftoverTasks: loaded.leftoverTasks)
    }
}

/// A plugin the host has loaded, and everything it was given. Mutated only by the host actor.
final class LoadedPlugin: @unchecked Sendable {
    let manifest: PluginManifest
    let library: PluginLibrary
    let object: PluginObject
    let scope: RuntimeHandle
    let bus: EventBus
    let shutdown = ShutdownSignal()
    let runFinished = ShutdownSignal()
    /// The plugin called ``PluginContext/ready()``.
    let ready = ShutdownSignal()
    /// Ready, or run ended: starting is over either way.
    let startSettled = ShutdownSignal()
    /// The host has recorded how run ended.
    let endHandled = ShutdownSignal()
    let inbound = BoundedChannel<any Connection>(capacity: 16)
    var state = PluginState.discovered
    var leftoverTasks = 0

    init(manifest: PluginManifest, library: PluginLibrary, object: PluginObject, scope: RuntimeHandle, bus: EventBus) {
        self.manifest = manifest
        self.library = library
        self.object = object
        self.scope = scope
        self.bus = bus
    }
}
