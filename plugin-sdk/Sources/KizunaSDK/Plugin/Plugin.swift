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

/// Sends files and directories to peers over the transport it is given.
public protocol FileTransferPlugin: Plugin {
    /// Sends the file or directory at `path` to `peer`; returns once the peer has verified
    /// and stored it.
    func send(path: String, to peer: Peer) async throws -> TransferProgress
}

/// Streams live frames to peers over the transport it is given.
public protocol StreamingPlugin: Plugin {
    /// Streams `frames` to `peer` until the sequence ends; returns the stream's identifier.
    func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: Peer) async throws -> String
}
