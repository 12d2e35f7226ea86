import Foundation
import KizunaSDK
import Synchronization

extension Conformance {
    /// Two hosts with the subject (and its transport); the second as a peer of the first.
    static func transferPair(_ environment: CheckEnvironment, cutAfter bytes: Int? = nil) async throws -> (sender: HostedPlugin, receiver: HostedPlugin, peer: Peer, cutter: CuttingTransport?, b: TestHost) {
        let a = environment.host("a"), b = environment.host("b")
        var cutter: CuttingTransport?
        if let bytes, let transport = environment.subject.transport, case .transport(let inner) = try transport.make() {
            let wrapper = CuttingTransport(inner, cutAfter: bytes)
            cutter = wrapper
            try a.start(.transport(wrapper), name: transport.name, settings: transport.settings)
        } else if let transport = environment.subject.transport {
            try a.start(try transport.make(), name: transport.name, settings: transport.settings)
        }
        let sender = try a.start(try environment.subject.make(), name: environment.subject.name, settings: environment.settings(for: a), provides: environment.subject.provides)
        let receiver = try environment.startSubject(on: b)
        guard case .transport(let transport)? = b.running(.transport)?.object, let address = await transport.listeningAddress() else {
            throw CheckFailure("the receiving host's transport has no address")
        }
        return (sender, receiver, Peer(id: b.identity.id, name: b.identity.name, addresses: [address]), cutter, b)
    }

    static func send(_ sender: HostedPlugin, _ path: String, to peer: Peer) async throws -> TransferProgress {
        guard case .fileTransfer(let plugin) = sender.object else { throw CheckFailure("not a file-transfer plugin") }
        return try await plugin.send(path: path, to: peer, progress: { _ in })
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func same(_ a: String, _ b: String) -> Bool { FileManager.default.contentsEqual(atPath: a, andPath: b) }

    static let fileTransferChecks: [ConformanceCheck] = [
        ConformanceCheck("file-transfer.integrity", "a file and a tree arrive byte for byte, under their names", kinds: [.fileTransfer]) { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let (sender, _, peer, _, b) = try await transferPair(environment)
            let source = environment.directory + "/outgoing"
            try write(randomBytes(8 << 20), to: "\(source)/big.bin")
            try write(Array("one".utf8), to: "\(source)/tree/a.txt")
            try write(randomBytes(70_000), to: "\(source)/tree/nested/b.bin")
            try write([], to: "\(source)/tree/nested/empty")
            _ = try await send(sender, "\(source)/big.bin", to: peer)
            _ = try await send(sender, "\(source)/tree", to: peer)
            let received = "\(environment.directory)/\(b.identity.name)-received"
            for name in ["big.bin", "tree/a.txt", "tree/nested/b.bin", "tree/nested/empty"] {
                try require(same("\(source)/\(name)", "\(received)/\(name)"), "\(name) did not arrive intact in the receive directory")
            }
            return .passed()
        },
        ConformanceCheck("file-transfer.refuses-escaping-names", "nothing is written through links in the receive directory or created as a link", kinds: [.fileTransfer]) { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let (sender, _, peer, _, b) = try await transferPair(environment)
            let received = "\(environment.directory)/\(b.identity.name)-received"
            let outside = environment.directory + "/outside"
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: received, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: "\(received)/album", withDestinationPath: outside)
            let source = environment.directory + "/outgoing"
            try write(Array("planted".utf8), to: "\(source)/album/photo.txt")
            try FileManager.default.createDirectory(atPath: "\(source)/links", withIntermediateDirectories: true)
            try write(Array("secret".utf8), to: "\(outside)/secret.txt")
            try FileManager.default.createSymbolicLink(atPath: "\(source)/links/escape", withDestinationPath: "\(outside)/secret.txt")
            try write(Array("fine".utf8), to: "\(source)/links/fine.txt")
            _ = try? await send(sender, "\(source)/album", to: peer)
            try require(!FileManager.default.fileExists(atPath: "\(outside)/photo.txt"), "a file was written through a link in the receive directory (album -> outside)")
            _ = try? await send(sender, "\(source)/links", to: peer)
            let planted = (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(received)/links/escape")) != nil
            try require(!planted, "a link was created in the receive directory")
            return .passed()
        },
        ConformanceCheck("file-transfer.resume", "a transfer cut off halfway, sent again, sends only the rest", kinds: [.fileTransfer]) { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let (sender, _, peer, cutter, b) = try await transferPair(environment, cutAfter: 3 << 20)
            guard let cutter else { return .skipped("no transport to cut") }
            let source = environment.directory + "/outgoing/film.bin"
            try write(randomBytes(8 << 20), to: source)
            let finished = (try? await send(sender, source, to: peer)) != nil
            try require(!finished, "the transfer reported success although its connection was cut after 3 MiB")
            cutter.disarm()
            let done: TransferProgress
            do {
                done = try await send(sender, source, to: peer)
            } catch {
                throw CheckFailure("sending again after the cut failed: \(error)")
            }
            try require(same(source, "\(environment.directory)/\(b.identity.name)-received/film.bin"), "after the cut and a second send, the file did not arrive intact")
            if done.resumedFrom == 0 { return .warning("the second send started over (resumedFrom is 0)") }
            return .passed("resumed from \(done.resumedFrom) bytes")
        },
    ]
}

/// A transport wrapper that cuts each connection it opens once `cutAfter` bytes were sent
/// on it, until disarmed: an interruption for resume checks.
final class CuttingTransport: TransportPlugin {
    let inner: any TransportPlugin
    let limit: Int
    private let armed = Atomic(true)

    init(_ inner: any TransportPlugin, cutAfter limit: Int) {
        self.inner = inner
        self.limit = limit
    }

    func disarm() { armed.store(false, ordering: .relaxed) }
    func run(context: PluginContext) async throws { try await inner.run(context: context) }
    func listeningAddress() async -> PeerAddress? { await inner.listeningAddress() }

    func connect(to address: PeerAddress, service: String) async throws -> any Connection {
        let connection = try await inner.connect(to: address, service: service)
        return armed.load(ordering: .relaxed) ? CutConnection(connection, limit: limit) : connection
    }

    final class CutConnection: Connection {
        let inner: any Connection
        let limit: Int
        private let sent = Atomic(0)
        init(_ inner: any Connection, limit: Int) {
            self.inner = inner
            self.limit = limit
        }
        var peer: PeerID { inner.peer }
        var service: String { inner.service }
        func send(_ message: [UInt8]) async throws {
            if sent.add(message.count, ordering: .relaxed).newValue > limit {
                await inner.close()
                throw ConnectionCut()
            }
            try await inner.send(message)
        }
        func receive() async throws -> [UInt8]? { try await inner.receive() }
        func close() async { await inner.close() }
    }
}

/// The error a cut connection's send throws.
struct ConnectionCut: Error, CustomStringConvertible {
    var description: String { "the connection was cut by the conformance check" }
}
