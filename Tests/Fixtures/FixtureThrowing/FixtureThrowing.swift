// Test fixture: a discovery plugin whose run fails at once.
import KizunaSDK

struct FixtureFailure: Error, CustomStringConvertible {
    var description: String { "the fixture's run throws on purpose" }
}

final class FixtureThrowing: DiscoveryPlugin {
    func run(context: PluginContext) async throws { throw FixtureFailure() }
    func currentPeers() async -> [Peer] { [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureThrowing() } }
