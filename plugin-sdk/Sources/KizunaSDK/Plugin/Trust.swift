// Who a peer is, proven, and whether this host trusts it.
//
// A host's peer id is derived from its public key: the SHA-256 of its DER
// SubjectPublicKeyInfo, in base32 (RFC 4648: A–Z and 2–7, so no 0/O or 1/I to confuse),
// in groups of four. A transport proves it: it derives the id from the key the peer proved
// it holds (the TLS certificate), never from what the peer claims.

extension PeerID {
    /// The id of the host whose public key has this SHA-256 digest (of its DER
    /// SubjectPublicKeyInfo): 52 base32 characters in 13 groups of four.
    public init(publicKeyDigest digest: some Collection<UInt8>) {
        precondition(digest.count == 32, "a public key digest is 32 bytes (SHA-256)")
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)
        var characters: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for byte in digest {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                characters.append(alphabet[Int(buffer >> UInt32(bits) & 31)])
            }
        }
        if bits > 0 { characters.append(alphabet[Int(buffer << UInt32(5 - bits) & 31)]) }
        var grouped: [UInt8] = []
        for (index, character) in characters.enumerated() {
            if index > 0, index % 4 == 0 { grouped.append(UInt8(ascii: "-")) }
            grouped.append(character)
        }
        self.init(String(decoding: grouped, as: UTF8.self))
    }

    /// An id as a person may type it: any case, with or without dashes and spaces, `0`, `1`
    /// and `8` read as `O`, `I` and `B`. Nil unless it is a whole derived id.
    public init?(typed text: String) {
        guard let normalized = PeerID.normalized(text), normalized.count == 52 else { return nil }
        var grouped = ""
        for (index, character) in normalized.enumerated() {
            if index > 0, index % 4 == 0 { grouped.append("-") }
            grouped.append(character)
        }
        self.init(grouped)
    }

    /// The first two groups, for tables and log lines (the whole id is what is checked).
    public var short: String { String(rawValue.prefix(9)) }

    /// `text` in upper case without separators, with look-alike digits mapped; nil if it
    /// holds a character that is in no id.
    public static func normalized(_ text: String) -> String? {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "-", " ": continue
            case "0": out.append("O")
            case "1": out.append("I")
            case "8": out.append("B")
            case "a"..."z": out.append(Character(Unicode.Scalar(scalar.value - 32)!))
            case "A"..."Z", "2"..."7": out.append(Character(scalar))
            default: return nil
            }
        }
        return out
    }
}

/// What a transport needs to prove this host's identity: its certificate and private key,
/// PEM-encoded. Only transport plugins receive it (``PluginContext/credentials``).
public struct HostCredentials: Sendable {
    /// The host's self-signed X.509 certificate, PEM.
    public let certificatePEM: String
    /// The certificate's private key (PKCS#8), PEM. Never logged, never sent.
    public let privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Whether this host trusts a peer: true for peers paired with it (`kizuna pair`), whose
/// connections proved their id. Plugins ask it before they accept anything from a peer.
public final class PeerTrust: Sendable {
    private let lookup: @Sendable (PeerID) -> Bool

    /// A view of the host's trust store; `isTrusted` is asked on every call.
    public init(isTrusted: @escaping @Sendable (PeerID) -> Bool) { lookup = isTrusted }

    /// Trusts no peer (for hosts without a trust store, such as the test kit's).
    public static let nobody = PeerTrust { _ in false }

    /// True if the peer with this (proven) id is paired with this host.
    public func isTrusted(_ peer: PeerID) -> Bool { lookup(peer) }
}

/// A peer that asked to pair, waiting for this host's user to compare codes and answer.
public struct PairingRequest: Sendable, Hashable, Codable {
    /// The request's identifier on this host, for `kizuna pair accept ID`.
    public var id: String
    /// The peer's proven id.
    public var peer: PeerID
    /// The name the peer gave (not proven: compare the code).
    public var name: String
    /// The code both hosts show; it matches only if each sees the other's real key.
    public var code: String

    public init(id: String, peer: PeerID, name: String, code: String) {
        self.id = id
        self.peer = peer
        self.name = name
        self.code = code
    }
}

extension TransportPlugin {
    /// Opens a connection for `service` to `peer`, trying its addresses in turn, and keeps
    /// it only if the other end proved it is `peer` (a forged announcement, or another host
    /// at an old address, can redirect nothing). The error names every address tried.
    public func connect(to peer: Peer, service: String) async throws -> any Connection {
        var failures: [String] = []
        for address in peer.addresses {
            let connection: any Connection
            do {
                connection = try await connect(to: address, service: service)
            } catch {
                failures.append("\(address): \(error)")
                continue
            }
            if connection.peer == peer.id { return connection }
            await connection.close()
            failures.append("\(address) answered as host \(connection.peer.short), which could not prove it is \(peer.id.short) (connection closed, nothing sent for \(service))")
        }
        throw PeerConnectError(
            description: "cannot reach peer \(peer.id.short) (\(peer.name)): \(failures.isEmpty ? "it has no address" : failures.joined(separator: "; "))")
    }
}

/// Why ``TransportPlugin/connect(to:service:)-(Peer,_)`` reached no address of a peer.
public struct PeerConnectError: Error, CustomStringConvertible {
    public let description: String
}
