import Foundation
import NIOCore

/// Splits the byte stream into messages: a 4-byte big-endian length, then that many bytes.
/// A length over the limit ends the connection with an error instead of buffering it. The
/// first message (the handshake) has a limit of its own, so a peer that has not said who
/// it is can make the host hold a few kilobytes at most.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maxMessageBytes: Int
    /// The limit of the first message.
    static let maxHandshakeBytes = 4096
    private var decoded = 0

    init(maxMessageBytes: Int) { self.maxMessageBytes = maxMessageBytes }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try next(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    /// The next whole message in `buffer`, or nil if more bytes are needed.
    mutating func next(from buffer: inout ByteBuffer) throws(FramingError) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let limit = decoded == 0 ? Self.maxHandshakeBytes : maxMessageBytes
        guard UInt64(length) <= UInt64(limit) else {
            throw FramingError(length: UInt64(length), limit: limit, handshake: decoded == 0)
        }
        guard buffer.readableBytes - 4 >= Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        decoded = 1
        return buffer.readSlice(length: Int(length))!
    }
}

struct FramingError: Error, CustomStringConvertible {
    let length: UInt64
    let limit: Int
    let handshake: Bool
    var description: String {
        handshake
            ? "the peer's first message is \(length) bytes; a handshake has at most \(limit)"
            : "the peer sent a \(length)-byte message; the limit is \(limit) (setting 'max-message-bytes')"
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

    static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
        } catch {
            throw TransportError("not a Kizuna handshake (\(buffer.readableBytes) bytes that are not the expected JSON)")
        }
    }

    /// A hello, checked: protocol version 2, and an id, name and service that are
    /// non-empty, not too long, and free of control characters.
    static func decodeHello(from buffer: ByteBuffer) throws -> Hello {
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
    static func decodeReply(from buffer: ByteBuffer) throws -> Reply {
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
