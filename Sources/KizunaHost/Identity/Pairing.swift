import Crypto
import Foundation
public import KizunaSDK
import Synchronization

/// Pairing: two people make their hosts trust each other, checking a short code.
///
/// Over the transport (service `pairing`, so the peer's id is proven by its key):
///
///     initiator  ->  {"type": "pair", "version": 1, "name": NAME}
///                <-  {"type": "waiting"}                      (the other user decides)
///                <-  {"type": "accepted", "name": NAME} | {"type": "refused", "reason": …}
///
/// Both hosts show the same six-digit code, derived from both peer ids (and so from both
/// public keys): a host in the middle holds other keys, so the two codes it causes differ.
/// The user of the host asked accepts (`kizuna pair accept ID`) after comparing; then each
/// host adds the other to its trust store.
public final class PairingService: Sendable {
    /// The transport service pairing runs over.
    public static let service = "pairing"
    /// Requests that may wait for an answer at once (each holds a connection).
    static let maxPending = 16
    /// How long a request waits for its answer.
    static let answerTimeout: Duration = .seconds(120)
    /// How often the asked side says it is still waiting, so that neither transport closes
    /// the connection as idle meanwhile (the built-in one closes it after 60 s of silence).
    static let waitingInterval: Duration = .seconds(10)
    /// The largest pairing message accepted.
    static let maxMessageBytes = 4096

    private let me: PeerID
    private let myName: String
    private let trust: TrustStore
    private let events: EventBus
    private let logger = Logger(label: "kizuna.pairing")
    private let pending = Mutex<[String: Waiting]>([:])

    private final class Waiting: Sendable {
        let request: PairingRequest
        let answered = ShutdownSignal()
        /// 0 until answered, then 1 (accepted) or 2 (refused): the first answer counts.
        private let decision = Atomic(0)
        init(_ request: PairingRequest) { self.request = request }

        func answer(_ accept: Bool) {
            if decision.compareExchange(expected: 0, desired: accept ? 1 : 2, ordering: .acquiringAndReleasing).exchanged { answered.signal() }
        }

        var accepted: Bool { decision.load(ordering: .acquiring) == 1 }
    }

    init(me: PeerID, name: String, trust: TrustStore, events: EventBus) {
        self.me = me
        myName = name
        self.trust = trust
        self.events = events
    }

    /// The six-digit code for a pairing of `a` and `b` (either order), as "123 456".
    public static func code(_ a: PeerID, _ b: PeerID) -> String {
        let ids = [a.rawValue, b.rawValue].sorted()
        let digest = Array(SHA256.hash(data: Array("kizuna pairing code 1\n\(ids[0])\n\(ids[1])".utf8)))
        let value = (UInt32(digest[0]) << 24 | UInt32(digest[1]) << 16 | UInt32(digest[2]) << 8 | UInt32(digest[3])) % 1_000_000
        let digits = String(value)
        let padded = String(repeating: "0", count: 6 - digits.count) + digits
        return "\(padded.prefix(3)) \(padded.suffix(3))"
    }

    /// The requests waiting for this host's user.
    public var waiting: [PairingRequest] { pending.withLock { $0.values.map(\.request).sorted { $0.id < $1.id } } }

    /// Answers request `id`; false if no such request waits.
    public func answer(_ id: String, accept: Bool) -> Bool {
        guard let waiting = pending.withLock({ $0[id] }) else { return false }
        waiting.answer(accept)
        return true
    }

    // MARK: The side that is asked

