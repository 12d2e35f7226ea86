import CKizunaHost
import Foundation
import Glibc

/// A connected Unix stream socket read and written in JSON lines, with blocking calls.
final class LineSocket: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Connects to the socket at `path`.
    static func connect(to path: String) throws(ControlError) -> LineSocket {
        let fd = kizuna_unix_connect(path)
        guard fd >= 0 else {
            let reason = String(cString: strerror(-fd))
            throw ControlError("cannot reach a Kizuna host at \(path) (\(reason)); start one with `kizuna run`, or pass the socket it serves with --socket")
        }
        return LineSocket(fd: fd)
    }

    /// The next line without its newline, or nil at the end of the stream.
    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return nil }
            buffer += chunk[0..<count]
        }
    }

    /// Exactly `count` bytes (after any already buffered), or nil if the stream ends first.
    func readBytes(_ count: Int) -> [UInt8]? {
        while buffer.count < count {
            var chunk = [UInt8](repeating: 0, count: max(65536, count - buffer.count))
            let got = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return nil }
            buffer += chunk[0..<got]
        }
        defer { buffer.removeSubrange(0..<count) }
        return Array(buffer[0..<count])
    }

    /// One binary chunk: a 4-byte big-endian length, then the bytes. An empty chunk ends a
    /// run of chunks. Nil if the stream ends.
    func readChunk() -> [UInt8]? {
        guard let header = readBytes(4) else { return nil }
        let length = header.reduce(0) { $0 << 8 | Int($1) }
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
