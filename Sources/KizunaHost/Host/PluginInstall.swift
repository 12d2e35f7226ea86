import Crypto
import Foundation

/// Puts a built plugin (its manifest and the library beside it) into a plugins directory,
/// as `kizuna plugin install` does: the directory is made if it is missing, the library is
/// read as the host reads it (a regular file, within the size limit, not changing while
/// read) and checked against the manifest's `sha256` pin, and each file is written to a
/// temporary name, synced and renamed, the library before the manifest, so a host never
/// finds a manifest whose library is missing or half-written.
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
        let library: [UInt8]
        do { library = try PluginImageStore.read(source, plugin: manifest.name).1 ?? [] } catch {
            if error.code == .libraryMissing { throw Failure("no library at \(source), which \(path) names; build it first (its build.sh puts both in dist/)") }
            throw Failure("\(error)")
        }
        let digest = PluginImageStore.hex(SHA256.hash(data: library))
        if let pinned = manifest.sha256, pinned != digest {
            throw Failure("\(source) has SHA-256 \(digest), but \(path) pins \(pinned); the two are from different builds: build again (build.sh writes both)")
        }
        let manifestBytes: [UInt8]
        do { manifestBytes = Array(try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw Failure("cannot read \(path): \(error.localizedDescription)")
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
        do {
            try StateDirectory.writeFile(library, to: libraryTarget, mode: 0o755)
            try StateDirectory.writeFile(manifestBytes, to: manifestTarget, mode: 0o644)
        } catch {
            throw Failure("cannot write into \(directory): \(error)")
        }
        return Installed(manifest: manifest, manifestPath: manifestTarget, libraryPath: libraryTarget)
    }

    /// Where a manifest's library is and how it stands against the manifest's pin, found
    /// and read as the host would (``PluginSearch``, ``PluginImageStore``), loading nothing.
    public enum LibraryCheck: Sendable {
        /// No file where the manifest points (nor, for a bare file name, in the install directory).
        case missing(String)
        /// There, but the host would refuse to read it: the reason.
        case unreadable(String, reason: String)
        case matchesPin(String)
        case notPinned(String)
        /// There, but another build than the pin: its SHA-256.
        case mismatch(String, sha256: String)
    }

    public static func check(libraryOf manifest: PluginManifest, installDirectory: String = HostConfiguration().installDirectory) -> LibraryCheck {
        guard let path = try? PluginSearch(directories: [], installDirectory: installDirectory).library(for: manifest) else {
            return .missing(manifest.libraryPath)
        }
        let bytes: [UInt8]
        do { bytes = try PluginImageStore.read(path, plugin: manifest.name).1 ?? [] } catch { return .unreadable(path, reason: error.message) }
        let digest = PluginImageStore.hex(SHA256.hash(data: bytes))
        guard let pinned = manifest.sha256 else { return .notPinned(path) }
        return pinned == digest ? .matchesPin(path) : .mismatch(path, sha256: digest)
    }
}
