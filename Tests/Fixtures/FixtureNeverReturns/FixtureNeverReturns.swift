// Test fixture: a discovery plugin whose run never returns, not even when cancelled.
import KizunaSDK

final class FixtureNeverReturns: DiscoveryPlugin {
    func run(context: PluginContext) async throws {
        context.ready()
        await withUnsafeContinuation { (_: UnsafeContinuation<Void, Never>) in }  // never resumed
    }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureNeverReturns() } }
