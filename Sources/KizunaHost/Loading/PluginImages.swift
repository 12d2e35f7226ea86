import Crypto
import Foundation
import CoreFoundation
import Glibc

/// Which file is at a path: device, inode, size and modification time (to the nanosecond).
public struct FileIdentity: Sendable, Hashable, Codable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    /// The identity of the file at `path`, or nil if there is none.
    public init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        self.init(status)
    }

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modifiedSeconds = status.st_mtim.tv_sec
        modifiedNanoseconds = status.st_mtim.tv_nsec
    }
}

/// A plugin library's private copy: the file the host maps.
struct PluginImage: Sendable, Hashable {
    /// The file the manifest names.
    var source: String
    /// Which file that was when it was copied.
    var sourceIdentity: FileIdentity
    /// The copy's SHA-256, lowercase hex (the copy is named by it).
    var sha256: String
    /// The copy: `STATE/images/SHA256/NAME`, owner read and execute only.
    var path: String
}

/// The host's private, immutable copies of plugin libraries, named by content.
///
/// The host never maps a file that someone else can rewrite: an author's `cp` over a
/// loaded build, or a build cut short, would otherwise turn into SIGBUS or a wild pointer
/// inside the host. Every library is read once through one descriptor (never mapped),
/// checked as an ELF shared object for this machine whose segments lie inside the file,
/// hashed, and written to a folder only the host's user can enter. A later load of the
/// same unchanged file (same device, inode, size and modification time) reuses the copy
/// without reading the file again (``PluginLoadMemory``).
struct PluginImageStore: Sendable {
    /// `STATE/images`.
    let directory: String
    /// The largest library accepted.
    static let maxLibraryBytes = 1 << 30

    init(stateDirectory: String) {
        directory = stateDirectory + "/images"
    }

    /// The private copy of the library at `source`, made now unless `remembered` names a
    /// copy of this very file that is still there.
    /// - Throws: ``PluginLoadError`` saying what is wrong with the file and how to fix it.
    func image(of source: String, plugin: String, remembered: (FileIdentity) -> String?) throws(PluginLoadError) -> PluginImage {
        func failure(_ code: PluginLoadError.Code, _ message: String) -> PluginLoadError {
            PluginLoadError(code, plugin: plugin, file: source, message)
        }
        var reused: PluginImage?
        let (identity, read) = try Self.read(source, plugin: plugin) { identity in
            guard let digest = remembered(identity) else { return false }
            let copy = copyPath(digest: digest, source: source)
            guard Self.isIntactCopy(copy, size: identity.size) else { return false }
            reused = PluginImage(source: source, sourceIdentity: identity, sha256: digest, path: copy)
            return true
        }
        guard let bytes = read else { return reused! }

        let digest = Self.hex(SHA256.hash(data: bytes))
        let copy = copyPath(digest: digest, source: source)
        if !Self.isIntactCopy(copy, size: identity.size) {
            do {
                try write(bytes, to: copy)
            } catch {
                throw failure(.libraryUnreadable, "cannot make the host's private copy at \(copy) (\(error)); check that the state directory (--state-dir) is writable")
            }
        }
        return PluginImage(source: source, sourceIdentity: identity, sha256: digest, path: copy)
    }

