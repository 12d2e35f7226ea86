import Foundation
import NIOCore
import Synchronization

/// Splits the byte stream into messages: a 4-byte big-endian length, then that many bytes.
/// A length over the limit ends the connection with an error instead of buffering it. The
/// first message (the handshake) has a limit of its own, so a peer that has not said who
/// it is can make the host hold a few kilobytes at most. Each whole message is copied out
/// of NIO's buffer as it is found (a slice would keep the whole, larger, buffer alive),
/// and what the connection holds is counted in its `HeldBytes.Account`.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = [UInt8]
    let maxMessageBytes: Int
    /// The limit of the first message.
    static let maxHandshakeBytes = 4096
    private var decoded = 0
    private let account: HeldBytes.Account?

    init(maxMessageBytes: Int, account: HeldBytes.Account? = nil) {
        self.maxMessageBytes = maxMessageBytes
        self.account = account
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    /// The next whole message in `buffer`, or nil if more bytes are needed.
    mutating func next(from buffer: inout ByteBuffer) throws(FramingError) -> [UInt8]? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
            try account?.hold(partial: buffer.readableBytes)
            return nil
        }
        let limit = decoded == 0 ? Self.maxHandshakeBytes : maxMessageBytes
        guard UInt64(length) <= UInt64(limit) else {
            throw FramingError(length: UInt64(length), limit: limit, handshake: decoded == 0)
        }
        guard buffer.readableBytes - 4 >= Int(length) else {
            try account?.hold(partial: buffer.readableBytes)
            return nil
        }
        buffer.moveReaderIndex(forwardBy: 4)
        decoded = 1
        let message = Array(buffer.readableBytesView.prefix(Int(length)))
        buffer.moveReaderIndex(forwardBy: Int(length))
        try account?.hold(partial: buffer.readableBytes, queued: message.count)
        return message
    }
}

/// The bytes of peers' messages that the transport holds: the part of a message still
/// arriving, and whole messages that no plugin has taken yet. Their sum over all
/// connections has a cap (setting `max-held-bytes`); a connection whose bytes would go
/// over it is closed, so what peers can make the host hold stays bounded whatever they
/// send, and the figure is there to be read (action `held-bytes`).
final class HeldBytes: Sendable {
    let limit: Int
    private let held = Atomic<Int>(0)
    private let highest = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    var current: Int { held.load(ordering: .relaxed) }
    /// The most ever held at once since the transport started.
    var peak: Int { highest.load(ordering: .relaxed) }

    /// Adds `delta` (which may be negative); false, and nothing added, if that would pass the cap.
    fileprivate func change(by delta: Int) -> Bool {
        var now = held.load(ordering: .relaxed)
        while true {
            let next = now + delta
            if delta > 0, next > limit { return false }
            let (exchanged, original) = held.compareExchange(expected: now, desired: next, ordering: .relaxed)
            if exchanged {
                if delta > 0 { highest.max(next, ordering: .relaxed) }
                return true
            }
            now = original
        }
    }

    func account() -> Account { Account(self) }

    /// One connection's share. The decoder sets what is still arriving and adds whole
    /// messages; the reader gives back each message it takes; closing gives back the rest.
    final class Account: Sendable {
        private let pool: HeldBytes
        private let state = Mutex<(partial: Int, queued: Int, closed: Bool)>((0, 0, false))

        fileprivate init(_ pool: HeldBytes) { self.pool = pool }

        /// The connection now holds `partial` bytes of a message still arriving, and
        /// `queued` more bytes of whole messages than before.
        func hold(partial: Int, queued: Int = 0) throws(FramingError) {
            let refused = state.withLock { state -> Bool in
                guard !state.closed else { return false }
                let delta = partial + queued - state.partial
                guard pool.change(by: delta) else { return true }
                state.partial = partial
                state.queued += queued
                return false
            }
            if refused { throw FramingError(held: pool.limit) }
        }

