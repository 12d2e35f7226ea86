// The plugin source `kizuna plugin new` writes, one per kind. Each is a small plugin that
// keeps its kind's contract (it passes the conformance suite) and says where real work
// goes. Placeholders: __NAME__, __TYPE__.

enum KindTemplates {
    static let discovery = #"""
    // A discovery plugin. It reports the peers listed in its `peers` setting
    // ("name@host:port"), and finds other instances of itself in the same process, which
    // is how the conformance suite runs two hosts. Replace the in-process table with your
    // protocol (announce in `run`, publish `.peerFound` and `.peerLost` as peers come and go).
    import KizunaSDK
    import Synchronization

    /// The running instances in this process, by host.
    private let instances = Mutex<[PeerID: (peer: Peer, events: EventBus)]>([:])

    final class __TYPE__: DiscoveryPlugin {
        private let found = Mutex<[PeerID: Peer]>([:])

        func currentPeers() async -> [Peer] {
            found.withLock { $0.values.sorted { $0.id.rawValue < $1.id.rawValue } }
        }

        func run(context: PluginContext) async throws {
            for entry in context.settings.strings("peers") {
                guard let peer = Self.parse(entry) else {
                    context.logger.warning("ignoring a 'peers' entry that is not name@host:port", metadata: ["entry": "\(entry)"])
                    continue
                }
                report(peer, to: context.events)
            }
            let address = await context.transport?.listeningAddress()
            let me = Peer(id: context.host.id, name: context.host.name, addresses: address.map { [$0] } ?? [], services: context.host.services)
            let others = instances.withLock { table in
                defer { table[me.id] = (me, context.events) }
                return Array(table.values)
            }
            for other in others {
                report(other.peer, to: context.events)
                other.events.publish(.peerFound(me))
            }
            context.ready()
            await context.shutdown.wait()
            let remaining = instances.withLock { table in
                table[me.id] = nil
                return Array(table.values)
            }
            for other in remaining { other.events.publish(.peerLost(me.id)) }
        }

        private func report(_ peer: Peer, to events: EventBus) {
            found.withLock { $0[peer.id] = peer }
            events.publish(.peerFound(peer))
        }

        static func parse(_ entry: String) -> Peer? {
            let parts = entry.split(separator: "@", maxSplits: 1)
            guard parts.count == 2, let colon = parts[1].lastIndex(of: ":"), let port = Int(parts[1][parts[1].index(after: colon)...]) else { return nil }
            return Peer(id: PeerID(String(parts[0])), name: String(parts[0]), addresses: [PeerAddress(host: String(parts[1][..<colon]), port: port)])
        }
    }

    extension PluginSettings {
        /// A setting that is an array of strings (empty if missing).
        func strings(_ key: String) -> [String] {
            guard case .array(let values)? = values[key] else { return [] }
            return values.compactMap { if case .string(let text) = $0 { text } else { nil } }
        }
    }

