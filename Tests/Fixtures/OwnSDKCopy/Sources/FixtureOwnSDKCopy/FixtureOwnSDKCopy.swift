// Test fixture: a discovery plugin linked against its own, static copy of the SDK.
import KizunaSDK

final class FixtureOwnSDKCopy: DiscoveryPlugin {
    func run(context: PluginContext) async throws { await context.shutdown.wait() }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureOwnSDKCopy() } }
