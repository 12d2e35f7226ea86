import Crypto
import Foundation
import Glibc

/// An open file descriptor that is closed when dropped.
final class OpenFile {
    let fd: Int32
    let path: String

    init(path: String, flags: Int32, mode: mode_t = 0o644) throws(TransferError) {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw TransferError("cannot open \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        self.path = path
    }

    /// Takes ownership of the open descriptor `fd`; `path` names it in messages.
    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Reads up to `buffer.count` bytes into `buffer`; returns how many (0 at the end).
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno != EINTR { throw TransferError("cannot read \(path): \(String(cString: strerror(errno)))") }
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let count = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if count < 0 {
                if errno == EINTR { continue }
                throw TransferError("cannot write \(path): \(String(cString: strerror(errno)))", code: errno)
            }
            done += count
        }
    }

    func seek(to offset: Int64) throws(TransferError) {
        guard lseek(fd, off_t(offset), SEEK_SET) == off_t(offset) else { throw TransferError("cannot seek in \(path): \(String(cString: strerror(errno)))") }
    }

    func truncate(to size: Int64) throws(TransferError) {
        guard ftruncate(fd, off_t(size)) == 0 else { throw TransferError("cannot truncate \(path): \(String(cString: strerror(errno)))") }
    }

    /// Feeds the file's first `count` bytes to `hasher` (to resume a hash).
    func hashPrefix(_ count: Int64, into hasher: inout SHA256) throws {
        var remaining = count
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while remaining > 0 {
            let want = Int(min(Int64(buffer.count), remaining))
            let got = try buffer.withUnsafeMutableBytes { bytes in
                try read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[..<want]))
            }
            guard got > 0 else { throw TransferError("\(path) ended \(remaining) bytes early") }
            hasher.update(data: buffer[..<got])
            remaining -= Int64(got)
        }
    }
}

extension SHA256.Digest {
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}

/// The files under `path` (the file itself, or every folder and regular file in the tree,
/// links not followed), with the names they travel under.
func collectFiles(at path: String) throws(TransferError) -> (name: String, entries: [Wire.FileEntry], sources: [String]) {
    var status = stat()
    guard stat(path, &status) == 0 else { throw TransferError("cannot send \(path): \(String(cString: strerror(errno)))") }
    let name = (path as NSString).lastPathComponent
    func entry(_ relative: String, _ status: stat) -> Wire.FileEntry {
        Wire.FileEntry(path: relative, size: Int64(status.st_size), modified: Int64(status.st_mtim.tv_sec))
    }
    if status.st_mode & S_IFMT == S_IFREG { return (name, [entry(name, status)], [path]) }
    guard status.st_mode & S_IFMT == S_IFDIR else { throw TransferError("cannot send \(path): it is neither a file nor a folder") }
    var entries: [Wire.FileEntry] = []
    var sources: [String] = []
    guard let walker = FileManager.default.enumerator(atPath: path) else { throw TransferError("cannot list \(path)") }
    entries.append(Wire.FileEntry(path: name, size: 0, modified: 0, directory: true))
    sources.append(path)
    for case let relative as String in walker {
        let full = path + "/" + relative
        var item = stat()
        guard lstat(full, &item) == 0 else { continue }
        switch item.st_mode & S_IFMT {
        case S_IFREG: entries.append(entry(name + "/" + relative, item))
        case S_IFDIR: entries.append(Wire.FileEntry(path: name + "/" + relative, size: 0, modified: 0, directory: true))
        default: continue  // links and special files are not sent
        }
        sources.append(full)
    }
    let order = entries.indices.sorted { entries[$0].path < entries[$1].path }
    return (name, order.map { entries[$0] }, order.map { sources[$0] })
}
