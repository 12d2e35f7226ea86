public import CKizunaPluginABI

/// Exports a discovery plugin from its shared library. Put this one line in the plugin's module:
///
/// ```swift
/// @_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { MyDiscovery() } }
/// ```
///
/// It builds the C descriptor the host checks before it touches any Swift type of the
/// plugin: the descriptor ABI, the SDK version and the Swift compiler the plugin was built
/// with, and which copy of the SDK it uses. The body is emitted into the plugin, so these
/// facts are the plugin's, not the host's. The overload that matches the plugin's protocol
/// records its kind, so the host never needs a dynamic cast to find it.
@_alwaysEmitIntoClient
public func exportPlugin(_ make: @escaping @Sendable () -> any DiscoveryPlugin) -> UnsafeRawPointer {
    exportPlugin(kind: .discovery) { .discovery(make()) }
}

/// Exports a transport plugin; see ``exportPlugin(_:)-(()->DiscoveryPlugin)``.
@_alwaysEmitIntoClient
public func exportPlugin(_ make: @escaping @Sendable () -> any TransportPlugin) -> UnsafeRawPointer {
    exportPlugin(kind: .transport) { .transport(make()) }
}

/// Exports a file-transfer plugin; see ``exportPlugin(_:)-(()->DiscoveryPlugin)``.
@_alwaysEmitIntoClient
public func exportPlugin(_ make: @escaping @Sendable () -> any FileTransferPlugin) -> UnsafeRawPointer {
    exportPlugin(kind: .fileTransfer) { .fileTransfer(make()) }
}

/// Exports a streaming plugin; see ``exportPlugin(_:)-(()->DiscoveryPlugin)``.
@_alwaysEmitIntoClient
public func exportPlugin(_ make: @escaping @Sendable () -> any StreamingPlugin) -> UnsafeRawPointer {
    exportPlugin(kind: .streaming) { .streaming(make()) }
}

@_alwaysEmitIntoClient
func exportPlugin(kind: PluginKind, _ make: @escaping @Sendable () -> PluginObject) -> UnsafeRawPointer {
    let descriptor = UnsafeMutablePointer<kizuna_plugin_descriptor>.allocate(capacity: 1)
    let compiler = PluginBuildFacts.compilerVersion
    descriptor.initialize(to: kizuna_plugin_descriptor(
        magic: KIZUNA_PLUGIN_MAGIC,
        abi_version: KIZUNA_PLUGIN_ABI_VERSION,
        sdk_version: UnsafeRawPointer(PluginBuildFacts.sdkVersion.utf8Start).assumingMemoryBound(to: CChar.self),
        compiler_major: compiler.major,
        compiler_minor: compiler.minor,
        compiler_patch: compiler.patch,
        kind: kind.abiValue,
        sdk_identity: unsafeBitCast(PluginContext.self as Any.Type, to: UnsafeRawPointer.self),
        make_plugin: { context in PluginFactory.make(context) },
        factory_context: Unmanaged.passRetained(PluginFactory(make)).toOpaque()))
    return UnsafeRawPointer(descriptor)
}

/// A plugin object, typed by its kind's protocol.
public enum PluginObject: Sendable {
    case discovery(any DiscoveryPlugin)
    case transport(any TransportPlugin)
    case fileTransfer(any FileTransferPlugin)
    case streaming(any StreamingPlugin)

    /// The kind it was exported as.
    public var kind: PluginKind {
        switch self {
        case .discovery: .discovery
        case .transport: .transport
        case .fileTransfer: .fileTransfer
        case .streaming: .streaming
        }
    }

    /// The plugin as its base protocol.
    public var plugin: any Plugin {
        switch self {
        case .discovery(let plugin): plugin
        case .transport(let plugin): plugin
        case .fileTransfer(let plugin): plugin
        case .streaming(let plugin): plugin
        }
    }
}

/// Facts fixed when a module is compiled; used through `@_alwaysEmitIntoClient` so that
/// a plugin records its own.
public enum PluginBuildFacts {
    /// The SDK version a module was compiled against.
    @_alwaysEmitIntoClient
    public static var sdkVersion: StaticString { "0.4.0" }

