// The Kizuna plugin SDK. Packages whose types cross the host/plugin boundary are
// re-exported from here so that the host and every plugin share one copy of them
// (DESIGN.md fact 2): import KizunaSDK, never Logging or Metrics directly.
@_exported public import CoreMetrics
@_exported public import Logging
@_exported public import Metrics

/// Facts about this build of the SDK, checked when a plugin is loaded.
public enum SDKInfo {
    /// The SDK's semantic version.
    public static let version = "0.1.0"

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
