import Foundation

/// Everything that happens in a Kizuna host, as published on its event bus.
public enum HostEvent: Sendable, Hashable, Codable {
    case peerFound(Peer)
    case peerLost(PeerID)
    case connectionUp(ConnectionInfo)
    case connectionDown(ConnectionInfo)
    /// A peer offers a transfer; the receiver accepts or refuses it.
    case transferOffered(TransferProgress)
    case transferProgress(TransferProgress)
    case transferDone(TransferProgress)
    case transferFailed(TransferProgress, reason: String)
    case streamStarted(id: String, peer: PeerID)
    case streamEnded(id: String, peer: PeerID)
    /// A plugin moved to a new lifecycle state.
    case pluginStateChanged(name: String, state: PluginState)
    /// A peer asks to pair; this host's user compares the code and answers.
    case pairingRequested(PairingRequest)
    /// This host now trusts the peer (a pairing was accepted on both sides).
    case peerTrusted(id: PeerID, name: String)
    /// This host no longer trusts the peer (`kizuna trust remove`).
    case peerUntrusted(PeerID)

    /// A one-line description for logs and `kizuna events`.
    public var summary: String {
        switch self {
        case .peerFound(let peer): "peer found: \(peer.id) (\(peer.name)) at \(peer.addresses.map(\.description).joined(separator: ", "))"
        case .peerLost(let id): "peer lost: \(id)"
        case .connectionUp(let info): "connection up: \(info.id) \(info.inbound ? "from" : "to") \(info.peer) for \(info.service)"
        case .connectionDown(let info): "connection down: \(info.id) \(info.peer)"
        case .transferOffered(let progress): "transfer \(progress.id) offered by \(progress.peer): \(progress.name), \(progress.bytesTotal) bytes"
        case .transferProgress(let progress): "transfer \(progress.id) \(progress.name): \(progress.bytesDone)/\(progress.bytesTotal) bytes"
        case .transferDone(let progress): "transfer \(progress.id) \(progress.name) done: \(progress.bytesTotal) bytes"
        case .transferFailed(let progress, let reason): "transfer \(progress.id) \(progress.name) failed: \(reason)"
        case .streamStarted(let id, let peer): "stream \(id) started with \(peer)"
        case .streamEnded(let id, let peer): "stream \(id) ended with \(peer)"
        case .pluginStateChanged(let name, let state): "plugin \(name): \(state)"
        case .pairingRequested(let request):
            "pairing \(request.id) requested by \(request.peer.short) (\(request.name)), code \(request.code): compare it, then `kizuna pair accept \(request.id)` or `kizuna pair refuse \(request.id)`"
        case .peerTrusted(let id, let name): "peer trusted: \(id.short) (\(name))"
        case .peerUntrusted(let id): "peer no longer trusted: \(id.short)"
        }
    }
}

extension HostEvent {
    fileprivate var isOffer: Bool {
        if case .transferOffered = self { return true }
        return false
    }
}

extension TransferRecord {
    fileprivate mutating func update(_ progress: TransferProgress, _ phase: Phase, at time: Date) {
        self.progress = progress
        self.phase = phase
        updated = time
    }
}

/// The host's event bus: one broadcast channel of ``HostEvent``s. Publishing never
/// waits; a subscriber that falls more than its buffer behind is told how many events it
/// missed and carries on.
public final class EventBus: Sendable {
    private let channel: BroadcastChannel<HostEvent>
    private let state: SharedState?
    private let published = LockedValue(0)

    /// Creates a bus that retains the latest `capacity` events for slow subscribers and,
    /// given a shared state, records every event in it before publishing.
    public init(capacity: Int = 1024, state: SharedState? = nil) {
        channel = BroadcastChannel(capacity: capacity)
        self.state = state
    }

    private init(channel: BroadcastChannel<HostEvent>, state: SharedState?) {
        self.channel = channel
        self.state = state
    }

    /// The same bus, with its own count of ``publishedCount``: the host gives each plugin one.
    public func view() -> EventBus { EventBus(channel: channel, state: state) }

