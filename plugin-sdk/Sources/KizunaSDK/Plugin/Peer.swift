/// A host's identity on the network, derived from its public key (see
/// ``init(publicKeyDigest:)``): the same across restarts, unique among peers. Encoded as a
/// plain string.
public struct PeerID: Sendable, Hashable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The identifier's text.
    public let rawValue: String

    /// Creates an identifier from its text.
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    public var description: String { rawValue }
}

/// Where a peer can be reached.
public struct PeerAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A host name or an IPv4 or IPv6 address.
    public var host: String
    /// A TCP or UDP port.
    public var port: Int

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A peer a discovery plugin has found.
public struct Peer: Sendable, Hashable, Codable {
    /// The peer's identity.
    public var id: PeerID
    /// A name for people.
    public var name: String
    /// Where it can be reached.
    public var addresses: [PeerAddress]
    /// The subsystems it offers, such as `file-transfer` or `streaming`.
    public var services: [String]

    /// Creates a peer.
    public init(id: PeerID, name: String, addresses: [PeerAddress], services: [String] = []) {
        self.id = id
        self.name = name
        self.addresses = addresses
        self.services = services
    }
}