        /// A reader took a message of `bytes` bytes (or it was dropped).
        func release(_ bytes: Int) {
            state.withLock { state in
                guard !state.closed else { return }
                let given = min(bytes, state.queued)
                state.queued -= given
                _ = pool.change(by: -given)
            }
        }

        /// The connection is gone: everything it held is given back.
        func close() {
            state.withLock { state in
                guard !state.closed else { return }
                state.closed = true
                _ = pool.change(by: -(state.partial + state.queued))
                state.partial = 0
                state.queued = 0
            }
        }
    }
}

struct FramingError: Error, CustomStringConvertible {
    let description: String

    init(length: UInt64, limit: Int, handshake: Bool) {
        description = handshake
            ? "the peer's first message is \(length) bytes; a handshake has at most \(limit)"
            : "the peer sent a \(length)-byte message; the limit is \(limit) (setting 'max-message-bytes')"
    }

    init(held limit: Int) {
        description = "the transport already holds \(limit) bytes of messages that are arriving or not yet read (setting 'max-held-bytes'); the connection was closed, and can be opened again"
    }
}

/// Writes each message with its 4-byte length in front, as two writes (NIO gathers them
/// into one `writev`), so the payload is never copied.
final class FrameEncoder: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload = unwrapOutboundIn(data)
        var header = context.channel.allocator.buffer(capacity: 4)
        header.writeInteger(UInt32(payload.readableBytes))
        context.write(wrapOutboundOut(header), promise: nil)
        context.write(wrapOutboundOut(payload), promise: promise)
    }
}

/// The two messages that open every connection (inside TLS), as JSON.
enum Handshake {
    /// The protocol version: 2 is protocol 1 inside mutually authenticated TLS 1.3.
    static let version = 2

    /// The longest id, name or service a hello may carry, in UTF-8 bytes.
    static let maxFieldBytes = 256

    /// From the side that connects.
    struct Hello: Codable {
        var kizuna = Handshake.version
        var id: String
        var name: String
        var service: String
    }

    /// From the side that accepts: its id, or why it refuses.
    struct Reply: Codable {
        var kizuna = Handshake.version
        var id: String?
        var error: String?
    }

    static func encode(_ value: some Encodable) throws -> ByteBuffer {
        ByteBuffer(bytes: try JSONEncoder().encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, from message: [UInt8]) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(message))
        } catch {
            throw TransportError("not a Kizuna handshake (\(message.count) bytes that are not the expected JSON)")
        }
    }

    /// A hello, checked: protocol version 2, and an id, name and service that are
    /// non-empty, not too long, and free of control characters.
    static func decodeHello(from buffer: [UInt8]) throws -> Hello {
        let hello = try decode(Hello.self, from: buffer)
        guard hello.kizuna == version else { throw TransportError("the peer speaks Kizuna protocol \(hello.kizuna); this host speaks \(version)") }
        for (field, value) in [("id", hello.id), ("name", hello.name), ("service", hello.service)] {
            guard (1...maxFieldBytes).contains(value.utf8.count) else {
                throw TransportError("the handshake's \(field) is \(value.utf8.count) bytes; give 1 to \(maxFieldBytes)")
            }
            guard !value.unicodeScalars.contains(where: isControl) else {
                throw TransportError("the handshake's \(field) contains a control character")
            }
        }
        return hello
    }

    /// A reply, checked like a hello.
    static func decodeReply(from buffer: [UInt8]) throws -> Reply {
        let reply = try decode(Reply.self, from: buffer)
        guard reply.kizuna == version else { throw TransportError("the peer speaks Kizuna protocol \(reply.kizuna); this host speaks \(version)") }
        if let error = reply.error {
            var printable = String.UnicodeScalarView()
            printable.append(contentsOf: error.unicodeScalars.prefix(512).filter { !isControl($0) })
            return Reply(id: reply.id, error: String(printable))
        }
        guard let id = reply.id, (1...maxFieldBytes).contains(id.utf8.count), !id.unicodeScalars.contains(where: isControl) else {
            throw TransportError("the handshake reply has no valid id")
        }
        return reply
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool { scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) }
}
