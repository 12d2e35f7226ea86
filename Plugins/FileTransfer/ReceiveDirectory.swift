import CKizunaFiles
import Crypto
import Foundation
import Glibc
import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

/// A name a peer sent for a file or folder, checked and split on its UTF-8 bytes.
///
/// Swift's `String` works on grapheme clusters and the kernel on bytes: a `/` joined to a
/// combining or joining code point is one `Character` to Swift but a separator to the
/// kernel (DESIGN.md fact 12). So nothing here looks at `Character`s: the name is split
/// on the byte 0x2F, and each part is then opened by itself, beneath the folder before it.
struct PeerPath: Sendable {
    /// The parts between the slashes, each a non-empty name that is not `.` or `..`.
    let components: [String]
    /// The name as the peer sent it, escaped for showing to a person.
    let display: String

    static let maxBytes = 4096
    static let maxComponentBytes = 255

    init(_ name: String) throws(TransferError) {
        let display = escapedForDisplay(name)
        self.display = display
        let bytes = Array(name.utf8)
        func refuse(_ why: String) -> TransferError {
            TransferError("refused the name '\(display)': \(why); a name must be relative and stay beneath the receive directory")
        }
        guard !bytes.isEmpty else { throw refuse("it is empty") }
        guard bytes.count <= Self.maxBytes else { throw refuse("it is \(bytes.count) bytes long; the limit is \(Self.maxBytes)") }
        guard bytes[0] != UInt8(ascii: "/") else { throw refuse("it is an absolute path") }
        if let control = Self.firstControl(in: bytes) { throw refuse("it contains the control character \(control)") }
        var components: [String] = []
        for part in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard !part.isEmpty else { throw refuse("it has an empty part (// or a trailing /)") }
            guard !(part.count == 1 && part[part.startIndex] == UInt8(ascii: ".")) else { throw refuse("it contains the part '.'") }
            guard !(part.count == 2 && part.allSatisfy({ $0 == UInt8(ascii: ".") })) else { throw refuse("it contains the part '..'") }
            guard part.count <= Self.maxComponentBytes else { throw refuse("a part is \(part.count) bytes long; the limit is \(Self.maxComponentBytes)") }
            // The parts of a valid UTF-8 string cut at an ASCII byte are valid UTF-8 too.
            components.append(String(decoding: part, as: UTF8.self))
        }
        self.components = components
    }

    /// The first C0 or C1 control character or DEL in `bytes` (as `U+XXXX`), or nil.
    /// Such characters have no place in a file name and can drive a terminal.
    private static func firstControl(in bytes: [UInt8]) -> String? {
        var previous: UInt8 = 0
        for byte in bytes {
            if byte < 0x20 || byte == 0x7F { return String(format: "U+%04X", byte) }
            // U+0080...U+009F are C2 80...C2 9F in UTF-8.
            if previous == 0xC2, (0x80...0x9F).contains(byte) { return String(format: "U+%04X", byte) }
            previous = byte
        }
        return nil
    }
}

/// An open directory, closed when dropped. Everything received is opened relative to one,
/// one name at a time and never through a link, so the kernel keeps every file beneath
/// the receive directory whatever the names say.
final class DirectoryDescriptor: Sendable {
    let fd: Int32
    /// Where it is, for messages.
    let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Opens the folder `name` in this one, creating it if it is not there. Refuses a link
    /// or anything else that is not a folder.
    func folder(_ name: String, for peerPath: PeerPath) throws(TransferError) -> DirectoryDescriptor {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        var fd = openat(self.fd, name, flags)
        if fd < 0, errno == ENOENT {
            if mkdirat(self.fd, name, 0o755) != 0, errno != EEXIST {
                throw TransferError("cannot create \(path)/\(escapedForDisplay(name)): \(String(cString: strerror(errno)))", code: errno)
            }
            fd = openat(self.fd, name, flags)
        }
        guard fd >= 0 else {
            let where_ = "\(path)/\(escapedForDisplay(name))"
            var code = errno
            // With O_DIRECTORY, a link is reported as ENOTDIR: look at what is there.
            var status = stat()
            if code == ENOTDIR, fstatat(self.fd, name, &status, AT_SYMLINK_NOFOLLOW) == 0, status.st_mode & S_IFMT == S_IFLNK { code = ELOOP }
            switch code {
            case ELOOP: throw TransferError("refused '\(peerPath.display)': \(where_) is a link, and names must not lead through links")
            case ENOTDIR: throw TransferError("refused '\(peerPath.display)': \(where_) exists and is not a folder")
            default: throw TransferError("cannot open \(where_): \(String(cString: strerror(code)))", code: code)
            }
        }
        return DirectoryDescriptor(fd: fd, path: "\(path)/\(escapedForDisplay(name))")
    }

