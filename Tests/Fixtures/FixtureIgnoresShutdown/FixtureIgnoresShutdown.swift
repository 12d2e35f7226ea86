// Test fixture: a discovery plugin that ignores its shutdown subscription but stops when
// cancelled, and keeps a background task of its own running.
import KizunaSDK

final class FixtureIgnoresShutdown: DiscoveryPlugin {
    func run(context: PluginContext) async throws {
        context.ready()
        let never = ShutdownSignal()
        try context.runtime.spawn(name: "background-scan") { await never.subscribe().wait() }
        await never.subscribe().wait()  // returns only when the host cancels the plugin
    }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureIgnoresShutdown() } }
