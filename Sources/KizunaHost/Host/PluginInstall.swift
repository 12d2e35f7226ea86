import Crypto
import Foundation
import Glibc

/// Puts a built plugin (its manifest and the library beside it) into a plugins directory,
/// as `kizuna plugin install` does: the directory is made if it is missing, the library is
/// checked against the manifest's `sha256` pin, and each file is written to a temporary
/// name, synced and renamed, the library before the manifest, so a host never finds a
/// manifest whose library is missing or half-written.
public enum PluginInstall {
    /// What was installed where.
    public struct Installed: Sendable {
        public var manifest: PluginManifest
        public var manifestPath: String
        public var libraryPath: String
    }

    /// A plugin that cannot be installed: what is wrong and how to fix it.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    public static func install(manifest path: String, into directory: String) throws -> Installed {
        let manifest: PluginManifest
        do { manifest = try PluginManifest(contentsOf: path) } catch { throw Failure("\(error)") }
        guard manifest.libraryIsFileName else {
            throw Failure("\(path): field 'library' is a path ('\(manifest.libraryPath)'); an installed plugin's manifest names its library by file name, beside it (library = \"\((manifest.libraryPath as NSString).lastPathComponent)\")")
        }
        let source = manifest.libraryPath
        var status = stat()
        guard stat(source, &status) == 0 else {
            throw Failure("no library at \(source), which \(path) names; build it first (its build.sh puts both in dist/)")
        }
        guard status.st_mode & S_IFMT == S_IFREG else { throw Failure("\(source) is not a regular file; the library must be one") }
        let bytes: Data
        do { bytes = try Data(contentsOf: URL(fileURLWithPath: source)) } catch {
            throw Failure("cannot read \(source): \(error.localizedDescription)")
        }
        let digest = PluginImageStore.hex(SHA256.hash(data: bytes))  // the bytes that will be written
        if let pinned = manifest.sha256, pinned != digest {
            throw Failure("\(source) has SHA-256 \(digest), but \(path) pins \(pinned); the two are from different builds: build again (build.sh writes both)")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        } catch {
            throw Failure("cannot make the plugins directory \(directory): \(error.localizedDescription)")
        }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isFolder), isFolder.boolValue else {
            throw Failure("\(directory) is not a folder; give a plugins directory")
        }
        let libraryTarget = "\(directory)/\((source as NSString).lastPathComponent)"
        let manifestTarget = "\(directory)/\(manifest.name).toml"
        let manifestBytes: Data
        do { manifestBytes = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Failure("cannot read \(path): \(error.localizedDescription)")
        }
        try writeAtomically(bytes, to: libraryTarget, mode: 0o755)
        try writeAtomically(manifestBytes, to: manifestTarget, mode: 0o644)
        return Installed(manifest: manifest, manifestPath: manifestTarget, libraryPath: libraryTarget)
    }

    /// The SHA-256 of the file at `path`, lowercase hex.
    public static func sha256(ofFile path: String) throws -> String {
        PluginImageStore.hex(SHA256.hash(data: try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    /// Writes `bytes` to a temporary file beside `target`, syncs it and renames it over.
    static func writeAtomically(_ bytes: Data, to target: String, mode: mode_t) throws {
        let temporary = "\((target as NSString).deletingLastPathComponent)/.\((target as NSString).lastPathComponent).installing-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw Failure("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var failure: String?
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += written
            }
        }
        if failure == nil, fchmod(fd, mode) != 0 || fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        close(fd)
        if failure == nil, rename(temporary, target) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw Failure("cannot write \(target): \(failure)")
        }
    }
}
