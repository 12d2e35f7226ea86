import CKizunaHost
import Foundation
import Glibc

/// A connected Unix stream socket read and written in JSON lines, with blocking calls.
///
/// Reading is linear in the bytes read: the buffer is scanned for a newline only where it
/// has not been scanned yet, and consumed bytes are dropped in bulk. A line or chunk over
/// the socket's limit ends the stream (``limitExceeded`` says so) instead of growing the
/// buffer without bound.
final class LineSocket: @unchecked Sendable {
    let fd: Int32
    /// The longest line or chunk accepted, in bytes.
    let maxMessageBytes: Int
    private var buffer: [UInt8] = []
    /// Where unread bytes start in `buffer`.
    private var start = 0
    /// How far from `start` the buffer is known to hold no newline.
    private var scanned = 0
    /// Set when the other side sent a line or chunk over ``maxMessageBytes``.
    private(set) var limitExceeded = false

    /// What a client sends a host: requests, and the frames of `kizuna stream` (up to
    /// 8 MiB each); replies (a plugin list, say) may be larger.
    static let maxRequestBytes = 9 << 20
    static let maxReplyBytes = 256 << 20

    init(fd: Int32, maxMessageBytes: Int = LineSocket.maxReplyBytes) {
        self.fd = fd
        self.maxMessageBytes = maxMessageBytes
    }

    deinit { close(fd) }

    /// Connects to the socket at `path`.
    static func connect(to path: String) throws(ControlError) -> LineSocket {
        let fd = kizuna_unix_connect(path)
        guard fd >= 0 else {
            if -fd == ECONNREFUSED {
                // The socket file is there but nothing listens: its host is gone.
                throw ControlError("no Kizuna host serves \(path) any more: the host that made it stopped or crashed (its output says why); start one with `kizuna run`, or pass the socket a running host serves with --socket")
            }
            let reason = String(cString: strerror(-fd))
            throw ControlError("cannot reach a Kizuna host at \(path) (\(reason)); start one with `kizuna run`, or pass the socket it serves with --socket")
        }
        return LineSocket(fd: fd)
    }

    private var unread: Int { buffer.count - start }

    /// Reads what the socket has into the buffer; false at the end of the stream.
    private func fill(atLeast wanted: Int = 65536) -> Bool {
        // Drop consumed bytes once they are the larger part, so the copy is amortized.
        if start > 0, start >= unread {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        let old = buffer.count
        let room = max(wanted, 65536)
        buffer.append(contentsOf: repeatElement(0, count: room))
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + old, room) }
            if count < 0 && errno == EINTR { continue }
            buffer.removeLast(room - max(count, 0))
            return count > 0
        }
    }

    /// The next line without its newline, or nil at the end of the stream (or once the
    /// line passes ``maxMessageBytes``).
    func readLine() -> String? {
        while true {
            if let newline = buffer[(start + scanned)...].firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[start..<newline], as: UTF8.self)
                start = newline + 1
                scanned = 0
                return line
            }
            scanned = unread
            guard scanned <= maxMessageBytes else {
                limitExceeded = true
                return nil
            }
            guard fill() else { return nil }
        }
    }

    /// Exactly `count` bytes (after any already buffered), or nil if the stream ends first.
    func readBytes(_ count: Int) -> [UInt8]? {
        while unread < count {
            guard fill(atLeast: min(count - unread, 1 << 20)) else { return nil }
        }
        defer {
            start += count
            scanned = 0
        }
        return Array(buffer[start..<(start + count)])
    }

    /// One binary chunk: a 4-byte big-endian length, then the bytes. An empty chunk ends a
    /// run of chunks. Nil if the stream ends, or the length is over ``maxMessageBytes``.
    func readChunk() -> [UInt8]? {
        guard let header = readBytes(4) else { return nil }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
        guard length <= maxMessageBytes else {
            limitExceeded = true
            return nil
        }
        return length == 0 ? [] : readBytes(length)
    }

    /// Writes one binary chunk (see ``readChunk()``); false if the other end is gone.
    @discardableResult
    func writeChunk(_ bytes: [UInt8]) -> Bool {
        let length = UInt32(bytes.count)
        return writeAll([UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + bytes)
    }

    /// Writes `line` and a newline; false if the other end is gone.
    @discardableResult
    func writeLine(_ line: String) -> Bool {
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        return writeAll(bytes)
    }

    private func writeAll(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }

    @discardableResult
    func encode<T: Encodable>(_ value: T) -> Bool {
        guard let data = try? JSONEncoder().encode(value) else { return false }
        return writeLine(String(decoding: data, as: UTF8.self))
    }

    func decode<T: Decodable>(_ type: T.Type) -> T? {
        guard let line = readLine() else { return nil }
        return try? JSONDecoder().decode(type, from: Data(line.utf8))
    }

    /// Unblocks readers and writers of this socket.
    func shutdownBoth() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
}
