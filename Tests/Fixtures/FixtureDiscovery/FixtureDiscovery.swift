// Test fixture: a discovery plugin that "finds" the peers listed in its settings
// (`peers = ["id@host:port", …]`) when it starts and loses them when it stops.
import KizunaSDK

final class FixtureDiscovery: DiscoveryPlugin {
    private let found = ThreadSafe<[Peer]>([])

    func run(context: PluginContext) async throws {
        var peers: [Peer] = []
        if case .array(let entries) = context.settings.values["peers"] {
            for case .string(let entry) in entries {
                let parts = entry.split(separator: "@")
                let address = parts.last.map { $0.split(separator: ":") } ?? []
                let port = address.count == 2 ? Int(address[1]) ?? 0 : 0
                peers.append(Peer(id: PeerID(String(parts[0])), name: String(parts[0]), addresses: [PeerAddress(host: String(address.first ?? "127.0.0.1"), port: port)]))
            }
        }
        try await found.write { $0 = peers }
        for peer in peers { context.events.publish(.peerFound(peer)) }
        context.logger.info("fixture discovery announcing", metadata: ["peers": "\(peers.count)"])
        await context.shutdown.wait()
        for peer in peers { context.events.publish(.peerLost(peer.id)) }
    }

    func currentPeers() async -> [Peer] { (try? await found.read { $0 }) ?? [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureDiscovery() } }
