// Test fixture: an in-process transport. `connect` makes a pair of connected endpoints
// and routes the far end to the host as an inbound connection, so routing, backpressure
// and closing can be tested without sockets.
import KizunaSDK

final class MemoryConnection: Connection, @unchecked Sendable {
    let peer: PeerID
    let service: String
    let incoming: BoundedChannel<[UInt8]>
    let outgoing: BoundedChannel<[UInt8]>

    init(peer: PeerID, service: String, incoming: BoundedChannel<[UInt8]>, outgoing: BoundedChannel<[UInt8]>) {
        self.peer = peer
        self.service = service
        self.incoming = incoming
        self.outgoing = outgoing
    }

    func send(_ message: [UInt8]) async throws { try await outgoing.send(message) }
    func receive() async throws -> [UInt8]? { await incoming.receive() }
    func close() async {
        outgoing.finish()
        incoming.finish()
    }
}

final class FixtureTransport: TransportPlugin {
    // Calls may come as soon as the host has started run; they wait for run to hand over
    // the context.
    private let context = WatchChannel<PluginContext?>(nil)

    func run(context: PluginContext) async throws {
        self.context.send(context)
        context.ready()
        await context.shutdown.wait()
    }

    func listeningAddress() async -> PeerAddress? { PeerAddress(host: "memory", port: 0) }

    private func startedContext() async -> PluginContext? {
        for await value in context.subscribe() where value != nil { return value }
        return nil
    }

    func connect(to address: PeerAddress, service: String) async throws -> any Connection {
        guard let context = await startedContext() else {
            throw RuntimeError(.closed, "the fixture transport is not running")
        }
        let capacity = Int(context.settings.integer("buffer") ?? 16)
        let toFar = BoundedChannel<[UInt8]>(capacity: capacity)
        let toNear = BoundedChannel<[UInt8]>(capacity: capacity)
        let near = MemoryConnection(peer: PeerID(address.host), service: service, incoming: toNear, outgoing: toFar)
        let far = MemoryConnection(peer: "local", service: service, incoming: toFar, outgoing: toNear)
        await context.routeInbound(far)
        return near
    }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureTransport() } }
