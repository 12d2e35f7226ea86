import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// A host whose plugins directory is a fresh temporary folder, with short grace periods.
func makeHost(grace: Duration = .milliseconds(100)) throws -> (host: KizunaHost, directory: String) {
    let directory = Fixtures.temporaryDirectory()
    let configuration = HostConfiguration(
        runtime: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil),
        pluginsDirectory: directory, searchPath: [], installDirectory: Fixtures.buildDirectory,
        controlSocketPath: "\(directory)/control.sock", stopGracePeriod: grace, cancellationGracePeriod: grace,
        stateDirectory: "\(directory)/state")
    return (try KizunaHost(configuration: configuration), directory)
}

/// Waits for the first event on `receiver` that matches.
func waitForEvent(_ receiver: BroadcastReceiver<HostEvent>, _ matches: (HostEvent) -> Bool) async -> HostEvent? {
    while let message = await receiver.receive() {
        if case .element(let event) = message, matches(event) { return event }
    }
    return nil
}

@Suite(.timeLimit(.minutes(1))) struct HostTests {
    @Test func pluginsOfEveryKindLoadRunAndStop() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "memory", kind: .transport, library: Fixtures.library("FixtureTransport"), extra: "provides = [\"transport\"]")
        Fixtures.writeManifest(in: directory, name: "files", kind: .fileTransfer, library: Fixtures.library("FixtureFileTransfer"), extra: "provides = [\"file-transfer\"]")
        Fixtures.writeManifest(in: directory, name: "frames", kind: .streaming, library: Fixtures.library("FixtureStreaming"))
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"), extra: "[settings]\npeers = [\"aiko@127.0.0.1:7000\"]")
        let events = host.events.subscribe()

        let failures = await host.loadAll()
        #expect(failures.isEmpty, "\(failures)")
        let plugins = try await host.list()
        #expect(Set(plugins.map(\.name)) == ["memory", "files", "frames", "finder"])
        #expect(plugins.allSatisfy { $0.state == .running })
        // Transports start before the plugins that require them.
        #expect(plugins.firstIndex { $0.name == "memory" }! < plugins.firstIndex { $0.name == "files" }!)

        let found = await waitForEvent(events) { if case .peerFound = $0 { true } else { false } }
        #expect(found == .peerFound(Peer(id: "aiko", name: "aiko", addresses: [PeerAddress(host: "127.0.0.1", port: 7000)])))
        #expect(host.state.peers["aiko"] != nil)
        #expect(try await host.info("finder").eventsPublished == 1)
        #expect(host.state.plugins["files"] == .running)

        let report = await host.shutdown()
        #expect(report.drained, "\(report)")
        #expect(host.state.plugins.values.allSatisfy { $0 == .stopped })
        #expect(host.state.peers.isEmpty)  // the discovery plugin withdrew its peer on shutdown
    }

    @Test func theFileTransferReachesItsPeerThroughTheTransportAndTheHostsRouting() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "memory", kind: .transport, library: Fixtures.library("FixtureTransport"))
        Fixtures.writeManifest(in: directory, name: "files", kind: .fileTransfer, library: Fixtures.library("FixtureFileTransfer"), extra: "provides = [\"file-transfer\"]")
        #expect(await host.loadAll().isEmpty)
        guard case .fileTransfer(let sender)? = await host.subsystem(.fileTransfer) else {
            Issue.record("no file-transfer subsystem")
            return
        }
        let file = "\(directory)/payload.bin"
        try Data(repeating: 7, count: 100_000).write(to: URL(fileURLWithPath: file))
        let progress = try await sender.send(path: file, to: Peer(id: "me", name: "me", addresses: [PeerAddress(host: "memory", port: 0)]), progress: { _ in })
        // The receiving side (the same plugin, reached as an inbound connection routed by
        // the host) counted every byte.
        #expect(progress.bytesDone == 100_000)
        #expect(progress.bytesTotal == 100_000)
        await host.shutdown()
    }

    @Test func aPluginThatNeedsATransportIsRefusedWithoutOne() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "files", kind: .fileTransfer, library: Fixtures.library("FixtureFileTransfer"))
        let error = await #expect(throws: PluginLoadError.self) { try await host.load("files") }
        #expect(error?.code == .requirementMissing)
        #expect(error?.message.contains("requires a transport plugin and none is running") == true)
        #expect(try await host.list().isEmpty)
        await host.shutdown()
    }

    @Test func aSecondPluginWithTheSameNameIsRefused() async throws {
        let (host, directory) = try makeHost()
        let first = Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        let other = Fixtures.temporaryDirectory()
        let second = Fixtures.writeManifest(in: other, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        _ = try await host.load(first)
        let error = await #expect(throws: PluginLoadError.self) { try await host.load(second) }
        #expect(error?.code == .nameClash)
        #expect(error?.message.contains("already loaded from \(first)") == true)
        #expect(try await host.info("finder").state == .running)
        await host.shutdown()
    }

    @Test func aPluginWhoseRunThrowsIsFailedWithTheReasonAndTheHostGoesOn() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "broken", kind: .discovery, library: Fixtures.library("FixtureThrowing"))
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        let events = host.events.subscribe()
        _ = try await host.load("broken")
        let failed = await waitForEvent(events) { if case .pluginStateChanged("broken", .failed) = $0 { true } else { false } }
        #expect(failed == .pluginStateChanged(name: "broken", state: .failed(reason: "run threw: the fixture's run throws on purpose")))
        #expect(try await host.info("broken").state == .failed(reason: "run threw: the fixture's run throws on purpose"))
        #expect(try await host.load("finder").state == .running)
        _ = try await host.unload("broken")
        await host.shutdown()
    }

    @Test func aPluginIsRunningOnlyOnceItIsReadyAndOneThatNeverIsFails() async throws {
        let directory = Fixtures.temporaryDirectory()
        let host = try KizunaHost(configuration: HostConfiguration(
            runtime: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil), pluginsDirectory: directory, searchPath: [],
            installDirectory: Fixtures.buildDirectory, controlSocketPath: "\(directory)/control.sock", stopGracePeriod: .seconds(2),
            startTimeout: .milliseconds(300), stateDirectory: "\(directory)/state"))
        Fixtures.writeManifest(in: directory, name: "silent", kind: .discovery, library: Fixtures.library("FixtureNeverReady"))
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        let events = host.events.subscribe()
        let silent = try await host.load("silent")
        #expect(silent.state == .failed(reason: "did not call context.ready() within 0.3 seconds of starting; it was stopped. Call ready() in run once the plugin serves"))
        var states: [PluginState] = []
        while case .element(.pluginStateChanged("silent", let state))? = events.tryReceive() { states.append(state) }
        #expect(states == [.loaded, .starting, .stopping, .stopped, silent.state])  // never running; stopped, not stuck
        // A plugin that calls ready is running when load returns.
        #expect(try await host.load("finder").state == .running)
        #expect(try await host.list().map(\.name) == ["silent", "finder"])
        await host.shutdown()
    }

    @Test func aPluginThatIgnoresShutdownIsCancelledAndItsLeftoversCounted() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "deaf", kind: .discovery, library: Fixtures.library("FixtureIgnoresShutdown"))
        _ = try await host.load("deaf")
        let report = try await host.unload("deaf")
        #expect(report.state == .stopped)
        #expect(report.leftoverTasks == 1)  // its background scan, cancelled with it
        #expect(report.tasks == 0)
        #expect(try await host.list().isEmpty)
        await host.shutdown()
    }

    @Test func aPluginThatNeverReturnsIsReportedStuckAndTheHostGoesOn() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "stuck", kind: .discovery, library: Fixtures.library("FixtureNeverReturns"))
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        _ = try await host.load("stuck")
        let report = try await host.unload("stuck")
        #expect(report.state == .stuck(tasks: 1))
        #expect(try await host.load("finder").state == .running)
        _ = try await host.unload("finder")
    }

    @Test func aTransportInUseCannotBeUnloaded() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "memory", kind: .transport, library: Fixtures.library("FixtureTransport"))
        Fixtures.writeManifest(in: directory, name: "files", kind: .fileTransfer, library: Fixtures.library("FixtureFileTransfer"))
        #expect(await host.loadAll().isEmpty)
        let error = await #expect(throws: PluginLoadError.self) { try await host.unload("memory") }
        #expect(error?.message.contains("plugin 'files' (file-transfer) requires this transport; unload 'files' first") == true)
        _ = try await host.unload("files")
        #expect(try await host.unload("memory").state == .stopped)
        await host.shutdown()
    }

    @Test func everyLoadMapsAPrivateContentAddressedCopy() async throws {
        let (host, directory) = try makeHost()
        let library = "\(directory)/libFixtureDiscovery.so"
        try FileManager.default.copyItem(atPath: Fixtures.library("FixtureDiscovery"), toPath: library)
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so")
        let first = try await host.load("finder")
        let original = try Fixtures.sha256(ofFile: library)
        #expect(first.library == library)
        #expect(first.image == "\(directory)/state/images/\(original)/libFixtureDiscovery.so")
        #expect(first.sha256 == original)
        // The copy is the host's alone: read and execute for its owner, nobody may write it.
        let attributes = try FileManager.default.attributesOfItem(atPath: try #require(first.image))
        #expect((attributes[.posixPermissions] as? Int) == 0o500)

        // Same build: the same image, a fresh instance.
        let same = try await host.reload("finder")
        #expect(same.library == library && same.image == first.image && same.state == .running)

        // A new build (bytes appended past the ELF contents change its hash, not its code).
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: library))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("new build".utf8))
        try handle.close()
        let digest = try Fixtures.sha256(ofFile: library)
        let reloaded = try await host.reload("finder")
        #expect(reloaded.library == library)
        #expect(reloaded.image == "\(directory)/state/images/\(digest)/libFixtureDiscovery.so")
        #expect(reloaded.sha256 == digest)
        #expect(reloaded.state == .running)
        await host.shutdown()
    }

    @Test func aFailedReloadLeavesTheOldBuildRunning() async throws {
        let (host, directory) = try makeHost()
        let library = "\(directory)/libFixtureDiscovery.so"
        try FileManager.default.copyItem(atPath: Fixtures.library("FixtureDiscovery"), toPath: library)
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: "libFixtureDiscovery.so")
        _ = try await host.load("finder")
        try FileManager.default.removeItem(atPath: library)
        try "oops".write(toFile: library, atomically: true, encoding: .utf8)
        let error = await #expect(throws: PluginLoadError.self) { try await host.reload("finder") }
        #expect(error?.code == .notASharedLibrary)
        #expect(try await host.info("finder").state == .running)
        await host.shutdown()
    }

    @Test func aLoadThatFindsNothingNamesEveryPathTried() async throws {
        let (host, directory) = try makeHost()
        let error = await #expect(throws: PluginLoadError.self) { try await host.load("nowhere") }
        #expect(error?.code == .notFound)
        #expect(error?.message.contains("\(directory)/nowhere.toml") == true)
        #expect(error?.message.contains("\(Fixtures.buildDirectory)/nowhere.toml") == true)

        Fixtures.writeManifest(in: directory, name: "lost", kind: .discovery, library: "libLost.so")
        let missing = await #expect(throws: PluginLoadError.self) { try await host.load("lost") }
        #expect(missing?.message.contains("tried \(directory)/libLost.so, \(Fixtures.buildDirectory)/libLost.so") == true)
        await host.shutdown()
    }

    @Test func oneBadManifestDoesNotStopTheOthers() async throws {
        let (host, directory) = try makeHost()
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        try "schema = 1\nname = \"bad\"\ncolour = 1\n".write(toFile: "\(directory)/bad.toml", atomically: true, encoding: .utf8)
        Fixtures.writeManifest(in: directory, name: "noentry", kind: .discovery, library: Fixtures.library("FixtureNoEntry"))
        let failures = await host.loadAll()
        #expect(failures.map(\.code).sorted { $0.rawValue < $1.rawValue } == [.entrySymbolMissing, .manifestInvalid])
        #expect(failures.contains { $0.file == "\(directory)/bad.toml:3" && $0.message.hasPrefix("field 'colour' is not a manifest key") })
        #expect(try await host.list().map(\.name) == ["finder"])
        await host.shutdown()
    }

    @Test func callsAfterShutdownFailClearly() async throws {
        let (host, _) = try makeHost()
        await host.shutdown()
        let error = await #expect(throws: PluginLoadError.self) { try await host.list() }
        #expect(error?.code == .hostShutDown)
        #expect(error?.message.contains("the host is shut down and takes no more requests") == true)
        await #expect(throws: PluginLoadError.self) { try await host.load("anything") }
    }
}
