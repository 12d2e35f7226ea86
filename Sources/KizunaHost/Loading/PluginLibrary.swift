import Crypto
import Foundation
import Glibc
public import KizunaSDK

/// Which file is at a path: device, inode, size and modification time (to the nanosecond).
public struct FileIdentity: Sendable, Hashable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int

    /// The identity of the file at `path`, or nil if there is none.
    public init?(path: String) {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modifiedSeconds = status.st_mtim.tv_sec
        modifiedNanoseconds = status.st_mtim.tv_nsec
    }
}

/// A plugin's shared library, opened and checked.
///
/// Opening follows DESIGN.md facts 3–5: the SHA-256 pin is checked before `dlopen`; the
/// library is opened with `RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE` (a missing symbol is a
/// load error, and Swift code is never unmapped); the descriptor's magic, ABI version, SDK
/// version, compiler version and SDK identity are checked before any Swift type of the
/// plugin is touched.
public struct PluginLibrary: Sendable {
    /// The file that was opened.
    public let path: String
    /// The library's SHA-256, lowercase hex: computed when the manifest pins one (it is
    /// checked before opening) or when reload copies a new build; nil otherwise, since
    /// hashing would be most of a load's cost.
    public let sha256: String?
    /// Which file was opened (device, inode, size, modification time): how reload tells a
    /// new build from the loaded one without hashing.
    public let fileIdentity: FileIdentity
    /// What the plugin's descriptor says.
    public let descriptor: PluginDescriptor

