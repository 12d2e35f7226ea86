// Test fixture for the conformance suite: an in-process transport whose instances reach
// each other through a table of addresses, with a fault chosen by the `fault` setting:
// "corrupt" flips a bit in every message of 1000 bytes or more, "unbounded" never makes a
// sender wait. Without a fault it is a correct transport.
import KizunaSDK
import Synchronization

/// Running instances by port, for connect.
let endpoints = Mutex<(next: Int, open: [Int: FixtureFaultyTransport.Running])>((1, [:]))

final class FixtureFaultyTransport: TransportPlugin {
    final class Running: Sendable {
        let context: PluginContext
        let port: Int
        let fault: String
        /// Connections with an end here, ended when the plugin stops.
        let connections = Mutex<[FaultyConnection]>([])

        init(context: PluginContext, port: Int, fault: String) {
            self.context = context
            self.port = port
            self.fault = fault
        }
    }

    private let running = WatchChannel<Running?>(nil)

    func run(context: PluginContext) async throws {
        let me = endpoints.withLock { table -> Running in
            defer { table.next += 1 }
            let running = Running(context: context, port: table.next, fault: context.settings.string("fault") ?? "")
            table.open[table.next] = running
            return running
        }
        running.send(me)
        await context.shutdown.wait()
        _ = endpoints.withLock { $0.open.removeValue(forKey: me.port) }
        for connection in me.connections.withLock({ $0 }) { connection.end() }
        running.finish()
    }

    private func started() async -> Running? {
        for await value in running.subscribe() {
            if let value { return value }
        }
        return nil
    }

    func listeningAddress() async -> PeerAddress? { await started().map { PeerAddress(host: "memory", port: $0.port) } }

    func connect(to address: PeerAddress, service: String) async throws -> any Connection {
        guard let me = await started() else { throw RuntimeError(.closed, "the fixture transport is not running") }
        guard let target = endpoints.withLock({ $0.open[address.port] }) else { throw RuntimeError(.closed, "nothing listens at \(address)") }
        let capacity = me.fault == "unbounded" ? Int.max / 2 : 4
        let toFar = BoundedChannel<[UInt8]>(capacity: capacity), toNear = BoundedChannel<[UInt8]>(capacity: capacity)
        let near = FaultyConnection(peer: target.context.host.id, service: service, incoming: toNear, outgoing: toFar, corrupt: me.fault == "corrupt")
        let far = FaultyConnection(peer: me.context.host.id, service: service, incoming: toFar, outgoing: toNear, corrupt: target.fault == "corrupt")
        me.connections.withLock { $0.append(near) }
        target.connections.withLock { $0.append(far) }
        await target.context.routeInbound(far)
        return near
    }
}

final class FaultyConnection: Connection {
    let peer: PeerID
    let service: String
    let incoming: BoundedChannel<[UInt8]>
    let outgoing: BoundedChannel<[UInt8]>
    let corrupt: Bool

    init(peer: PeerID, service: String, incoming: BoundedChannel<[UInt8]>, outgoing: BoundedChannel<[UInt8]>, corrupt: Bool) {
        self.peer = peer
        self.service = service
        self.incoming = incoming
        self.outgoing = outgoing
        self.corrupt = corrupt
    }

    func send(_ message: [UInt8]) async throws {
        var message = message
        if corrupt, message.count >= 1000 { message[message.count / 2] ^= 0x10 }
        try await outgoing.send(message)
    }

    func receive() async throws -> [UInt8]? { await incoming.receive() }

    func close() async { outgoing.finish() }

    /// Both directions end: the plugin with this end stopped.
    func end() {
        outgoing.finish()
        incoming.finish()
    }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureFaultyTransport() } }
