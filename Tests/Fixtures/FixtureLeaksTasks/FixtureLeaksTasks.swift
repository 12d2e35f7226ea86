// Test fixture for the conformance suite: a discovery plugin that returns from run on
// shutdown but leaves two of its tasks running (they end only when cancelled).
import KizunaSDK

final class FixtureLeaksTasks: DiscoveryPlugin {
    func run(context: PluginContext) async throws {
        let never = ShutdownSignal()
        try context.runtime.spawn(name: "leaky-scan") { await never.subscribe().wait() }
        try context.runtime.spawn(name: "leaky-timer") { await never.subscribe().wait() }
        context.ready()
        await context.shutdown.wait()
    }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureLeaksTasks() } }
