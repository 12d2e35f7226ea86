import Foundation
import NIOCore

/// Splits the byte stream into messages: a 4-byte big-endian length, then that many bytes.
/// A length over the limit ends the connection with an error instead of buffering it.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let maxMessageBytes: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard Int(length) <= maxMessageBytes else {
            throw FramingError(length: Int(length), limit: maxMessageBytes)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
        return .continue
    }
}

struct FramingError: Error, CustomStringConvertible {
    let length: Int
    let limit: Int
    var description: String { "the peer sent a \(length)-byte message; the limit is \(limit) (setting 'max-message-bytes')" }
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

/// The two messages that open every connection, as JSON.
enum Handshake {
    /// From the side that connects.
    struct Hello: Codable {
        var kizuna = 1
        var id: String
        var name: String
        var service: String
    }

    /// From the side that accepts: its id, or why it refuses.
    struct Reply: Codable {
        var kizuna = 1
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
}