    private let handle: Handle
    private struct Handle: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }

    /// Opens the library `manifest` names and checks its descriptor against the manifest
    /// and this host.
    /// - Parameter path: the file to open; the manifest's library unless a copy is opened
    ///   instead (reload opens a content-addressed copy of a new build).
    /// - Throws: ``PluginLoadError`` saying what is wrong and how to rebuild or fix it.
    public static func open(_ manifest: PluginManifest, path: String? = nil) throws(PluginLoadError) -> PluginLibrary {
        let path = path ?? manifest.libraryPath
        func failure(_ code: PluginLoadError.Code, _ message: String) -> PluginLoadError {
            PluginLoadError(code, plugin: manifest.name, file: path, message)
        }
        guard let identity = FileIdentity(path: path) else {
            throw failure(.libraryMissing, "the library named in \(manifest.path) does not exist; build the plugin, or fix 'library' in the manifest")
        }
        let bytes: Data
        var digest: String?
        do {
            if manifest.sha256 != nil {
                bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
                digest = hexDigest(SHA256.hash(data: bytes))
            } else {
                let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
                defer { try? handle.close() }
                bytes = try handle.read(upToCount: 64) ?? Data()
            }
        } catch {
            throw failure(.libraryUnreadable, "the library cannot be read (\(PluginManifest.reason(error))); check its permissions")
        }
        if let pinned = manifest.sha256, let digest, pinned != digest {
            throw failure(.checksumMismatch, "its SHA-256 is \(digest) but the manifest pins \(pinned); if this build is the one you mean to load, update 'sha256' in \(manifest.path)")
        }
        // ELF magic, then e_type == ET_DYN (3): anything else would only get a terse dlerror.
        guard bytes.count >= 18, bytes.prefix(4) == Data([0x7F, 0x45, 0x4C, 0x46]) else {
            throw failure(.notASharedLibrary, "is not a shared library (no ELF header); 'library' must name the plugin's .so, built with `swift build`")
        }
        guard bytes[bytes.startIndex + 16] == 3 else {
            throw failure(.notASharedLibrary, "is an ELF file but not a shared library; build the plugin as a .library(type: .dynamic) product")
        }

        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw failure(.dlopenFailed, "dlopen failed: \(reason); a missing symbol means the plugin was built against another SDK or toolchain: rebuild it against this host's KizunaSDK")
        }
        guard let entry = dlsym(handle, PluginDescriptor.entrySymbol) else {
            throw failure(.entrySymbolMissing, "has no '\(PluginDescriptor.entrySymbol)' symbol; export the plugin with `@_cdecl(\"\(PluginDescriptor.entrySymbol)\") public func entry() -> UnsafeRawPointer { exportPlugin { YourPlugin() } }`")
        }
        typealias EntryFunction = @convention(c) () -> UnsafeRawPointer?
        guard let raw = unsafeBitCast(entry, to: EntryFunction.self)() else {
            throw failure(.badMagic, "its entry symbol returned no descriptor; return exportPlugin(...) from it")
        }
        let descriptor = PluginDescriptor(reading: raw)
        guard descriptor.magic == PluginDescriptor.expectedMagic else {
            throw failure(.badMagic, "'\(PluginDescriptor.entrySymbol)' does not return a Kizuna plugin descriptor (magic 0x\(String(descriptor.magic, radix: 16))); return exportPlugin(...) from it")
        }
        guard descriptor.abiVersion == PluginDescriptor.supportedABIVersion else {
            throw failure(.abiMismatch, "its descriptor has ABI version \(descriptor.abiVersion), this host reads version \(PluginDescriptor.supportedABIVersion); rebuild the plugin against KizunaSDK \(SDKInfo.version)")
        }
        guard descriptor.sdkVersion == SDKInfo.version else {
            throw failure(.sdkMismatch, "was built against KizunaSDK \(descriptor.sdkVersion), this host has \(SDKInfo.version); rebuild the plugin against KizunaSDK \(SDKInfo.version)")
        }
        guard descriptor.compilerVersion == SDKInfo.compilerVersion else {
            throw failure(.compilerMismatch, "was built with Swift \(descriptor.compilerVersion), this host with Swift \(SDKInfo.compilerVersion); Swift has no stable ABI on Linux, so rebuild the plugin with Swift \(SDKInfo.compilerVersion)")
        }
        guard descriptor.sharesHostSDK else {
            throw failure(.duplicateSDK, "carries its own copy of KizunaSDK, so its types would not be the host's; depend on the KizunaSDK product (a dynamic library) and do not compile or link the SDK's sources into the plugin")
        }
        guard descriptor.kind == manifest.kind else {
            let declared = descriptor.kind?.rawValue ?? "unknown kind \(descriptor.kindValue)"
            throw failure(.kindMismatch, "the library exports a \(declared) plugin but the manifest says kind = \"\(manifest.kind)\"; make them agree")
        }
        return PluginLibrary(path: path, sha256: digest, fileIdentity: identity, descriptor: descriptor, handle: Handle(pointer: handle))
    }

    /// Makes a plugin object, typed by its kind (no dynamic cast: the plugin's export
    /// overload fixed the type).
    /// - Throws: ``PluginLoadError`` with code ``PluginLoadError/Code/notAPlugin`` if the
    ///   factory made nothing or a plugin of another kind.
    public func makePlugin(for manifest: PluginManifest) throws(PluginLoadError) -> PluginObject {
        guard let object = descriptor.makePlugin() else {
            throw PluginLoadError(.notAPlugin, plugin: manifest.name, file: path, "its factory made no plugin; export it with exportPlugin { YourPlugin() }")
        }
        guard object.kind == manifest.kind else {
            throw PluginLoadError(.kindMismatch, plugin: manifest.name, file: path, "its factory made a \(object.kind) plugin but the manifest says kind = \"\(manifest.kind)\"; make them agree")
        }
        return object
    }

    /// The actions `manifest` declares whose symbol this library does not export.
    public func unresolvedActions(of manifest: PluginManifest) -> [PluginAction] {
        manifest.actions.values.filter { address(of: $0.symbol) == nil }.sorted { $0.name < $1.name }
    }

    /// The address of `symbol` in this library, if it exports it.
    func address(of symbol: String) -> UnsafeMutableRawPointer? { dlsym(handle.pointer, symbol) }

    /// This library, with its SHA-256 recorded (reload hashes a new build to name its copy).
    func withSHA256(_ digest: String) -> PluginLibrary {
        PluginLibrary(path: path, sha256: digest, fileIdentity: fileIdentity, descriptor: descriptor, handle: handle)
    }

    /// The SHA-256 of the file at `path`, lowercase hex.
    public static func sha256(ofFileAt path: String) throws -> String {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        return hexDigest(SHA256.hash(data: bytes))
    }

    /// Lowercase hex of a digest.
    private static func hexDigest(_ digest: SHA256.Digest) -> String {
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
