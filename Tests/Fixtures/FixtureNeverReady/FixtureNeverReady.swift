// Test fixture: a discovery plugin that serves until shutdown but never calls
// context.ready(), so a host must give up on it.
import KizunaSDK

final class FixtureNeverReady: DiscoveryPlugin {
    func run(context: PluginContext) async throws {
        await context.shutdown.wait()
    }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureNeverReady() } }