    /// Serves one inbound `pairing` connection until it is answered, refused, or times out.
    func serve(_ connection: any Connection) async {
        defer { Task { await connection.close() } }
        let hello: Message
        do {
            guard let bytes = try await connection.receive() else { return }
            hello = try Message.decode(bytes)
            guard hello.type == "pair" else { throw PairingError("the first pairing message is '\(hello.type)', not 'pair'") }
            guard hello.version == 1 else { throw PairingError("the peer pairs with version \(hello.version.map(String.init) ?? "none"); this host pairs with version 1") }
        } catch {
            logger.warning("refused a pairing request", metadata: ["peer": "\(connection.peer)", "reason": "\(error)"])
            try? await connection.send(Message(type: "refused", reason: "\(error)").encoded())
            return
        }
        let name = Message.displayName(hello.name)
        if trust.isTrusted(connection.peer) {
            // This host's user already decided to trust it; the peer only lost its half.
            try? await connection.send(Message(type: "accepted", name: myName).encoded())
            return
        }
        var idBytes = [UInt8](repeating: 0, count: 4)
        for index in idBytes.indices { idBytes[index] = .random(in: 0 ... .max) }
        let request = PairingRequest(
            id: "p" + idBytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(), peer: connection.peer, name: name,
            code: Self.code(me, connection.peer))
        let waiting = Waiting(request)
        let admitted = pending.withLock { pending in
            // One request per peer: a newer one from the same (proven) peer replaces it.
            for (key, other) in pending where other.request.peer == request.peer {
                other.answer(false)
                pending[key] = nil
            }
            guard pending.count < Self.maxPending else { return false }
            pending[request.id] = waiting
            return true
        }
        guard admitted else {
            try? await connection.send(Message(type: "refused", reason: "\(Self.maxPending) pairing requests wait already; try again later").encoded())
            return
        }
        defer { _ = pending.withLock { $0.removeValue(forKey: request.id) } }
        try? await connection.send(Message(type: "waiting").encoded())
        events.publish(.pairingRequested(request))

        // The answer, or nothing: the time ran out, or the peer went away (its connection
        // ends with nil or an error, which the watcher below turns into a refusal).
        let closed = Task {
            while (try? await connection.receive()) != nil {}
            waiting.answer(false)
        }
        defer { closed.cancel() }
        let deadline = ContinuousClock.now + Self.answerTimeout
        var answered = false
        while !answered, ContinuousClock.now < deadline {
            answered = await waiting.answered.subscribe().wait(within: min(Self.waitingInterval, deadline - ContinuousClock.now))
            if !answered { try? await connection.send(Message(type: "waiting").encoded()) }
        }
        guard answered, waiting.accepted else {
            try? await connection.send(Message(type: "refused", reason: "the user of \(myName) did not accept").encoded())
            return
        }
        do {
            try trust.trust(request.peer, name: name)
        } catch {
            logger.error("cannot save the trust store", metadata: ["error": "\(error)"])
            try? await connection.send(Message(type: "refused", reason: "the other host could not save its trust store").encoded())
            return
        }
        events.publish(.peerTrusted(id: request.peer, name: name))
        try? await connection.send(Message(type: "accepted", name: myName).encoded())
    }

    // MARK: The side that asks

    /// Asks `peer` to pair over `transport`: calls `shown` with the code to compare once the
    /// peer's key is proven, waits for the other user's answer, then trusts the peer.
    func pair(with peer: Peer, over transport: any TransportPlugin, shown: @Sendable (PairingRequest) -> Void) async throws -> TrustedPeer {
        let connection = try await transport.connect(to: peer, service: Self.service)
        defer { Task { await connection.close() } }
        shown(PairingRequest(id: "", peer: connection.peer, name: peer.name, code: Self.code(me, connection.peer)))
        try await connection.send(Message(type: "pair", version: 1, name: myName).encoded())
        while true {
            guard let bytes = try await connection.receive() else {
                throw PairingError("\(Message.displayName(peer.name)) closed the connection before it answered")
            }
            let reply = try Message.decode(bytes)
            switch reply.type {
            case "waiting": continue
            case "accepted":
                let name = Message.displayName(reply.name ?? peer.name)
                try trust.trust(connection.peer, name: name)
                events.publish(.peerTrusted(id: connection.peer, name: name))
                return TrustedPeer(id: connection.peer, name: name, paired: Date())
            case "refused": throw PairingError("\(Message.displayName(peer.name)) refused to pair: \(Message.displayName(reply.reason ?? "no reason given"))")
            default: throw PairingError("\(Message.displayName(peer.name)) answered '\(Message.displayName(reply.type))', which is no pairing answer")
            }
        }
    }

    /// One pairing message, checked before use.
    struct Message: Codable {
        var type: String
        var version: Int?
        var name: String?
        var reason: String?

        func encoded() throws -> [UInt8] { Array(try JSONEncoder().encode(self)) }

        /// - Throws: ``PairingError`` if the message is too long or not a pairing message.
        static func decode(_ bytes: [UInt8]) throws(PairingError) -> Message {
            guard bytes.count <= PairingService.maxMessageBytes else {
                throw PairingError("a pairing message of \(bytes.count) bytes; at most \(PairingService.maxMessageBytes) are accepted")
            }
            guard let message = try? JSONDecoder().decode(Message.self, from: Data(bytes)) else {
                throw PairingError("\(bytes.count) bytes that are not a pairing message")
            }
            return message
        }

        /// A peer's text as this host shows it: no control characters, at most 64 characters.
        static func displayName(_ text: String?) -> String {
            var scalars = String.UnicodeScalarView()
            scalars.append(contentsOf: (text ?? "").unicodeScalars.filter { $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) && !(0x202A...0x202E).contains($0.value) && !(0x2066...0x2069).contains($0.value) }.prefix(64))
            return scalars.isEmpty ? "unnamed" : String(scalars)
        }
    }
}

/// Why a pairing did not happen.
public struct PairingError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The decoder of pairing messages, for the fuzzer: never traps, whatever the bytes.
func fuzzPairingMessage(_ bytes: [UInt8]) {
    if let message = try? PairingService.Message.decode(bytes) { _ = PairingService.Message.displayName(message.name) }
}