    @_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { __TYPE__() } }

    """#

    static let transport = #"""
    // A transport plugin. Its instances reach each other through a table in this process,
    // with bounded buffers for backpressure: the shape of the contract without sockets.
    // Replace the table with your network code; the conformance suite checks that messages
    // arrive whole and in order, that send waits for a slow reader, that close() delivers
    // what was sent, and that connections end when a peer goes away.
    import KizunaSDK
    import Synchronization

    /// Running instances in this process, by port.
    private let listeners = Mutex<(next: Int, open: [Int: Listener])>((1, [:]))

    final class Listener: Sendable {
        let context: PluginContext
        let port: Int
        let connections = Mutex<[Link]>([])
        init(context: PluginContext, port: Int) {
            self.context = context
            self.port = port
        }
    }

    final class __TYPE__: TransportPlugin {
        private let listener = WatchChannel<Listener?>(nil)

        func run(context: PluginContext) async throws {
            let me = listeners.withLock { table in
                defer { table.next += 1 }
                let listener = Listener(context: context, port: table.next)
                table.open[table.next] = listener
                return listener
            }
            listener.send(me)
            context.ready()
            await context.shutdown.wait()
            _ = listeners.withLock { $0.open.removeValue(forKey: me.port) }
            for link in me.connections.withLock({ $0 }) { link.end() }
            listener.finish()
        }

        private func running() async -> Listener? {
            for await value in listener.subscribe() {
                if let value { return value }
            }
            return nil
        }

        func listeningAddress() async -> PeerAddress? { await running().map { PeerAddress(host: "in-process", port: $0.port) } }

        func connect(to address: PeerAddress, service: String) async throws -> any Connection {
            guard let me = await running() else { throw RuntimeError(.closed, "__NAME__ is not running") }
            guard let target = listeners.withLock({ $0.open[address.port] }) else { throw RuntimeError(.closed, "nothing listens at \(address)") }
            let out = BoundedChannel<[UInt8]>(capacity: 8), back = BoundedChannel<[UInt8]>(capacity: 8)
            let near = Link(peer: target.context.host.id, service: service, incoming: back, outgoing: out)
            let far = Link(peer: me.context.host.id, service: service, incoming: out, outgoing: back)
            me.connections.withLock { $0.append(near) }
            target.connections.withLock { $0.append(far) }
            await target.context.routeInbound(far)
            return near
        }
    }

    /// One end of a connection.
    final class Link: Connection {
        let peer: PeerID
        let service: String
        private let incoming: BoundedChannel<[UInt8]>
        private let outgoing: BoundedChannel<[UInt8]>

        init(peer: PeerID, service: String, incoming: BoundedChannel<[UInt8]>, outgoing: BoundedChannel<[UInt8]>) {
            self.peer = peer
            self.service = service
            self.incoming = incoming
            self.outgoing = outgoing
        }

        func send(_ message: [UInt8]) async throws { try await outgoing.send(message) }
        func receive() async throws -> [UInt8]? { await incoming.receive() }
        func close() async { outgoing.finish() }
        func end() {
            outgoing.finish()
            incoming.finish()
        }
    }

    @_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { __TYPE__() } }

    """#

    static let fileTransfer = #"""
    // A file-transfer plugin. The sender sends, per file, a header line ("path size"), the
    // bytes in chunks, and an empty message; the receiver checks every name, writes to a
    // temporary file and renames it once complete. Add verification (a hash) and resuming
    // (offer the receiver's partial size) for real use; `kizuna conformance` warns while
    // a transfer cut off and sent again starts over.
    import Foundation
    import KizunaSDK

    final class __TYPE__: FileTransferPlugin {
        private let started = WatchChannel<PluginContext?>(nil)

        func run(context: PluginContext) async throws {
            started.send(context)
            let directory = context.settings.string("receive-dir").map { ($0 as NSString).expandingTildeInPath } ?? NSTemporaryDirectory() + "__NAME__"
            let receiver = try context.runtime.spawn(name: "receive") {
                for await connection in context.inbound {
                    do {
                        try await Self.receive(from: connection, into: directory)
                    } catch {
                        context.logger.warning("receive failed", metadata: ["reason": "\(error)"])
                    }
                    await connection.close()
                }
            }
            context.ready()
            await context.shutdown.wait()
            receiver.cancel()
            started.finish()
        }

        func send(path: String, to peer: Peer, progress: @escaping @Sendable (TransferProgress) -> Void) async throws -> TransferProgress {
            var context: PluginContext?
            for await value in started.subscribe() where value != nil {
                context = value
                break
            }
            guard let transport = context?.transport, let address = peer.addresses.first else {
                throw RuntimeError(.closed, "__NAME__ is not running, or the peer has no address")
            }
            let root = URL(fileURLWithPath: path)
            var files: [(name: String, url: URL)] = []
            if (try? root.resourceValues(forKeys: [.isDirectoryKey]).isDirectory) == true {
                let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey])
                while let url = walker?.nextObject() as? URL {
                    let values = try url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
                    guard values.isRegularFile == true, values.isSymbolicLink != true else { continue }
                    files.append((root.lastPathComponent + "/" + url.path.dropFirst(root.path.count + 1), url))
                }
            } else {
                files.append((root.lastPathComponent, root))
            }
            let connection = try await transport.connect(to: address, service: "file-transfer")
            var done = TransferProgress(id: UUIDString(), peer: peer.id, name: root.lastPathComponent, bytesDone: 0, bytesTotal: 0, outgoing: true)
            for file in files {
                let handle = try FileHandle(forReadingFrom: file.url)
                let size = try handle.seekToEnd()
                try handle.seek(toOffset: 0)
                done.bytesTotal += Int64(size)
                try await connection.send(Array("\(file.name) \(size)".utf8))
                while let chunk = try handle.read(upToCount: 256 << 10), !chunk.isEmpty {
                    try await connection.send(Array(chunk))
                    done.bytesDone += Int64(chunk.count)
                    progress(done)
                }
                try await connection.send([])
                guard let answer = try await connection.receive(), answer == Array("ok".utf8) else {
                    await connection.close()
                    throw RuntimeError(.closed, "the peer refused \(file.name)")
                }
            }
            await connection.close()
            return done
        }

        /// Receives files until the sender closes; refuses names that could leave `directory`.
        static func receive(from connection: any Connection, into directory: String) async throws {
            while let header = try await connection.receive() {
                let fields = String(decoding: header, as: UTF8.self).split(separator: " ")
                guard fields.count >= 2, let size = Int64(fields.last!) else { throw RuntimeError(.closed, "not a file header") }
                let name = fields.dropLast().joined(separator: " ")
                let parts = name.split(separator: "/", omittingEmptySubsequences: false)
                guard !name.hasPrefix("/"), !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                    try await connection.send(Array("refused".utf8))
                    throw RuntimeError(.closed, "refused the name \(name)")
                }
                var folder = directory
                for part in parts.dropLast() {
                    folder += "/" + part
                    if (try? FileManager.default.destinationOfSymbolicLink(atPath: folder)) != nil {
                        try await connection.send(Array("refused".utf8))
                        throw RuntimeError(.closed, "refused \(name): \(folder) is a link")
                    }
                }
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                let final = folder + "/" + parts.last!
                let partial = folder + "/." + parts.last! + ".partial"
                FileManager.default.createFile(atPath: partial, contents: nil)
                let output = try FileHandle(forWritingTo: URL(fileURLWithPath: partial))
                var written: Int64 = 0
                while let chunk = try await connection.receive(), !chunk.isEmpty {
                    try output.write(contentsOf: chunk)
                    written += Int64(chunk.count)
                }
                try output.close()
                guard written == size, (try? FileManager.default.destinationOfSymbolicLink(atPath: final)) == nil else {
                    try? FileManager.default.removeItem(atPath: partial)
                    try await connection.send(Array("refused".utf8))
                    throw RuntimeError(.closed, "\(name) came incomplete or would replace a link")
                }
                _ = try? FileManager.default.removeItem(atPath: final)
                try FileManager.default.moveItem(atPath: partial, toPath: final)
                try await connection.send(Array("ok".utf8))
            }
        }
    }

    private func UUIDString() -> String { UUID().uuidString }

    @_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { __TYPE__() } }

    """#

    static let streaming = #"""
    // A streaming plugin. Each frame travels as one message (an 8-byte sequence number,
    // then the payload); on the receiving side every viewer reads through a window of
    // recent frames, so a slow viewer misses the oldest instead of growing memory.
    import KizunaSDK

    final class __TYPE__: StreamingPlugin {
        private let started = WatchChannel<PluginContext?>(nil)
        private let deliveries = BroadcastChannel<StreamDelivery>(capacity: 256)

        func watch() -> BroadcastReceiver<StreamDelivery> { deliveries.subscribe() }

        func run(context: PluginContext) async throws {
            started.send(context)
            let receiver = try context.runtime.spawn(name: "receive") { [deliveries] in
                var count = 0
                for await connection in context.inbound {
                    count += 1
                    let id = "\(connection.peer)-\(count)"
                    _ = try? context.runtime.spawn(name: "stream \(id)") {
                        deliveries.send(.started(id: id, peer: connection.peer))
                        context.events.publish(.streamStarted(id: id, peer: connection.peer))
                        while let message = try? await connection.receive(), message.count >= 8 {
                            let sequence = message[..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                            deliveries.send(.frame(id: id, Frame(sequence: sequence, payload: Array(message[8...]))))
                        }
                        deliveries.send(.ended(id: id, framesDropped: 0))
                        context.events.publish(.streamEnded(id: id, peer: connection.peer))
                        await connection.close()
                    }
                }
            }
            context.ready()
            await context.shutdown.wait()
            receiver.cancel()
            started.finish()
        }

        func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: Peer) async throws -> String {
            var context: PluginContext?
            for await value in started.subscribe() where value != nil {
                context = value
                break
            }
            guard let transport = context?.transport, let address = peer.addresses.first else {
                throw RuntimeError(.closed, "__NAME__ is not running, or the peer has no address")
            }
            let connection = try await transport.connect(to: address, service: "streaming")
            for try await frame in frames {
                try await connection.send(withUnsafeBytes(of: frame.sequence.bigEndian, Array.init) + frame.payload)
            }
            await connection.close()
            return "\(peer.id)"
        }
    }

    @_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { __TYPE__() } }

    """#
}
