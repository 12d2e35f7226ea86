/// The progress of one file transfer.
public struct TransferProgress: Sendable, Hashable, Codable {
    /// An identifier unique within the host.
    public var id: String
    /// The peer on the other side.
    public var peer: PeerID
    /// The file's name as it travels (relative, never absolute).
    public var name: String
    /// Bytes moved so far.
    public var bytesDone: Int64
    /// Bytes in all.
    public var bytesTotal: Int64
    /// True when this host is the sender.
    public var outgoing: Bool
    /// Bytes that were already at the receiver from an interrupted attempt, and were not
    /// sent again (0 for a fresh transfer).
    public var resumedFrom: Int64

    /// Creates a progress record.
    public init(id: String, peer: PeerID, name: String, bytesDone: Int64, bytesTotal: Int64, outgoing: Bool, resumedFrom: Int64 = 0) {
        self.id = id
        self.peer = peer
        self.name = name
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.outgoing = outgoing
        self.resumedFrom = resumedFrom
    }

    /// The fraction done, from 0 to 1.
    public var fraction: Double { bytesTotal > 0 ? Double(bytesDone) / Double(bytesTotal) : 1 }
}

/// One frame of a live stream.
public struct Frame: Sendable, Hashable, Codable {
    /// The frame's position in its stream, from 0.
    public var sequence: UInt64
    /// The payload.
    public var payload: [UInt8]

    /// Creates a frame.
    public init(sequence: UInt64, payload: [UInt8]) {
        self.sequence = sequence
        self.payload = payload
    }
}