    /// Opens (creating) the folders `components` beneath this one; returns the last.
    func folders(_ components: some Sequence<String>, for peerPath: PeerPath) throws(TransferError) -> DirectoryDescriptor {
        var folder = self
        for component in components { folder = try folder.folder(component, for: peerPath) }
        return folder
    }

    /// The size of the partial file an earlier attempt left for `peerPath` under `key`, or
    /// 0 if there is none. Creates nothing (an offer is judged before it is accepted).
    func partialBytes(of peerPath: PeerPath, key: String) -> Int64 {
        var folder = self
        for component in peerPath.components.dropLast() {
            let fd = openat(folder.fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { return 0 }
            folder = DirectoryDescriptor(fd: fd, path: "\(folder.path)/\(escapedForDisplay(component))")
        }
        var status = stat()
        let name = IncomingFile.partialName(of: peerPath.components[peerPath.components.count - 1], key: key)
        guard fstatat(folder.fd, name, &status, AT_SYMLINK_NOFOLLOW) == 0, status.st_mode & S_IFMT == S_IFREG else { return 0 }
        return Int64(status.st_size)
    }

    /// Writes the directory's entries to disk (after a rename into it).
    func sync() { fsync(fd) }

    /// Bytes free for an unprivileged writer on this folder's file system, or nil.
    var freeBytes: Int64? {
        var status = statvfs()
        guard fstatvfs(fd, &status) == 0 else { return nil }
        let (bytes, overflow) = Int64(clamping: status.f_bavail).multipliedReportingOverflow(by: Int64(clamping: status.f_frsize))
        return overflow ? Int64.max : bytes
    }
}

/// The receive directory, opened afresh for each transfer (it may have been removed or
/// replaced since the plugin started).
enum ReceiveDirectory {
    static func open(_ path: String) throws(TransferError) -> DirectoryDescriptor {
        // The folder is the user's own setting, so creating its parents by path is fine;
        // everything beneath it is opened through descriptors.
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TransferError("cannot open the receive directory \(path): \(String(cString: strerror(errno))); set 'receive-dir' (or `kizuna run --receive-dir`) to a writable folder", code: errno)
        }
        return DirectoryDescriptor(fd: fd, path: path)
    }
}

/// A file being received: written to a partial file beside its final name, and renamed
/// only once verified.
final class IncomingFile {
    let folder: DirectoryDescriptor
    let name: String
    let partialName: String
    let file: OpenFile
    let peerPath: PeerPath

