public import Foundation
public import KizunaSDK
import Synchronization

/// A peer this host trusts: paired with it, and known by the id its key proves.
public struct TrustedPeer: Sendable, Hashable, Codable {
    public var id: PeerID
    /// The name the peer had when it was paired.
    public var name: String
    /// When it was paired (ISO 8601 in the file).
    public var paired: Date

    public init(id: PeerID, name: String, paired: Date) {
        self.id = id
        self.name = name
        self.paired = paired
    }
}

/// The peers this host trusts, kept in `STATE/trust.json`: owner-only, readable JSON,
/// rewritten atomically on every change. Nothing from a peer that is not here is
/// accepted silently.
public final class TrustStore: Sendable {
    /// The file, or nil for a store that lives in memory only.
    public let path: String?
    private let peers = Mutex<[PeerID: TrustedPeer]>([:])

    private struct Contents: Codable {
        var version = 1
        var peers: [TrustedPeer]
    }

    /// A store in memory only, trusting no one.
    public init() { path = nil }

    /// The store in `stateDirectory`; empty if the file is not there yet.
    /// - Throws: ``IdentityError`` naming the file and the fix if it cannot be read, others
    ///   may read it, or it is not a trust store (it is never silently emptied).
    public init(stateDirectory: String) throws(IdentityError) {
        let path = stateDirectory + "/trust.json"
        self.path = path
        let bytes: [UInt8]?
        do {
            bytes = try StateDirectory.readPrivateFile(path)
        } catch {
            throw IdentityError("the trust store \(error)")
        }
        guard let bytes else { return }
        let contents: Contents
        do {
            contents = try Self.decoder.decode(Contents.self, from: Data(bytes))
        } catch {
            throw IdentityError("the trust store \(path) is not one (\(Self.describe(error))); fix it by hand, or move it away to trust no peer (each must then pair again)")
        }
        guard contents.version == 1 else {
            throw IdentityError("the trust store \(path) has version \(contents.version); this host reads version 1. Use the host that wrote it, or move it away")
        }
        for peer in contents.peers {
            guard let id = PeerID(typed: peer.id.rawValue) else {
                throw IdentityError("the trust store \(path) holds '\(peer.id)', which is not a peer id; fix it by hand or move the file away")
            }
            peers.withLock { $0[id] = TrustedPeer(id: id, name: peer.name, paired: peer.paired) }
        }
    }

    /// The trusted peers, by name.
    public var all: [TrustedPeer] { peers.withLock { $0.values.sorted { ($0.name, $0.id.rawValue) < ($1.name, $1.id.rawValue) } } }

    public func isTrusted(_ id: PeerID) -> Bool { peers.withLock { $0[id] != nil } }

    /// Trusts `id` from now on, and saves the store.
    public func trust(_ id: PeerID, name: String) throws(IdentityError) {
        try change { $0[id] = TrustedPeer(id: id, name: name, paired: Date()) }
    }

    /// Stops trusting `id`; false if it was not trusted.
    @discardableResult
    public func remove(_ id: PeerID) throws(IdentityError) -> Bool {
        var removed = false
        try change { removed = $0.removeValue(forKey: id) != nil }
        return removed
    }

    /// The view plugins get.
    public var view: PeerTrust { PeerTrust { [self] in isTrusted($0) } }

    private func change(_ body: (inout [PeerID: TrustedPeer]) -> Void) throws(IdentityError) {
        let result: Result<Void, IdentityError> = peers.withLock { peers in
            var changed = peers
            body(&changed)
            if let path {
                do {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                    encoder.dateEncodingStrategy = .iso8601
                    let data = try encoder.encode(Contents(peers: changed.values.sorted { $0.id.rawValue < $1.id.rawValue }))
                    try StateDirectory.writeFile(Array(data) + [0x0A], to: path)
                } catch {
                    return .failure(IdentityError("cannot save the trust store \(path): \(error)"))
                }
            }
            peers = changed
            return .success(())
        }
        try result.get()
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context): "no '\(key.stringValue)' at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context), DecodingError.dataCorrupted(let context):
            "\(context.debugDescription) at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        default: "\(error)"
        }
    }
}
