// The built-in transport: TLS 1.3 over TCP on SwiftNIO, both sides authenticated by the
// hosts' own certificates. Every message is a frame (a 4-byte big-endian length, then the
// bytes). A connection starts with a handshake inside TLS: the side that connects sends a
// hello naming its host id and the service the connection is for, and the side that
// accepts answers with its own id, or with the reason it refuses. Each side takes the
// other's id from the key the other proved it holds, never from the hello: a hello that
// claims another id is refused.
import Crypto
import KizunaBuiltinSupport
import KizunaSDK
import NIOCore
import NIOPosix
import NIOSSL
import Glibc
import Synchronization

final class TCPTransport: TransportPlugin {
    /// The running server, once `run` has bound it.
    private let server = WatchChannel<Server?>(nil)

    /// What `run` set up, for the calls that come from other plugins.
    struct Server: Sendable {
        let context: PluginContext
        let group: MultiThreadedEventLoopGroup
        let address: PeerAddress
        let options: Options
        let registry: ConnectionRegistry
        let admission: Admission
        let held: HeldBytes
        let tls: TLSContexts
    }

    struct Options: Sendable {
        /// `::`: every address, IPv6 and IPv4 (or IPv4 only where the machine has no IPv6).
        var listenHost = "::"
        var port = 0
        var threads = 1
        var maxMessageBytes = (1 << 20) + 4096
        var handshakeTimeout = TimeAmount.seconds(5)
        var connectTimeout = TimeAmount.seconds(5)
        var idleTimeout = TimeAmount.seconds(60)
        var maxConnections = 64
        var maxConnectionsPerAddress = 16
        /// Messages a connection holds for a reader that is behind (beyond these, NIO stops
        /// reading the socket, so TCP slows the peer down).
        var inboundBuffer = 2
        /// The most bytes of peers' messages held at once, over all connections.
        var maxHeldBytes = 64 << 20

        /// Reads the settings, refusing a value out of range with the setting's name and range.
        static let schema = SettingsSchema(
            plugin: "tcp-transport",
            [
                "listen-host": .string, "port": .integer, "threads": .integer, "max-message-bytes": .integer, "handshake-timeout-ms": .integer,
                "connect-timeout-ms": .integer, "idle-timeout-ms": .integer, "max-connections": .integer, "max-connections-per-address": .integer,
                "max-held-bytes": .integer,
            ])

        init(_ settings: PluginSettings) throws(TransportError) {
            if let refusal = Self.schema.refusal(of: settings) { throw TransportError(refusal) }
            func read(_ key: String, _ range: ClosedRange<Int64>) throws(TransportError) -> Int64? {
                guard let value = settings.integer(key) else { return nil }
                guard range.contains(value) else { throw TransportError("setting '\(key)' is \(value); give \(range.lowerBound) to \(range.upperBound)") }
                return value
            }
            if let host = settings.string("listen-host") { listenHost = host }
            if let port = try read("port", 0...65535) { self.port = Int(port) }
            if let threads = try read("threads", 1...64) { self.threads = Int(threads) }
            if let bytes = try read("max-message-bytes", 1024...(1 << 30)) { maxMessageBytes = Int(bytes) }
            if let ms = try read("handshake-timeout-ms", 1...600_000) { handshakeTimeout = .milliseconds(ms) }
            if let ms = try read("connect-timeout-ms", 1...600_000) { connectTimeout = .milliseconds(ms) }
            if let ms = try read("idle-timeout-ms", 1000...86_400_000) { idleTimeout = .milliseconds(ms) }
            if let count = try read("max-connections", 1...65536) { maxConnections = Int(count) }
            if let count = try read("max-connections-per-address", 1...65536) { maxConnectionsPerAddress = Int(count) }
            if let bytes = try read("max-held-bytes", 1 << 20...(1 << 40)) { maxHeldBytes = Int(bytes) }
            // A connection may hold a message arriving and those queued for its reader.
            let perConnection = (inboundBuffer * 2 + 2) * maxMessageBytes
            guard maxHeldBytes >= perConnection else {
                throw TransportError("setting 'max-held-bytes' is \(maxHeldBytes); one connection may hold \(perConnection) bytes at 'max-message-bytes' = \(maxMessageBytes), so give at least that")
            }
        }
    }