    /// Reads a plugin library through one descriptor: a regular file (so no FIFO or device
    /// is ever read), under the size limit, that did not change while it was read and is
    /// an ELF shared object this machine can load (``ELFCheck``).
    /// - Parameter skip: given the file's identity, whether its bytes are not needed (a
    ///   copy of this very file exists); then the bytes returned are nil.
    static func read(_ source: String, plugin: String?, skip: (FileIdentity) -> Bool = { _ in false }) throws(PluginLoadError) -> (FileIdentity, [UInt8]?) {
        func failure(_ code: PluginLoadError.Code, _ message: String) -> PluginLoadError {
            PluginLoadError(code, plugin: plugin, file: source, message)
        }
        // O_NONBLOCK: a FIFO must not wait for a writer; its type is refused below, on
        // the descriptor, so a name swapped after a check cannot sneak one in.
        let fd = open(source, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let error = errno
            switch error {
            case ENOENT: throw failure(.libraryMissing, "does not exist; build the plugin, or fix 'library' in the manifest")
            case ELOOP: throw failure(.libraryUnreadable, "is a symbolic link that loops (or goes through too many links); point 'library' at the built file")
            case EACCES: throw failure(.libraryUnreadable, "cannot be read: permission denied; make it readable by the user the host runs as")
            default: throw failure(.libraryUnreadable, "cannot be opened (\(String(cString: strerror(error)))); check the path in 'library'")
            }
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw failure(.libraryUnreadable, "cannot be examined (\(String(cString: strerror(errno))))") }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw failure(.notASharedLibrary, "is \(Self.fileType(status.st_mode)), not a regular file; 'library' must name the plugin's .so")
        }
        guard status.st_size <= Self.maxLibraryBytes else {
            throw failure(.notASharedLibrary, "is \(status.st_size) bytes, over the \(Self.maxLibraryBytes >> 20) MiB limit for a plugin library")
        }
        let identity = FileIdentity(status)
        if skip(identity) { return (identity, nil) }

        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var filled = 0
        while filled < bytes.count {
            let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw failure(.libraryUnreadable, "cannot be read (\(String(cString: strerror(errno)))); check its permissions") }
            guard count > 0 else { break }
            filled += count
        }
        var after = stat()
        var extra: UInt8 = 0
        guard filled == bytes.count, Glibc.read(fd, &extra, 1) == 0, fstat(fd, &after) == 0, FileIdentity(after) == identity else {
            throw failure(.libraryUnreadable, "changed while it was being read (a build or copy still writing it?); install builds atomically, for example `install -m 755 NEW.so DIR/` or write a temporary file and rename it, then load again")
        }
        if let problem = ELFCheck.problem(in: bytes) { throw failure(.notASharedLibrary, problem) }
        return (identity, bytes)
    }

    private func copyPath(digest: String, source: String) -> String {
        let name = (source as NSString).lastPathComponent
        return "\(directory)/\(digest)/\(name.isEmpty ? "library.so" : name)"
    }

    /// A copy made earlier: a regular file of ours, of the right size, that nobody but us
    /// can write.
    private static func isIntactCopy(_ path: String, size: Int64) -> Bool {
        var status = stat()
        guard lstat(path, &status) == 0 else { return false }
        return status.st_mode & S_IFMT == S_IFREG && status.st_uid == getuid() && status.st_mode & 0o022 == 0 && Int64(status.st_size) == size
    }

    /// Writes the copy, read-only, as no one ever sees half a copy.
    private func write(_ bytes: [UInt8], to copy: String) throws(StateDirectoryError) {
        try StateDirectory.makePrivateDirectory(directory)
        try StateDirectory.makePrivateDirectory((copy as NSString).deletingLastPathComponent)
        try StateDirectory.writeFile(bytes, to: copy, mode: 0o500)
    }

    /// Removes the copies that no remembered file names, no loaded plugin uses, and that
    /// are older than `age` (another host sharing the state directory may have just made
    /// one). A host that has one mapped keeps it mapped: removing a file never unmaps it.
    func prune(keeping digests: Set<String>, olderThan age: Duration) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let cutoff = time(nil) - Int(age.components.seconds)
        for name in names where name.count == 64 && !digests.contains(name) {
            var status = stat()
            guard lstat("\(directory)/\(name)", &status) == 0, status.st_mtim.tv_sec < cutoff else { continue }
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
    }

    static func fileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFSOCK: "a socket"
        default: "not a regular file"
        }
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in digest {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

/// Checks that bytes are an ELF shared object this machine can load, whose headers and
/// loadable segments lie inside the file: a file cut short would otherwise pass `dlopen`'s
/// own checks and fault (SIGBUS) when the missing pages are touched.
enum ELFCheck {
    #if arch(x86_64)
    static let machine: UInt16 = 62
    static let machineName = "x86-64"
    #elseif arch(arm64)
    static let machine: UInt16 = 183
    static let machineName = "AArch64"
    #else
    static let machine: UInt16 = 0
    static let machineName = "this machine"
    #endif

    static let machineNames: [UInt16: String] = [3: "x86 (32-bit)", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390x", 40: "ARM (32-bit)", 62: "x86-64", 183: "AArch64", 243: "RISC-V"]

    /// What is wrong, or nil if the file may be opened.
    static func problem(in bytes: [UInt8]) -> String? {
        let rebuild = "'library' must name the plugin's .so, built with `swift build` on this machine"
        guard bytes.count >= 4, bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else {
            return "is not a shared library (no ELF header); \(rebuild)"
        }
        guard bytes.count >= 64 else { return "is cut short: \(bytes.count) bytes, less than an ELF header; the build or copy did not finish: build or copy it again" }
        guard bytes[4] == 2, bytes[5] == 1 else {
            return "is a \(bytes[4] == 1 ? "32-bit" : "non-64-bit") or big-endian ELF file; this host loads 64-bit little-endian \(machineName) libraries: \(rebuild)"
        }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
        func u64(_ at: Int) -> UInt64 { (0 ..< 8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        func u32(_ at: Int) -> UInt32 { (0 ..< 4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        guard u16(16) == 3 else { return "is an ELF file but not a shared library (type \(u16(16))); build the plugin as a .library(type: .dynamic) product" }
        let fileMachine = u16(18)
        guard fileMachine == machine else {
            return "is built for \(machineNames[fileMachine] ?? "machine \(fileMachine)"), this host runs on \(machineName); build the plugin on (or for) this machine"
        }
        let size = UInt64(bytes.count)
        let programHeaders = u64(32), entrySize = UInt64(u16(54)), count = UInt64(u16(56))
        guard entrySize >= 56, count > 0, programHeaders <= size, count * entrySize <= size - programHeaders else {
            return "is cut short or damaged: its program headers lie outside the file (\(size) bytes); the build or copy did not finish: build or copy it again"
        }
        var loadable = 0
        for index in 0 ..< Int(count) {
            let header = Int(programHeaders) + index * Int(entrySize)
            guard u32(header) == 1 else { continue }  // PT_LOAD
            loadable += 1
            let offset = u64(header + 8), fileSize = u64(header + 32)
            guard offset <= size, fileSize <= size - offset else {
                return "is cut short: a loadable segment ends at byte \(offset &+ fileSize) but the file has \(size); the build or copy did not finish: build or copy it again"
            }
        }
        guard loadable > 0 else { return "has no loadable segments; \(rebuild)" }
        let sections = u64(40), sectionSize = UInt64(u16(58)), sectionCount = UInt64(u16(60))
        if sections != 0, sections > size || sectionCount * sectionSize > size - sections {
            return "is cut short: its section headers lie outside the file (\(size) bytes); the build or copy did not finish: build or copy it again"
        }
        return nil
    }
}

/// The host's state directory: created owner-only, and refused if others may write it.
enum StateDirectory {
    /// Makes `path` (and any missing parents) owner-only, or checks that it already is.
    static func makePrivateDirectory(_ path: String) throws(StateDirectoryError) {
        if mkdir(path, 0o700) != 0 {
            var error = errno
            if error == ENOENT {
                let parent = (path as NSString).deletingLastPathComponent
                do {
                    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                } catch {
                    throw StateDirectoryError(path: parent, "cannot be created (\(error.localizedDescription)); choose another state directory with --state-dir")
                }
                error = mkdir(path, 0o700) == 0 ? EEXIST : errno
            }
            guard error == EEXIST else { throw StateDirectoryError(path: path, error) }
        }
        var status = stat()
        guard lstat(path, &status) == 0 else { throw StateDirectoryError(path: path, errno) }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw StateDirectoryError(path: path, "is not a directory") }
        guard status.st_uid == getuid() else { throw StateDirectoryError(path: path, "belongs to user \(status.st_uid), not to this user (\(getuid())); choose a state directory of your own with --state-dir") }
        guard status.st_mode & 0o022 == 0 else {
            throw StateDirectoryError(path: path, "can be written by others (mode \(String(status.st_mode & 0o777, radix: 8))); make it owner-only with `chmod 700 \(path)`")
        }
    }
}

extension StateDirectory {
    /// Writes `bytes` to `path` atomically: a temporary file in the same folder, given
    /// `mode`, flushed and renamed into place, so no one ever sees half a file.
    static func writeFile(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(StateDirectoryError) {
        let folder = (path as NSString).deletingLastPathComponent
        let temporary = "\(folder)/.incoming-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw StateDirectoryError(path: temporary, errno) }
        func fail(_ error: Int32) -> StateDirectoryError {
            close(fd)
            unlink(temporary)
            return StateDirectoryError(path: temporary, error)
        }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw fail(errno) }
            written += count
        }
        guard fchmod(fd, mode) == 0, fsync(fd) == 0 else { throw fail(errno) }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = errno
            unlink(temporary)
            throw StateDirectoryError(path: path, error)
        }
    }

    /// The bytes of the owner-only file at `path`, or nil if there is none.
    /// - Throws: if it is a link or not a regular file, is not this user's, others may
    ///   read it, it is over `maxBytes`, or it cannot be read; each with the fix.
    static func readPrivateFile(_ path: String, maxBytes: Int = 1 << 20) throws(StateDirectoryError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT { return nil }
            if errno == ELOOP { throw StateDirectoryError(path: path, "is a symbolic link; the host keeps only its own files here. Move it away") }
            throw StateDirectoryError(path: path, errno)
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw StateDirectoryError(path: path, errno) }
        guard status.st_mode & S_IFMT == S_IFREG else { throw StateDirectoryError(path: path, "is not a regular file (\(PluginImageStore.fileType(status.st_mode))); move it away") }
        guard status.st_uid == getuid() else { throw StateDirectoryError(path: path, "belongs to user \(status.st_uid), not to this user (\(getuid())); move it away") }
        guard status.st_mode & 0o077 == 0 else {
            throw StateDirectoryError(path: path, "can be read or written by others (mode \(String(status.st_mode & 0o777, radix: 8))); make it owner-only with `chmod 600 \(path)`")
        }
        guard status.st_size <= maxBytes else { throw StateDirectoryError(path: path, "is \(status.st_size) bytes, more than the \(maxBytes) it can be; move it away") }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw StateDirectoryError(path: path, count == 0 ? "was cut short while it was read" : String(cString: strerror(errno))) }
            done += count
        }
        return bytes
    }
}

struct StateDirectoryError: Error, CustomStringConvertible {
    var description: String
    init(path: String, _ error: Int32) { description = "\(path): \(String(cString: strerror(error)))" }
    init(path: String, _ reason: String) { description = "\(path) \(reason)" }
}
