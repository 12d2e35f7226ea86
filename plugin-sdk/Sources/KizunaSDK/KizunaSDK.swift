// The Kizuna plugin SDK. Packages whose types cross the host/plugin boundary are
// re-exported from here so that the host and every plugin share one copy of them
// (DESIGN.md fact 2): import KizunaSDK, never Logging or Metrics directly.
@_exported public import CoreMetrics
@_exported public import Logging
@_exported public import Metrics

/// Facts about this build of the SDK, checked when a plugin is loaded.
public enum SDKInfo {
    /// The SDK's semantic version, as compiled into this library.
    public static let version = "\(PluginBuildFacts.sdkVersion)"

    /// The Swift compiler this SDK library was compiled with.
    public static let compilerVersion: String = {
        let version = PluginBuildFacts.compilerVersion
        return "\(version.major).\(version.minor).\(version.patch)"
    }()

    /// The metadata address of an SDK type in this process's copy of the SDK. A plugin
    /// reports its own view of it; they differ when the plugin carries its own SDK copy.
    public static var identity: UnsafeRawPointer {
        unsafeBitCast(PluginContext.self as Any.Type, to: UnsafeRawPointer.self)
    }

    /// Identifiers of types as seen from inside the SDK's image. A module that links its own
    /// copy of the SDK, swift-log or swift-metrics sees different identifiers.
    public static var typeIdentities: [String: ObjectIdentifier] {
        [
            "KizunaSDK.AsyncRuntime": ObjectIdentifier(AsyncRuntime.self),
            "Logging.Logger": ObjectIdentifier(Logger.self),
            "CoreMetrics.Counter": ObjectIdentifier(Counter.self),
        ]
    }
}
