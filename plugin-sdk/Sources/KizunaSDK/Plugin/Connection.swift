/// A framed, bidirectional connection to a peer, made by the transport.
///
/// Messages are whole byte buffers. ``send(_:)`` waits while the peer is not reading fast
/// enough (backpressure), and ``receive()`` waits for the next message.
public protocol Connection: AnyObject, Sendable {
    /// The peer at the other end.
    var peer: PeerID { get }
    /// The service this connection was opened for (for example `file-transfer`); the host
    /// routes inbound connections by it.
    var service: String { get }
    /// Sends one message, waiting while the peer is behind.
    func send(_ message: [UInt8]) async throws
    /// The next message, or `nil` once the peer has closed the connection.
    func receive() async throws -> [UInt8]?
    /// Closes the connection; pending receives end with `nil`.
    func close() async
}

/// What the event bus and shared state record of a connection.
public struct ConnectionInfo: Sendable, Hashable, Codable {
    /// An identifier unique within the host.
    public var id: String
    /// The peer at the other end.
    public var peer: PeerID
    /// The service the connection is for.
    public var service: String
    /// True for connections the peer opened.
    public var inbound: Bool

    /// Creates a record.
    public init(id: String, peer: PeerID, service: String, inbound: Bool) {
        self.id = id
        self.peer = peer
        self.service = service
        self.inbound = inbound
    }
}
