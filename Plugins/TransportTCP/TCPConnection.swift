import KizunaSDK
import NIOCore
import NIOSSL
import Synchronization

/// One TCP connection after its handshake: messages out through NIO's async writer (which
/// waits while the socket is not writable), messages in through a small bounded buffer fed
/// by a pump task (while the buffer is full the pump stops reading, so NIO stops reading
/// the socket and TCP slows the peer down).
final class TCPConnection: Connection {
    let peer: PeerID
    let service: String
    let info: ConnectionInfo
    private let channel: any Channel
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    fileprivate let incoming: BoundedChannel<[UInt8]>
    /// What this connection holds of the transport's `max-held-bytes`.
    private let account: HeldBytes.Account
    fileprivate let failure = Mutex<TransportError?>(nil)
    /// When a message last went either way (NIO's uptime clock), for the idle deadline.
    private let lastActivity = Atomic<UInt64>(NIODeadline.now().uptimeNanoseconds)

    private init(
        peer: PeerID, service: String, info: ConnectionInfo, channel: any Channel, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        account: HeldBytes.Account, buffer: Int
    ) {
        self.peer = peer
        self.account = account
        self.service = service
        self.info = info
        self.channel = channel
        self.outbound = outbound
        incoming = BoundedChannel(capacity: buffer)
    }

    func send(_ message: [UInt8]) async throws {
        lastActivity.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
        do {
            try await outbound.write(ByteBuffer(bytes: message))
        } catch {
            throw failure.withLock { $0 } ?? TransportError("the connection to \(peer) is closed")
        }
    }

    func receive() async throws -> [UInt8]? {
        if let message = await incoming.receive() {
            account.release(message.count)
            return message
        }
        if let failure = failure.withLock({ $0 }) { throw failure }
        return nil
    }

    /// Sends what is queued, then a FIN; the connection is gone once the peer closes too,
    /// or after two seconds at most.
    func close() async {
        incoming.finish()
        outbound.finish()
        let channel = channel
        let fallback = channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        // Cancelled once the connection is gone: a task left scheduled when the event loop
        // shuts down is a promise NIO reports leaked (a trap in debug builds).
        channel.closeFuture.whenComplete { _ in fallback.cancel() }
    }

    /// Cuts the connection at once (for shutdown).
    func abort() {
        incoming.finish()
        channel.close(promise: nil)
    }

    /// Closes the connection once nothing has gone either way for `timeout`, so that a peer
    /// cannot keep it, and what it holds, for ever by saying nothing.
    fileprivate func enforceIdleDeadline(_ timeout: TimeAmount, counting admission: Admission?) {
        let check = TimeAmount.nanoseconds(max(timeout.nanoseconds / 4, 250_000_000))
        let channel = channel
        let task = channel.eventLoop.scheduleRepeatedTask(initialDelay: check, delay: check) { [weak self] task in
            guard let self else { return task.cancel() }
            let idle = NIODeadline.now().uptimeNanoseconds &- lastActivity.load(ordering: .relaxed)
            guard idle >= UInt64(timeout.nanoseconds) else { return }
            failure.withLock { $0 = $0 ?? TransportError("the connection to \(peer) was closed after \(timeout.nanoseconds / 1_000_000_000) s without a message (setting 'idle-timeout-ms')") }
            admission?.violations.add(1, ordering: .relaxed)
            task.cancel()
            channel.close(promise: nil)
        }
        channel.closeFuture.whenComplete { _ in task.cancel() }
    }

