// Test fixture: a plugin that takes every thread of the runtime's blocking pool (and
// queues a few jobs more) until it is stopped, as a transport that waits for each idle
// connection through `spawnBlocking` would. Nothing else in the host may need that pool
// to answer: the control socket, the transport and file transfer must go on serving.
import Dispatch
import KizunaSDK

final class FixtureHogsBlockingPool: DiscoveryPlugin {
    func run(context: PluginContext) async throws {
        let release = DispatchSemaphore(value: 0)
        let jobs = Int(context.settings.integer("jobs") ?? 520)
        var handles: [Task<Void, any Error>] = []
        for _ in 0..<jobs {
            handles.append(try context.runtime.spawnBlocking(name: "hog") { release.wait() })
        }
        context.ready()
        await context.shutdown.wait()
        for _ in 0..<jobs { release.signal() }
        for handle in handles { _ = try? await handle.value }
    }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureHogsBlockingPool() } }
