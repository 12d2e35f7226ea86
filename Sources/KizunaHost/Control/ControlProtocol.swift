public import Foundation
public import KizunaSDK

/// One request to a running host over its control socket: a JSON object on one line.
public struct ControlRequest: Sendable, Codable, Hashable {
    /// What the request asks for.
    public enum Command: String, Sendable, Codable, Hashable {
        case list, info, load, unload, reload, status, events, actions, call
        /// Subsystems: found peers; send a file (`argument` the path, `arguments` the peer);
        /// stream to a peer (`argument`; then binary chunks, see ``ControlServer``); watch.
        case peers, send, stream, watch
        /// Identity and trust: this host's id; pair with a peer (`argument`; streamed: the
        /// code, then the result); the pairing requests waiting; answer one (`argument`
        /// the request, `arguments` ["accept"] or ["refuse"]); the trusted peers; stop
        /// trusting one (`argument`).
        case identity, pair, pairings, answerPairing, trusted, untrust
        /// Transfers: those under way and the latest that ended; answer a waiting offer
        /// (`argument` the id, `arguments` ["accept"] or ["refuse"], after "accept" optionally
        /// "rename", "skip" or "overwrite" for names already taken); cancel one (`argument`).
        case transfers, answerTransfer, cancelTransfer
    }

    public var command: Command
    /// The plugin name or manifest path, for commands that take one.
    public var argument: String?
    /// For `call`: the action's name, then its arguments as text.
    public var arguments: [String]?
    /// For `load` and `reload`: probe the library again even if a result is remembered.
    public var probeAgain: Bool?

    public init(_ command: Command, _ argument: String? = nil, arguments: [String]? = nil, probeAgain: Bool? = nil) {
        self.command = command
        self.argument = argument
        self.arguments = arguments
        self.probeAgain = probeAgain
    }
}

/// One reply line. `events` replies with one line per event until the client disconnects.
public struct ControlResponse: Sendable, Codable, Hashable {
    public var ok: Bool
    /// What went wrong and how to fix it, when `ok` is false.
    public var error: String?
    public var plugins: [PluginInfo]?
    public var plugin: PluginInfo?
    public var status: HostStatus?
    public var event: HostEvent?
    /// For `events`: how many events this subscriber missed because it fell behind.
    public var missedEvents: Int?
    /// For `actions`.
    public var actions: [PluginAction]?
    /// For `call`: the action's result as text.
    public var result: String?
    /// For `peers`.
    public var peers: [Peer]?
    /// For `send`: progress lines, then the final one.
    public var progress: TransferProgress?
    /// For `stream` and `watch`: the stream, once it starts, and its figures when it ends.
    public var stream: StreamReport?
    /// For `identity`.
    public var identity: IdentityReport?
    /// For `pair`: the code to compare (first line); `pairings`: the requests waiting.
    public var pairing: PairingRequest?
    public var pairings: [PairingRequest]?
    /// For `trusted`, `peers` (which of them are trusted), `untrust` and a finished `pair`.
    public var trusted: [TrustedPeer]?
    /// For `transfers`.
    public var transfers: [TransferRecord]?
    /// For `events`: when the host published the event.
    public var time: Date?

    public init(
        ok: Bool, error: String? = nil, plugins: [PluginInfo]? = nil, plugin: PluginInfo? = nil, status: HostStatus? = nil,
        event: HostEvent? = nil, missedEvents: Int? = nil, actions: [PluginAction]? = nil, result: String? = nil,
        peers: [Peer]? = nil, progress: TransferProgress? = nil, stream: StreamReport? = nil, identity: IdentityReport? = nil,
        pairing: PairingRequest? = nil, pairings: [PairingRequest]? = nil, trusted: [TrustedPeer]? = nil,
        transfers: [TransferRecord]? = nil, time: Date? = nil
    ) {
        self.ok = ok
        self.error = error
        self.plugins = plugins
        self.plugin = plugin
        self.status = status
        self.event = event
        self.missedEvents = missedEvents
        self.actions = actions
        self.result = result
        self.peers = peers
        self.progress = progress
        self.stream = stream
        self.identity = identity
        self.pairing = pairing
        self.pairings = pairings
        self.trusted = trusted
        self.transfers = transfers
        self.time = time
    }

    public static func failure(_ message: String) -> ControlResponse { ControlResponse(ok: false, error: message) }
}

/// A stream as `kizuna stream` and `kizuna watch` report it.
public struct StreamReport: Sendable, Codable, Hashable {
    public var id: String
    public var peer: PeerID
    /// Frames moved so far.
    public var frames: UInt64
    /// Frames this viewer missed because it read slower than they came, plus those the
    /// sender skipped.
    public var dropped: UInt64

    public init(id: String, peer: PeerID, frames: UInt64 = 0, dropped: UInt64 = 0) {
        self.id = id
        self.peer = peer
        self.frames = frames
        self.dropped = dropped
    }
}

/// Who a host is, as `kizuna id` prints it.
public struct IdentityReport: Sendable, Codable, Hashable {
    /// The peer id, derived from the public key.
    public var id: PeerID
    /// The SHA-256 of the certificate, colon-separated hex.
    public var fingerprint: String
    public var name: String?

    public init(id: PeerID, fingerprint: String, name: String? = nil) {
        self.id = id
        self.fingerprint = fingerprint
        self.name = name
    }

    public init(_ identity: DeviceIdentity, name: String? = nil) {
        self.init(id: identity.peerID, fingerprint: identity.certificateFingerprint, name: name)
    }
}

/// A problem with the control socket itself.
public struct ControlError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
