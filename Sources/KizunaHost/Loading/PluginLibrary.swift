import Crypto
import Foundation
import CKizunaHost
import Glibc
public import KizunaSDK
import CKizunaPluginABI

/// A plugin's shared library, opened and checked.
///
/// Opening follows DESIGN.md facts 3–5: the SHA-256 pin is checked before `dlopen`; the
/// library is opened with `RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE` (a missing symbol is a
/// load error, and Swift code is never unmapped); the descriptor's magic, ABI version, SDK
/// version, compiler version and SDK identity are checked before any Swift type of the
/// plugin is touched.
public struct PluginLibrary: Sendable {
    /// The file the manifest names.
    public let path: String
    /// The file that was mapped: the host's private copy of `path` (``PluginImageStore``),
    /// or `path` itself for the one-shot tools (conformance, the probe).
    public let image: String
    /// The library's SHA-256, lowercase hex.
    public let sha256: String
    /// What the plugin's descriptor says.
    public let descriptor: PluginDescriptor

    private let handle: Handle
    struct Handle: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }

    /// Opens the host's private copy of `manifest`'s library and checks it against the
    /// manifest (pin, kind) and this host (``openImage(_:plugin:file:)``).
    /// - Throws: ``PluginLoadError`` saying what is wrong and how to rebuild or fix it.
    static func open(_ manifest: PluginManifest, image: PluginImage) throws(PluginLoadError) -> PluginLibrary {
        try checkPin(manifest, sha256: image.sha256, file: image.source)
        let (handle, descriptor) = try openImage(image.path, plugin: manifest.name, file: image.source)
        try checkKind(manifest, descriptor, file: image.source)
        return PluginLibrary(path: image.source, image: image.path, sha256: image.sha256, descriptor: descriptor, handle: handle)
    }

    /// Opens a library file in place, for the one-shot tools (`kizuna conformance`): the
    /// same checks as a host's load, without the private copy or the probe.
    /// - Parameter path: the file to open; the manifest's library by default.
    /// - Throws: ``PluginLoadError`` saying what is wrong and how to rebuild or fix it.
    public static func open(_ manifest: PluginManifest, path: String? = nil) throws(PluginLoadError) -> PluginLibrary {
        let path = path ?? manifest.libraryPath
        let (_, bytes) = try PluginImageStore.read(path, plugin: manifest.name)
        let digest = PluginImageStore.hex(SHA256.hash(data: bytes ?? []))
        try checkPin(manifest, sha256: digest, file: path)
        let (handle, descriptor) = try openImage(path, plugin: manifest.name, file: path)
        try checkKind(manifest, descriptor, file: path)
        return PluginLibrary(path: path, image: path, sha256: digest, descriptor: descriptor, handle: handle)
    }

    private static func checkPin(_ manifest: PluginManifest, sha256 digest: String, file: String) throws(PluginLoadError) {
        if let pinned = manifest.sha256, pinned != digest {
            throw PluginLoadError(.checksumMismatch, plugin: manifest.name, file: file, "its SHA-256 is \(digest) but the manifest pins \(pinned); if this build is the one you mean to load, update 'sha256' in \(manifest.path)")
        }
    }

    private static func checkKind(_ manifest: PluginManifest, _ descriptor: PluginDescriptor, file: String) throws(PluginLoadError) {
        guard descriptor.kind == manifest.kind else {
            let declared = descriptor.kind?.rawValue ?? "unknown kind \(descriptor.kindValue)"
            throw PluginLoadError(.kindMismatch, plugin: manifest.name, file: file, "the library exports a \(declared) plugin but the manifest says kind = \"\(manifest.kind)\"; make them agree")
        }
    }

    /// Opens `path` with the host's flags and checks what its entry symbol returns, before
    /// any Swift type of the plugin is touched: the symbol is a function, the descriptor it
    /// returns is readable memory (checked through the kernel, so a wild pointer is refused,
    /// not followed), and its magic, ABI version, SDK version, compiler version and SDK
    /// identity are this host's.
    /// - Parameters:
    ///   - plugin: the plugin's name, for messages.
    ///   - file: the file to name in messages (the manifest's library, not the copy).
    static func openImage(_ path: String, plugin: String?, file: String) throws(PluginLoadError) -> (Handle, PluginDescriptor) {
        func failure(_ code: PluginLoadError.Code, _ message: String) -> PluginLoadError {
            PluginLoadError(code, plugin: plugin, file: file, message)
        }
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            let hint = reason.contains("undefined symbol") || reason.contains("cannot open shared object")
                ? "; a missing symbol or library means the plugin was built against another SDK or toolchain: rebuild it against this host's KizunaSDK"
                : "; rebuild the plugin with `swift build`"
            throw failure(.dlopenFailed, "dlopen failed: \(reason.replacingOccurrences(of: path, with: file))\(hint)")
        }
        let symbol = PluginDescriptor.entrySymbol
        switch kizuna_symbol_is_function(handle, symbol) {
        case -1:
            throw failure(.entrySymbolMissing, "has no '\(symbol)' symbol; export the plugin with `@_cdecl(\"\(symbol)\") public func entry() -> UnsafeRawPointer { exportPlugin { YourPlugin() } }`")
        case 0:
            throw failure(.entrySymbolMissing, "exports '\(symbol)', but not as a function (a variable or other data); export it with `@_cdecl(\"\(symbol)\") public func entry() -> UnsafeRawPointer { exportPlugin { YourPlugin() } }`")
        default: break
        }
        typealias EntryFunction = @convention(c) () -> UnsafeRawPointer?
        guard let raw = unsafeBitCast(dlsym(handle, symbol), to: EntryFunction.self)() else {
            throw failure(.badMagic, "its entry symbol returned no descriptor; return exportPlugin(...) from it")
        }
        guard kizuna_memory_readable(raw, UInt(MemoryLayout<kizuna_plugin_descriptor>.size)) == 1 else {
            throw failure(.badMagic, "its entry symbol returned a pointer (0x\(String(UInt(bitPattern: raw), radix: 16))) to no readable memory; return exportPlugin(...) from it")
        }
        let header = raw.assumingMemoryBound(to: UInt32.self)
        guard header[0] == PluginDescriptor.expectedMagic else {
            throw failure(.badMagic, "'\(symbol)' does not return a Kizuna plugin descriptor (magic 0x\(String(header[0], radix: 16))); return exportPlugin(...) from it")
        }
        guard header[1] == PluginDescriptor.supportedABIVersion else {
            throw failure(.abiMismatch, "its descriptor has ABI version \(header[1]), this host reads version \(PluginDescriptor.supportedABIVersion); rebuild the plugin against KizunaSDK \(SDKInfo.version)")
        }
        let version = raw.assumingMemoryBound(to: kizuna_plugin_descriptor.self).pointee.sdk_version
        guard let version, kizuna_checked_strlen(version, 256) >= 0 else {
            throw failure(.badMagic, "its descriptor's SDK version is not a readable string; return exportPlugin(...) from the entry symbol")
        }
        let descriptor = PluginDescriptor(reading: raw)
        guard descriptor.sdkVersion == SDKInfo.version else {
            throw failure(.sdkMismatch, "was built against KizunaSDK \(descriptor.sdkVersion), this host has \(SDKInfo.version); rebuild the plugin against KizunaSDK \(SDKInfo.version)")
        }
        guard descriptor.compilerVersion == SDKInfo.compilerVersion else {
            throw failure(.compilerMismatch, "was built with Swift \(descriptor.compilerVersion), this host with Swift \(SDKInfo.compilerVersion); Swift has no stable ABI on Linux, so rebuild the plugin with Swift \(SDKInfo.compilerVersion)")
        }
        guard descriptor.sharesHostSDK else {
            throw failure(.duplicateSDK, "carries its own copy of KizunaSDK, so its types would not be the host's; depend on the KizunaSDK product (a dynamic library) and do not compile or link the SDK's sources into the plugin")
        }
        return (Handle(pointer: handle), descriptor)
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
}