    /// The Swift compiler a module was compiled with (major, minor, patch). Versions this
    /// SDK does not know are reported as the newest it knows, plus one minor.
    @_alwaysEmitIntoClient
    public static var compilerVersion: (major: UInt32, minor: UInt32, patch: UInt32) {
        #if compiler(>=6.4)
        return (6, 4, 0)
        #elseif compiler(>=6.3.2)
        return (6, 3, 2)
        #elseif compiler(>=6.3.1)
        return (6, 3, 1)
        #elseif compiler(>=6.3)
        return (6, 3, 0)
        #elseif compiler(>=6.2)
        return (6, 2, 0)
        #else
        return (6, 1, 0)
        #endif
    }
}

/// Holds a plugin's factory closure, reached from the descriptor.
public final class PluginFactory: @unchecked Sendable {
    private let factory: @Sendable () -> PluginObject

    /// Wraps `make`.
    public init(_ make: @escaping @Sendable () -> PluginObject) { factory = make }

    /// Makes the plugin.
    public func make() -> PluginObject { factory() }

    /// For C callers of the descriptor: makes the plugin and returns it retained (+1) as
    /// an object. Swift hosts use ``PluginDescriptor/makePlugin()``, which keeps its type.
    public static func make(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        guard let context else { return nil }
        let factory = Unmanaged<PluginFactory>.fromOpaque(context).takeUnretainedValue()
        return Unmanaged.passRetained(factory.make().plugin as AnyObject).toOpaque()
    }
}

/// A plugin descriptor as the host reads it, before anything of the plugin's Swift code runs.
public struct PluginDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The descriptor's marker; ``expectedMagic`` for a Kizuna plugin.
    public var magic: UInt32
    /// The descriptor layout version.
    public var abiVersion: UInt32
    /// The SDK version the plugin was compiled against.
    public var sdkVersion: String
    /// The Swift compiler the plugin was compiled with.
    public var compilerVersion: String
    /// The kind the plugin declares, or nil for a number no kind has.
    public var kind: PluginKind?
    /// The raw kind number.
    public var kindValue: UInt32
    /// True when the plugin uses this process's one copy of the SDK.
    public var sharesHostSDK: Bool
    private let factory: FactoryPointer

    struct FactoryPointer: @unchecked Sendable, Hashable {
        let descriptor: UnsafeRawPointer
    }

    /// The marker every Kizuna plugin descriptor starts with.
    public static let expectedMagic = KIZUNA_PLUGIN_MAGIC
    /// The descriptor layout this host reads.
    public static let supportedABIVersion = KIZUNA_PLUGIN_ABI_VERSION
    /// The name of the entry symbol.
    public static let entrySymbol = "kizuna_plugin_entry"

    /// Reads the magic and ABI version first, and the rest only if they match.
    /// - Parameter pointer: what the plugin's entry symbol returned.
    public init(reading pointer: UnsafeRawPointer) {
        let header = pointer.assumingMemoryBound(to: UInt32.self)
        magic = header[0]
        abiVersion = header[1]
        factory = FactoryPointer(descriptor: pointer)
        guard magic == Self.expectedMagic, abiVersion == Self.supportedABIVersion else {
            sdkVersion = ""
            compilerVersion = ""
            kind = nil
            kindValue = 0
            sharesHostSDK = false
            return
        }
        let descriptor = pointer.assumingMemoryBound(to: kizuna_plugin_descriptor.self).pointee
        sdkVersion = descriptor.sdk_version.map { String(cString: $0) } ?? ""
        compilerVersion = "\(descriptor.compiler_major).\(descriptor.compiler_minor).\(descriptor.compiler_patch)"
        kindValue = descriptor.kind
        kind = PluginKind(abiValue: descriptor.kind)
        sharesHostSDK = descriptor.sdk_identity == SDKInfo.identity
    }

    /// Makes the plugin object, typed by its kind. Call only after every check passed:
    /// it reaches the plugin's factory as this process's SDK type, which is safe only when
    /// ``sharesHostSDK`` is true.
    public func makePlugin() -> PluginObject? {
        let descriptor = factory.descriptor.assumingMemoryBound(to: kizuna_plugin_descriptor.self).pointee
        guard sharesHostSDK, let context = descriptor.factory_context else { return nil }
        return Unmanaged<PluginFactory>.fromOpaque(context).takeUnretainedValue().make()
    }

    public var description: String {
        "magic 0x\(String(magic, radix: 16)), ABI \(abiVersion), SDK \(sdkVersion), Swift \(compilerVersion), kind \(kind?.rawValue ?? "unknown (\(kindValue))"), \(sharesHostSDK ? "shares the host's SDK" : "carries its own SDK copy")"
    }
}
