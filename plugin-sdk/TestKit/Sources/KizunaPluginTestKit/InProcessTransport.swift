public import KizunaSDK
import Synchronization

/// A transport whose instances in one process reach each other through a table of
/// addresses: what a file-transfer or streaming plugin's own tests run over, with no
/// sockets. It honours the transport contract (backpressure, clean close, connections end
/// when the plugin stops), and can misbehave on purpose for testing tests: `capacity`
/// sets how many messages a sender may get ahead (a huge one ignores backpressure), and
/// `transform` rewrites every message sent (to corrupt data).
public final class InProcessTransport: TransportPlugin {
    private let capacity: Int
    private let transform: (@Sendable ([UInt8]) -> [UInt8])?
    private let started = WatchChannel<Endpoint?>(nil)

    public init(capacity: Int = 4, transform: (@Sendable ([UInt8]) -> [UInt8])? = nil) {
        self.capacity = capacity
        self.transform = transform
    }

    public func run(context: PluginContext) async throws {
        let endpoint = Endpoint.open(context)
        started.send(endpoint)
        context.ready()
        await context.shutdown.wait()
        endpoint.closeAll()
        started.finish()
    }

    private func endpoint() async -> Endpoint? {
        for await value in started.subscribe() {
            if let value { return value }
        }
        return nil
    }

    public func listeningAddress() async -> PeerAddress? { await endpoint().map { PeerAddress(host: "in-process", port: $0.port) } }

    public func connect(to address: PeerAddress, service: String) async throws -> any Connection {
        guard let me = await endpoint() else { throw RuntimeError(.closed, "the in-process transport is not running") }
        guard let target = Endpoint.find(address.port) else { throw RuntimeError(.closed, "nothing listens at \(address)") }
        let toFar = BoundedChannel<[UInt8]>(capacity: capacity), toNear = BoundedChannel<[UInt8]>(capacity: capacity)
        let near = InProcessConnection(peer: target.context.host.id, service: service, incoming: toNear, outgoing: toFar, transform: transform)
        let far = InProcessConnection(peer: me.context.host.id, service: service, incoming: toFar, outgoing: toNear, transform: nil)
        me.track(near)
        target.track(far)
        await target.context.routeInbound(far)
        return near
    }

    /// A running instance: its address and its connections.
    final class Endpoint: Sendable {
        let context: PluginContext
        let port: Int
        private let connections = Mutex<[InProcessConnection]>([])
        private static let table = Mutex<(next: Int, open: [Int: Endpoint])>((1, [:]))

        private init(context: PluginContext, port: Int) {
            self.context = context
            self.port = port
        }

        static func open(_ context: PluginContext) -> Endpoint {
            table.withLock { table in
                let endpoint = Endpoint(context: context, port: table.next)
                table.open[table.next] = endpoint
                table.next += 1
                return endpoint
            }
        }

        static func find(_ port: Int) -> Endpoint? { table.withLock { $0.open[port] } }

        func track(_ connection: InProcessConnection) { connections.withLock { $0.append(connection) } }

        func closeAll() {
            _ = Self.table.withLock { $0.open.removeValue(forKey: port) }
            for connection in connections.withLock({ $0 }) { connection.end() }
        }
    }
}

final class InProcessConnection: Connection {
    let peer: PeerID
    let service: String
    private let incoming: BoundedChannel<[UInt8]>
    private let outgoing: BoundedChannel<[UInt8]>
    private let transform: (@Sendable ([UInt8]) -> [UInt8])?

    init(peer: PeerID, service: String, incoming: BoundedChannel<[UInt8]>, outgoing: BoundedChannel<[UInt8]>, transform: (@Sendable ([UInt8]) -> [UInt8])?) {
        self.peer = peer
        self.service = service
        self.incoming = incoming
        self.outgoing = outgoing
        self.transform = transform
    }

    func send(_ message: [UInt8]) async throws { try await outgoing.send(transform?(message) ?? message) }
    func receive() async throws -> [UInt8]? { await incoming.receive() }
    func close() async { outgoing.finish() }

    /// Both directions end: the plugin with this end stopped.
    func end() {
        outgoing.finish()
        incoming.finish()
    }
}

extension TransportSubject {
    /// The ``InProcessTransport``, for checking file-transfer and streaming plugins
    /// without sockets.
    public static var inProcess: TransportSubject {
        TransportSubject(name: "in-process-transport") { .transport(InProcessTransport()) }
    }
}
