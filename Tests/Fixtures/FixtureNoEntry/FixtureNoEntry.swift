// Test fixture: a plugin class in a library that forgot to export it.
import KizunaSDK

final class FixtureNoEntry: DiscoveryPlugin {
    func run(context: PluginContext) async throws {}
    func currentPeers() async -> [Peer] { [] }
}

public func notTheEntry() -> Int { 42 }