    /// The handshake, in two parts: what this side says first (the hello, when it
    /// connects), and how it takes the peer's first message, returning the peer and service.
    struct Handshake: Sendable {
        var opening: @Sendable (NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> Void = { _ in }
        var answer: @Sendable ([UInt8], NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> (PeerID, String)
    }

    /// Runs `handshake` on `channel` within `timeout`, then returns the connection while a
    /// task of the plugin keeps pumping its inbound messages until it closes.
    static func open(
        _ channel: NIOAsyncChannel<[UInt8], ByteBuffer>, account: HeldBytes.Account, server: TCPTransport.Server, inbound: Bool, timeout: TimeAmount,
        handshake: Handshake
    ) async throws -> TCPConnection {
        let raw = channel.channel
        let deadline = raw.eventLoop.scheduleTask(in: timeout) { raw.close(promise: nil) }
        raw.closeFuture.whenComplete { _ in deadline.cancel() }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<TCPConnection, any Error>) in
            // Resumed exactly once, whichever way the connection ends.
            let result = OnceContinuation(continuation)
            let started = try? server.context.runtime.spawn(name: inbound ? "tcp inbound" : "tcp outbound") {
                do {
                    try await channel.executeThenClose { messages, outbound in
                        var connection: TCPConnection?
                        do {
                            try await handshake.opening(outbound)
                            for try await message in messages {
                                if let connection {
                                    try await connection.deliver(message)
                                    continue
                                }
                                let (peer, service) = try await handshake.answer(message, outbound)
                                account.release(message.count)
                                deadline.cancel()
                                let info = ConnectionInfo(id: server.registry.nextID(), peer: peer, service: service, inbound: inbound)
                                let opened = TCPConnection(
                                    peer: peer, service: service, info: info, channel: raw, outbound: outbound, account: account,
                                    buffer: server.options.inboundBuffer)
                                opened.enforceIdleDeadline(server.options.idleTimeout, counting: inbound ? server.admission : nil)
                                server.registry.add(opened)
                                server.context.events.publish(.connectionUp(info))
                                result.resume(returning: opened)
                                connection = opened
                            }
                            if connection == nil { throw TransportError("the peer closed the connection during the handshake") }
                        } catch {
                            deadline.cancel()
                            // A broken handshake or an oversized message breaks the protocol; a
                            // reset does not.
                            if inbound, connection == nil || error is FramingError || error is ByteToMessageDecoderError {
                                server.admission.violations.add(1, ordering: .relaxed)
                            }
                            if let connection {
                                // A socket closed without TLS's close_notify (the peer crashed or
                                // was killed) is an end of the stream, as a plain close was
                                // before TLS, not a failure.
                                if case NIOSSLError.uncleanShutdown? = error as? NIOSSLError {} else {
                                    connection.failure.withLock { $0 = $0 ?? TransportError("the connection to \(connection.peer) failed: \(error)") }
                                }
                            } else {
                                result.resume(throwing: raw.isActive ? error : TransportError("handshake failed: \(error) (or it took longer than \(timeout))"))
                            }
                        }
                        guard let connection else { return }
                        connection.incoming.finish()
                        server.registry.remove(connection)
                        server.context.events.publish(.connectionDown(connection.info))
                    }
                } catch {
                    result.resume(throwing: TransportError("the connection failed before its handshake: \(error)"))
                }
                deadline.cancel()
                result.resume(throwing: TransportError("the connection closed before its handshake"))
            }
            if started == nil {
                // The runtime takes no more tasks; the channel must still be closed through
                // executeThenClose (NIO traps on an async channel dropped unfinished).
                deadline.cancel()
                Task { try? await channel.executeThenClose { _, _ in } }
                result.resume(throwing: TransportError("the transport is shutting down"))
            }
        }
    }

    /// Hands one inbound message to the buffer, waiting while it is full (NIO stops reading
    /// meanwhile). Once this side has closed, messages are dropped, so reading goes on and
    /// the last writes can still go out.
    private func deliver(_ message: [UInt8]) async throws {
        lastActivity.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
        guard !incoming.isFinished else { return account.release(message.count) }
        do {
            try await incoming.send(message)
        } catch {
            account.release(message.count)
        }
    }
}

/// A continuation that is resumed at most once; later resumes are ignored.
final class OnceContinuation<Value: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Value, any Error>?>(nil)

    init(_ continuation: CheckedContinuation<Value, any Error>) { self.continuation.withLock { $0 = continuation } }

    func resume(returning value: Value) { continuation.withLock { $0.take() }?.resume(returning: value) }
    func resume(throwing error: any Error) { continuation.withLock { $0.take() }?.resume(throwing: error) }
}

/// The transport's open connections, so shutdown can close them, and their identifiers.
final class ConnectionRegistry: Sendable {
    private let state = Mutex<(next: Int, open: [String: TCPConnection])>((0, [:]))

    func nextID() -> String {
        state.withLock {
            $0.next += 1
            return "tcp-\($0.next)"
        }
    }

    func add(_ connection: TCPConnection) { state.withLock { $0.open[connection.info.id] = connection } }
    func remove(_ connection: TCPConnection) { state.withLock { $0.open[connection.info.id] = nil } }

    func closeAll() async {
        let open = state.withLock { Array($0.open.values) }
        for connection in open { connection.abort() }
    }
}
