/// A Kizuna plugin: a service the host starts with ``run(context:)`` and stops by firing
/// the context's shutdown subscription.
///
/// `run` works until ``PluginContext/shutdown`` fires, then returns. Returning early ends
/// the plugin (it is reported stopped); throwing marks it failed with the error as reason.
/// If it has not returned a grace period after shutdown, the host cancels its tasks, and a
/// plugin that still does not return is reported stuck.
public protocol Plugin: AnyObject, Sendable {
    /// Works until `context.shutdown` fires, then returns.
    func run(context: PluginContext) async throws
}

/// Finds peers nearby and announces this host. Found and lost peers are published on the
/// event bus (``HostEvent/peerFound(_:)``, ``HostEvent/peerLost(_:)``).
public protocol DiscoveryPlugin: Plugin {
    /// The peers this plugin sees right now.
    func currentPeers() async -> [Peer]
}

/// Carries connections between hosts. Inbound connections are handed to
/// ``PluginContext/routeInbound(_:)``, which passes each to the plugin for its service.
public protocol TransportPlugin: Plugin {
    /// Where this host accepts connections, once the plugin is running.
    func listeningAddress() async -> PeerAddress?
    /// Opens a connection to `address` for `service`.
    func connect(to address: PeerAddress, service: String) async throws -> any Connection
}

/// Sends files and directories to peers over the transport it is given, and receives them.
public protocol FileTransferPlugin: Plugin {
    /// Sends the file or directory at `path` (an absolute path) to `peer`; returns once the
    /// peer has verified and stored everything. `progress` is called as bytes are
    /// acknowledged, as well as the same progress being published on the event bus.
    func send(path: String, to peer: Peer, progress: @escaping @Sendable (TransferProgress) -> Void) async throws -> TransferProgress
    /// Answers an incoming offer that waits for a person (``HostEvent/transferOffered(_:)``);
    /// false if no offer `id` waits. `existing` says what to do with files whose names are
    /// taken, for this offer only (nil: as the plugin's settings say). Called by
    /// `kizuna accept [--existing rename|skip|overwrite]` and `kizuna refuse`.
    func answer(offer id: String, accept: Bool, existing: ExistingFiles?) -> Bool
    /// Stops transfer `id`, outgoing or incoming, and tells the peer; false if no transfer
    /// `id` is under way. The transfer ends with ``HostEvent/transferFailed(_:reason:)``.
    /// Called by `kizuna cancel`.
    func cancel(transfer id: String) -> Bool
}

extension FileTransferPlugin {
    /// For a plugin that never holds offers: there is none to answer.
    public func answer(offer id: String, accept: Bool, existing: ExistingFiles?) -> Bool { false }
    /// For a plugin whose transfers cannot be stopped: none is cancelled.
    public func cancel(transfer id: String) -> Bool { false }
}

/// Streams live frames to peers over the transport it is given, and hands the frames of
/// incoming streams to viewers.
public protocol StreamingPlugin: Plugin {
    /// Streams `frames` to `peer` until the sequence ends; returns the stream's identifier.
    func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: Peer) async throws -> String
    /// Everything incoming streams deliver from now on. A viewer that reads slower than
    /// frames arrive misses the oldest ones and is told how many
    /// (``BroadcastMessage/lagged(missed:)``): memory stays bounded and the stream stays live.
    func watch() -> BroadcastReceiver<StreamDelivery>
}

/// What an incoming stream delivers to its viewers.
public enum StreamDelivery: Sendable, Hashable {
    /// A peer started stream `id`.
    case started(id: String, peer: PeerID)
    /// A frame of stream `id`.
    case frame(id: String, Frame)
    /// Stream `id` ended; `framesDropped` frames were dropped on the way.
    case ended(id: String, framesDropped: UInt64)
}