    func run(context: PluginContext) async throws {
        let options = try Options(context.settings)
        guard let credentials = context.credentials else {
            throw TransportError("the host gave this transport no certificate and key (PluginContext.credentials); run it in a Kizuna host of SDK 0.3 or later")
        }
        let tls = try TLSContexts(credentials)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        let registry = ConnectionRegistry()
        let admission = Admission(total: options.maxConnections, perAddress: options.maxConnectionsPerAddress)
        let held = HeldBytes(limit: options.maxHeldBytes)
        var listenHost = options.listenHost
        func bind(_ host: String) async throws -> NIOAsyncChannel<Inbound, Never> {
            try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: options.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let proof = PeerProof()
                        let gate = InboundGate(admission: admission, logger: context.logger)
                        try channel.pipeline.syncOperations.addHandler(gate)
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.server, customVerificationCallback: proof.verify))
                        let (wrapped, account) = try Self.wrap(channel, options: options, held: held)
                        return Inbound(channel: wrapped, account: account, proof: proof, gate: gate.verdict)
                    }
                }
        }
        do {
            let listener: NIOAsyncChannel<Inbound, Never>
            do {
                listener = try await bind(listenHost)
            } catch where listenHost == "::" {
                // A machine (or container) without IPv6: every IPv4 address instead.
                context.logger.info("no IPv6 here; listening on every IPv4 address", metadata: ["reason": "\(error)"])
                listenHost = "0.0.0.0"
                listener = try await bind(listenHost)
            }
            let port = listener.channel.localAddress?.port ?? options.port
            let address = PeerAddress(host: listenHost, port: port)
            let running = Server(context: context, group: group, address: address, options: options, registry: registry, admission: admission, held: held, tls: tls)
            server.send(running)
            activeServer.withLock { $0 = (admission, held) }
            defer { activeServer.withLock { if $0?.admission === admission { $0 = nil } } }
            context.ready()
            context.logger.info("listening", metadata: ["address": "\(address)"])

            let closer = try context.runtime.spawn(name: "close-listener") {
                await context.shutdown.wait()
                try? await listener.channel.close()
            }
            try await listener.executeThenClose { inbound in
                for try await accepted in inbound {
                    let child = accepted.channel
                    // The gate counted it against the caps when it became active (before
                    // anything was read, and before it was handed here), and closed it if
                    // it is over them.
                    if accepted.gate.isRefused {
                        await Self.discard(child)
                        continue
                    }
                    if (try? context.runtime.spawn(name: "inbound connection", { await Self.accept(child, account: accepted.account, proof: accepted.proof, server: running) })) == nil {
                        await Self.discard(child)
                    }
                }
            }
            closer.cancel()
        } catch {
            server.finish()
            try? await group.shutdownGracefully()
            throw TransportError("cannot listen on \(PeerAddress(host: listenHost, port: options.port)): \(error); set 'listen-host' and 'port' in the transport's [settings]")
        }
        await registry.closeAll()
        server.finish()
        try? await group.shutdownGracefully()
    }

    func listeningAddress() async -> PeerAddress? { await runningServer()?.address }

    func connect(to address: PeerAddress, service: String) async throws -> any Connection {
        guard let server = await runningServer() else { throw TransportError("the TCP transport is not running") }
        let options = server.options
        let channel: NIOAsyncChannel<[UInt8], ByteBuffer>
        let account: HeldBytes.Account
        let proof = PeerProof()
        do {
            let tls = server.tls
            (channel, account) = try await ClientBootstrap(group: server.group)
                .connectTimeout(options.connectTimeout)
                .connect(host: address.host, port: address.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.client, serverHostname: nil, customVerificationCallback: proof.verify))
                        return try Self.wrap(channel, options: options, held: server.held)
                    }
                }
        } catch {
            throw TransportError("cannot connect to \(address): \(error)")
        }
        let hello = Handshake.Hello(id: server.context.host.id.rawValue, name: server.context.host.name, service: service)
        let handshake = TCPConnection.Handshake(
            opening: { outbound in try await outbound.write(Handshake.encode(hello)) },
            answer: { reply, _ in
                let answer = try Handshake.decodeReply(from: reply)
                if let refusal = answer.error { throw TransportError("\(address) refused the connection: \(refusal)") }
                let proven = try proof.peer()
                guard answer.id == proven.rawValue else {
                    throw TransportError("\(address) claims to be host \(answer.id ?? "?") but proved the key of host \(proven); refused")
                }
                return (proven, service)
            })
        return try await TCPConnection.open(channel, account: account, server: server, inbound: false, timeout: options.handshakeTimeout, handshake: handshake)
    }

    private func runningServer() async -> Server? {
        for await value in server.subscribe() {
            if let value { return value }
        }
        return nil
    }

    /// Closes a connection that is refused before its handshake. (An async channel must be
    /// closed through `executeThenClose`, which finishes its writer; dropping it unfinished
    /// is a fatal error in NIO.)
    private static func discard(_ channel: NIOAsyncChannel<[UInt8], ByteBuffer>) async {
        try? await channel.executeThenClose { _, _ in }
    }

    private static func accept(_ channel: NIOAsyncChannel<[UInt8], ByteBuffer>, account: HeldBytes.Account, proof: PeerProof, server: Server) async {
        let me = server.context.host.id.rawValue
        let from = channel.channel.remoteAddress?.description ?? "unknown"
        let handshake = TCPConnection.Handshake(answer: { first, outbound in
            let hello: Handshake.Hello
            let proven: PeerID
            do {
                hello = try Handshake.decodeHello(from: first)
                proven = try proof.peer()
                guard hello.id == proven.rawValue else {
                    throw TransportError("the peer claims to be host \(hello.id) but proved the key of host \(proven)")
                }
            } catch {
                try? await outbound.write(Handshake.encode(Handshake.Reply(id: me, error: "\(error)")))
                throw error
            }
            try await outbound.write(Handshake.encode(Handshake.Reply(id: me, error: nil)))
            return (proven, hello.service)
        })
        do {
            let connection = try await TCPConnection.open(
                channel, account: account, server: server, inbound: true, timeout: server.options.handshakeTimeout, handshake: handshake)
            await server.context.routeInbound(connection)
        } catch {
            server.context.logger.warning("refused an inbound connection", metadata: ["from": "\(from)", "reason": "\(error)"])
        }
    }

    // A peer that vanished without closing (a half-open connection) is found by TCP
    // keepalive: probed after 10 s of silence, every 10 s, and dropped after 3 unanswered.
    static let keepAliveSeconds: SocketOptionValue = 10
    static let keepAliveIdle = ChannelOptions.Types.SocketOption(level: .init(IPPROTO_TCP), name: .init(TCP_KEEPIDLE))
    static let keepAliveInterval = ChannelOptions.Types.SocketOption(level: .init(IPPROTO_TCP), name: .init(TCP_KEEPINTVL))
    static let keepAliveCount = ChannelOptions.Types.SocketOption(level: .init(IPPROTO_TCP), name: .init(TCP_KEEPCNT))

    /// Sets a new connection's socket options (accepted or connecting alike), then puts the
    /// framing handlers and the async bridge on it. The account counts what the connection
    /// holds until it closes.
    private static func wrap(_ channel: any Channel, options: Options, held: HeldBytes) throws -> (NIOAsyncChannel<[UInt8], ByteBuffer>, HeldBytes.Account) {
        if let socket = channel.syncOptions {
            try socket.setOption(.socketOption(.tcp_nodelay), value: 1)
            try socket.setOption(.socketOption(.so_keepalive), value: 1)
            try socket.setOption(keepAliveIdle, value: keepAliveSeconds)
            try socket.setOption(keepAliveInterval, value: keepAliveSeconds)
            try socket.setOption(keepAliveCount, value: 3)
            // Reads of 256 KiB at most: NIO makes several reads per wakeup, and TLS holds the
            // ciphertext and the plaintext of each at once, so with 1 MiB reads a peer that
            // sends fast made the host hold about 13 MiB per connection (measured with
            // Benchmarks/hostile-peers/pinning.py; about 4 MiB now), for no speed measurably gained.
            try socket.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 64 << 10, maximum: 256 << 10))
        }
        let account = held.account()
        channel.closeFuture.whenComplete { _ in account.close() }
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxMessageBytes: options.maxMessageBytes, account: account)))
        try channel.pipeline.syncOperations.addHandler(FrameEncoder())
        let wrapped = try NIOAsyncChannel<[UInt8], ByteBuffer>(
            wrappingChannelSynchronously: channel,
            configuration: .init(backPressureStrategy: .init(lowWatermark: 1, highWatermark: options.inboundBuffer), isOutboundHalfClosureEnabled: true))
        return (wrapped, account)
    }
}