    /// Events published through this bus (or this view of it).
    public var publishedCount: Int { published.withLock { $0 } }

    /// Publishes `event` to every subscriber, after applying it to the shared state.
    /// Never waits.
    public func publish(_ event: HostEvent) {
        state?.apply(event)
        published.withLock { $0 += 1 }
        channel.send(event)
    }

    /// A subscriber that receives every event published from now on.
    public func subscribe() -> BroadcastReceiver<HostEvent> { channel.subscribe() }

    /// Subscribers right now.
    public var subscriberCount: Int { channel.receiverCount }

    /// Ends the bus: subscribers read what is left, then their sequences end.
    public func close() { channel.finish() }
}

/// The host's shared state (peers, connections, transfers, plugin states), readable by
/// every plugin from any thread. It changes only by applying events, so every change is
/// also an event; each read is a consistent snapshot.
public final class SharedState: Sendable {
    private struct Tables: Sendable {
        var peers: [PeerID: Peer] = [:]
        var connections: [String: ConnectionInfo] = [:]
        var transfers: [String: TransferProgress] = [:]
        var records: [String: TransferRecord] = [:]
        var ended: [TransferRecord] = []
        var plugins: [String: PluginState] = [:]
    }

    // Updates are a few dictionary operations: a plain lock, which a cancelled publisher
    // cannot abandon halfway, suits them better than an async lock.
    private let tables = LockedValue(Tables())

    /// Creates an empty state.
    public init() {}

    /// Peers seen and not lost, by identity.
    public var peers: [PeerID: Peer] { tables.withLock { $0.peers } }
    /// Open connections, by identifier.
    public var connections: [String: ConnectionInfo] { tables.withLock { $0.connections } }
    /// Transfers in progress, by identifier.
    public var transfers: [String: TransferProgress] { tables.withLock { $0.transfers } }
    /// Plugin states, by plugin name.
    public var plugins: [String: PluginState] { tables.withLock { $0.plugins } }
    /// The transfers under way, oldest first, then the latest ``endedTransfersKept`` that
    /// ended, oldest first.
    public var transferRecords: [TransferRecord] {
        tables.withLock { $0.records.values.sorted { ($0.started, $0.progress.id) < ($1.started, $1.progress.id) } + $0.ended }
    }

    /// How many ended transfers ``transferRecords`` keeps.
    public static let endedTransfersKept = 50

    /// Records what `event` changes.
    func apply(_ event: HostEvent) {
        tables.withLock { tables in
            switch event {
            case .peerFound(let peer): tables.peers[peer.id] = peer
            case .peerLost(let id): tables.peers[id] = nil
            case .connectionUp(let info): tables.connections[info.id] = info
            case .connectionDown(let info): tables.connections[info.id] = nil
            case .transferOffered(let progress), .transferProgress(let progress):
                tables.transfers[progress.id] = progress
                let now = Date()
                let phase: TransferRecord.Phase = progress.awaitingAnswer || event.isOffer ? .waiting : .moving
                tables.records[progress.id, default: TransferRecord(progress: progress, phase: phase, started: now, updated: now)].update(progress, phase, at: now)
            case .transferDone(let progress), .transferFailed(let progress, _):
                tables.transfers[progress.id] = nil
                let now = Date()
                var record = tables.records.removeValue(forKey: progress.id) ?? TransferRecord(progress: progress, phase: .moving, started: now, updated: now)
                if case .transferFailed(_, let reason) = event {
                    record.update(progress, .failed, at: now)
                    record.reason = reason
                } else {
                    record.update(progress, .done, at: now)
                }
                tables.ended.append(record)
                if tables.ended.count > Self.endedTransfersKept { tables.ended.removeFirst(tables.ended.count - Self.endedTransfersKept) }
            case .streamStarted, .streamEnded, .pairingRequested, .peerTrusted, .peerUntrusted: break
            case .pluginStateChanged(let name, let state): tables.plugins[name] = state
            }
        }
    }
}