    /// Opens (creating) the partial file for `peerPath` beneath `root`; `key` tells
    /// transfers of different files apart, so a transfer sent again resumes its own.
    init(root: DirectoryDescriptor, peerPath: PeerPath, key: String) throws(TransferError) {
        self.peerPath = peerPath
        folder = try root.folders(peerPath.components.dropLast(), for: peerPath)
        name = peerPath.components[peerPath.components.count - 1]
        partialName = Self.partialName(of: name, key: key)
        // O_NONBLOCK so that a FIFO someone left under this name cannot block the open.
        let fd = openat(folder.fd, partialName, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == ELOOP { throw TransferError("refused '\(peerPath.display)': its partial file is a link") }
            throw TransferError("cannot create \(folder.path)/\(escapedForDisplay(partialName)): \(String(cString: strerror(errno)))", code: errno)
        }
        file = OpenFile(fd: fd, path: "\(folder.path)/\(escapedForDisplay(partialName))")
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            throw TransferError("refused '\(peerPath.display)': \(file.path) exists and is not a regular file")
        }
        existingBytes = Int64(status.st_size)
    }

    /// The hidden name of the partial file of `name`.
    static func partialName(of name: String, key: String) -> String { ".\(truncatedUTF8(name, to: 200)).kizuna-partial-\(key)" }

    /// Tells the partial files of different transfers apart: the peer, the name, the size
    /// and the modification time the sender gave, so a transfer sent again resumes its own.
    static func key(peer: PeerID, file: Wire.FileEntry) -> String {
        var hasher = SHA256()
        hasher.update(data: Array("\(peer)\n\(file.path)\n\(file.size)\n\(file.modified)".utf8))
        return String(hasher.finalize().hex.prefix(16))
    }

    /// True if something (a file, a folder, a link) already has `peerPath`'s name beneath
    /// `root`: under ``ExistingFiles/skip`` the file is then not taken. Creates the folders
    /// on the way, as receiving the file would.
    static func nameIsTaken(root: DirectoryDescriptor, peerPath: PeerPath) throws(TransferError) -> Bool {
        let folder = try root.folders(peerPath.components.dropLast(), for: peerPath)
        var status = stat()
        return fstatat(folder.fd, peerPath.components[peerPath.components.count - 1], &status, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// The bytes the partial file held when it was opened (from an earlier attempt).
    let existingBytes: Int64

    /// Flushes the data to disk, gives the file its final name (a free one, unless the
    /// policy is to overwrite), and flushes the folder, so that a verified file survives a
    /// power cut. Returns the name it got.
    func commit(_ policy: ExistingFiles) throws(TransferError) -> String {
        guard fsync(file.fd) == 0 else { throw TransferError("cannot write \(file.path) to disk: \(String(cString: strerror(errno)))", code: errno) }
        let final: String
        switch policy {
        case .overwrite:
            guard renameat(folder.fd, partialName, folder.fd, name) == 0 else {
                throw TransferError("cannot rename \(file.path) to \(escapedForDisplay(name)): \(String(cString: strerror(errno)))", code: errno)
            }
            final = name
        case .rename, .skip:
            // (Under skip a taken name was seen before any data came; a file that took the
            // name since then is kept too.)
            final = try renameToFreeName()
        }
        folder.sync()
        return final
    }

    private func renameToFreeName() throws(TransferError) -> String {
        for attempt in 1...1000 {
            let candidate = attempt == 1 ? name : numbered(name, attempt)
            let result = kizuna_rename_noreplace(folder.fd, partialName, candidate)
            if result == 0 { return candidate }
            guard -result == EEXIST else {
                throw TransferError("cannot rename \(file.path) to \(escapedForDisplay(candidate)): \(String(cString: strerror(-result)))", code: -result)
            }
        }
        throw TransferError("refused '\(peerPath.display)': 1000 files of that name are already in \(folder.path); the partial file is kept")
    }

    /// Removes the partial file (its data is bad, or the disk is full).
    func discard() { unlinkat(folder.fd, partialName, 0) }
}

/// `photo.jpg` → `photo (2).jpg`; `notes` → `notes (2)`; `.profile` → `.profile (2)`;
/// kept within the 255 bytes a name may have.
func numbered(_ name: String, _ number: Int) -> String {
    let bytes = Array(name.utf8)
    var stemEnd = bytes.count
    if let dot = bytes.lastIndex(of: UInt8(ascii: ".")), dot > 0, bytes.count - dot <= 16 { stemEnd = dot }
    let suffix = " (\(number))" + String(decoding: bytes[stemEnd...], as: UTF8.self)
    let stem = truncatedUTF8(String(decoding: bytes[..<stemEnd], as: UTF8.self), to: PeerPath.maxComponentBytes - suffix.utf8.count)
    return stem + suffix
}

/// The longest prefix of `text` of at most `limit` UTF-8 bytes that ends on a character
/// boundary.
func truncatedUTF8(_ text: String, to limit: Int) -> String {
    guard text.utf8.count > limit else { return text }
    var result = ""
    var bytes = 0
    for character in text {
        let size = character.utf8.count
        guard bytes + size <= limit else { break }
        result.append(character)
        bytes += size
    }
    return result
}

/// Disk space promised to transfers that are being received: what each still has to
/// write. A new offer must fit in the free space less these promises, so two offers that
/// each fit alone cannot together fill the disk.
final class SpaceReservations: Sendable {
    private let outstanding = Mutex<Int64>(0)

    var promised: Int64 { outstanding.withLock { $0 } }

    /// Promises `bytes` if `free` (the file system's free bytes, or nil if unknown) less
    /// what is promised already holds them; nil if it does not.
    func reserve(_ bytes: Int64, free: Int64?) -> Reservation? {
        let granted = outstanding.withLock { promised -> Bool in
            if let free, free - promised < bytes { return false }
            promised += bytes
            return true
        }
        return granted ? Reservation(self, bytes) : nil
    }

    fileprivate func give(_ bytes: Int64) { outstanding.withLock { $0 -= bytes } }

    /// One transfer's promise, which shrinks as its data is written and ends with it.
    final class Reservation: Sendable {
        private let owner: SpaceReservations
        private let left: Mutex<Int64>

        fileprivate init(_ owner: SpaceReservations, _ bytes: Int64) {
            self.owner = owner
            left = Mutex(bytes)
        }

        /// `bytes` of the promised space are now used on disk.
        func wrote(_ bytes: Int64) {
            let given = left.withLock { left in
                let given = min(max(bytes, 0), left)
                left -= given
                return given
            }
            owner.give(given)
        }

        deinit { owner.give(left.withLock { $0 }) }
    }
}