/// An accepted connection and what its TLS handshake proved about the peer.
struct Inbound: Sendable {
    let channel: NIOAsyncChannel<[UInt8], ByteBuffer>
    let account: HeldBytes.Account
    let proof: PeerProof
    let gate: InboundGate.Verdict
}

/// Counts open inbound connections, overall and per remote address, and refuses those over
/// the caps (settings `max-connections` and `max-connections-per-address`).
final class Admission: Sendable {
    private let total: Int
    private let perAddress: Int
    private let open = Mutex<(total: Int, byAddress: [String: Int], refused: UInt64)>((0, [:], 0))

    init(total: Int, perAddress: Int) {
        self.total = total
        self.perAddress = perAddress
    }

    /// Counts a connection from `address` in; returns why it is refused, or nil.
    func admit(_ address: String) -> String? {
        open.withLock { open in
            if open.total >= total {
                open.refused += 1
                return "\(total) connections are open (setting 'max-connections')"
            }
            if open.byAddress[address, default: 0] >= perAddress {
                open.refused += 1
                return "\(perAddress) connections from \(address) are open (setting 'max-connections-per-address')"
            }
            open.total += 1
            open.byAddress[address, default: 0] += 1
            return nil
        }
    }

    func release(_ address: String) {
        open.withLock { open in
            open.total -= 1
            if let count = open.byAddress[address], count > 1 { open.byAddress[address] = count - 1 } else { open.byAddress[address] = nil }
        }
    }

