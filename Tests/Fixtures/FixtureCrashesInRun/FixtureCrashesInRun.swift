// Test fixture for the conformance suite: a discovery plugin whose run crashes the process.
import KizunaSDK

final class FixtureCrashesInRun: DiscoveryPlugin {
    func run(context: PluginContext) async throws {
        fatalError("fixture: crashes in run")
    }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureCrashesInRun() } }
