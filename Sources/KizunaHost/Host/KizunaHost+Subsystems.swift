public import KizunaSDK

/// Why a request to a subsystem (peers, send, stream, watch) cannot be done.
public struct SubsystemError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What the host's subsystems do for people: the CLI's `peers`, `send`, `stream` and `watch`.
extension KizunaHost {
    /// The peers discovery has found, by identity.
    public nonisolated func peers() -> [Peer] {
        state.peers.values.sorted { ($0.name, $0.id.rawValue) < ($1.name, $1.id.rawValue) }
    }

    /// The peer `text` names: its id, its name, or a unique prefix of its id (typed in any
    /// case, with or without dashes).
    public nonisolated func peer(named text: String) throws(SubsystemError) -> Peer {
        let known = peers()
        if let exact = known.first(where: { $0.id.rawValue == text }) { return exact }
        let typed = PeerID.normalized(text)
        let matches = known.filter { peer in
            peer.name == text || typed.map { !$0.isEmpty && (PeerID.normalized(peer.id.rawValue) ?? "").hasPrefix($0) } ?? false
        }
        if matches.count == 1 { return matches[0] }
        let list = known.isEmpty ? "no peer has been found yet (is a discovery plugin running? `kizuna peers` lists them)" : "known peers: \(known.map { "\($0.id) (\($0.name))" }.joined(separator: ", "))"
        if matches.isEmpty { throw SubsystemError("no peer matches '\(text)'; \(list)") }
        throw SubsystemError("'\(text)' matches \(matches.count) peers; give the id. \(list)")
    }

    /// Sends the file or folder at `path` to `peer` with the running file-transfer plugin.
    public func send(path: String, to peer: String, progress: @escaping @Sendable (TransferProgress) -> Void) async throws -> TransferProgress {
        guard path.hasPrefix("/") else { throw SubsystemError("'\(path)' is not an absolute path; the host may run in another folder") }
        let plugin = try fileTransfer()
        return try await plugin.send(path: path, to: try self.peer(named: peer), progress: progress)
    }

    /// The transfers under way, oldest first, then the latest that ended.
    public nonisolated func transfers() -> [TransferRecord] { state.transferRecords }

    /// Answers the incoming offer `id` that waits for this host's user; `existing` says what
    /// to do with names already taken, for this offer only (nil: the plugin's setting).
    public func answerTransfer(_ id: String, accept: Bool, existing: ExistingFiles? = nil) throws(SubsystemError) {
        let plugin = try fileTransfer()
        guard plugin.answer(offer: id, accept: accept, existing: existing) else {
            let waiting = transfers().filter { $0.phase == .waiting && !$0.progress.outgoing }.map(\.progress.id)
            throw SubsystemError(
                "no offer '\(id)' waits for an answer on this host; "
                    + (waiting.isEmpty ? "none waits now" : "waiting: \(waiting.joined(separator: ", "))") + " (`kizuna transfers` lists them)")
        }
    }

    /// Stops transfer `id`, outgoing or incoming; the peer is told.
    public func cancelTransfer(_ id: String) throws(SubsystemError) {
        let plugin = try fileTransfer()
        guard plugin.cancel(transfer: id) else {
            let ended = transfers().first { $0.progress.id == id && ($0.phase == .done || $0.phase == .failed) }
            let under = transfers().filter { $0.phase == .waiting || $0.phase == .moving }.map(\.progress.id)
            throw SubsystemError(
                (ended.map { "transfer '\(id)' has already \($0.phase == .done ? "finished" : "ended")" } ?? "no transfer '\(id)' is under way on this host")
                    + "; " + (under.isEmpty ? "none is under way now" : "under way: \(under.joined(separator: ", "))") + " (`kizuna transfers` lists them)")
        }
    }

    private func fileTransfer() throws(SubsystemError) -> any FileTransferPlugin {
        guard case .fileTransfer(let plugin)? = subsystem(.fileTransfer) else {
            throw SubsystemError("no file-transfer plugin is running; load one with `kizuna plugins load file-transfer`")
        }
        return plugin
    }

    /// Streams `frames` to `peer` with the running streaming plugin; returns the stream's id.
    public func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: String) async throws -> String {
        guard case .streaming(let plugin)? = subsystem(.streaming) else {
            throw SubsystemError("no streaming plugin is running; load one with `kizuna plugins load streaming`")
        }
        return try await plugin.stream(frames, to: try self.peer(named: peer))
    }

    /// Asks `peer` to pair: `shown` gets the code to compare as soon as the peer's key is
    /// proven; returns once the other user accepted and both hosts trust each other.
    public func pair(with peer: String, shown: @escaping @Sendable (PairingRequest) -> Void) async throws -> TrustedPeer {
        let found = try self.peer(named: peer)
        guard case .transport(let transport)? = subsystem(.transport) else {
            throw SubsystemError("no transport plugin is running; load one with `kizuna plugins load tcp-transport`")
        }
        return try await pairing.pair(with: found, over: transport, shown: shown)
    }

    /// Stops trusting the peer `text` names (a trusted peer's id, a unique prefix of it, or
    /// its name); returns it.
    public nonisolated func untrust(_ text: String) throws -> TrustedPeer {
        let trusted = configuration.trust.all
        let typed = PeerID.normalized(text) ?? ""
        let matches = trusted.filter { $0.name == text || (!typed.isEmpty && (PeerID.normalized($0.id.rawValue) ?? "").hasPrefix(typed)) }
        guard matches.count == 1 else {
            let list = trusted.isEmpty ? "this host trusts no peer" : "trusted: \(trusted.map { "\($0.id.short) (\($0.name))" }.joined(separator: ", "))"
            throw SubsystemError(matches.isEmpty ? "no trusted peer matches '\(text)'; \(list)" : "'\(text)' matches \(matches.count) trusted peers; give more of the id. \(list)")
        }
        try configuration.trust.remove(matches[0].id)
        events.publish(.peerUntrusted(matches[0].id))
        return matches[0]
    }

    /// A viewer of incoming streams, from the running streaming plugin.
    public func watchStreams() throws(SubsystemError) -> BroadcastReceiver<StreamDelivery> {
        guard case .streaming(let plugin)? = subsystem(.streaming) else {
            throw SubsystemError("no streaming plugin is running; load one with `kizuna plugins load streaming`")
        }
        return plugin.watch()
    }
}

/// A ``BoundedChannel`` of frames seen as a throwing sequence, as ``StreamingPlugin`` takes them.
public struct FrameFeed: AsyncSequence, Sendable {
    public typealias Element = Frame
    public typealias Failure = any Error
    let channel: BoundedChannel<Frame>

    public init(_ channel: BoundedChannel<Frame>) { self.channel = channel }

    public func makeAsyncIterator() -> Iterator { Iterator(channel: channel) }

    public struct Iterator: AsyncIteratorProtocol {
        let channel: BoundedChannel<Frame>
        public mutating func next() async throws -> Frame? { await channel.receive() }
    }
}