    var refusedCount: UInt64 { open.withLock { $0.refused } }

    /// Inbound connections closed for breaking the protocol: a bad or late handshake, a
    /// message over the limit, an idle deadline.
    let violations = Atomic<UInt64>(0)
}

/// The running transport's admission and held bytes, for the actions.
let activeServer = Mutex<(admission: Admission, held: HeldBytes)?>(nil)

/// `refused-connections`: inbound connections refused over a cap since the transport started.
@_cdecl("kizuna_tcp_refused_connections") public func kizunaTCPRefusedConnections() -> UInt64 {
    activeServer.withLock { $0?.admission.refusedCount } ?? 0
}

/// `violations`: inbound connections closed for breaking the protocol since the transport started.
@_cdecl("kizuna_tcp_violations") public func kizunaTCPViolations() -> UInt64 {
    activeServer.withLock { $0?.admission.violations.load(ordering: .relaxed) } ?? 0
}

/// `held-bytes`: bytes of peers' messages the transport holds now (arriving, or not yet read).
@_cdecl("kizuna_tcp_held_bytes") public func kizunaTCPHeldBytes() -> Int64 {
    activeServer.withLock { $0.map { Int64($0.held.current) } } ?? 0
}

/// `peak-held-bytes`: the most bytes of peers' messages held at once since the transport started.
@_cdecl("kizuna_tcp_peak_held_bytes") public func kizunaTCPPeakHeldBytes() -> Int64 {
    activeServer.withLock { $0.map { Int64($0.held.peak) } } ?? 0
}

/// What went wrong in the transport, in words.
struct TransportError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { TCPTransport() } }
