import CKizunaHost
import Foundation
import KizunaHost
import KizunaPluginTestKit
import KizunaSDK
import Testing

/// The host library and the test kit use the one libKizunaSDK.so; neither links a copy of
/// the SDK (or of swift-log) into the process. A test kit that depended on the SDK's
/// target instead of its product did exactly that, silently.
@Suite struct HostSDKIdentityTests {
    /// The image that defines a struct's type descriptor (the metadata's second word).
    func image(of type: Any.Type) -> String {
        let descriptor = unsafeBitCast(type, to: UnsafePointer<UInt>.self)[1]
        guard let path = kizuna_image_containing(UnsafeRawPointer(bitPattern: descriptor)) else { return "(unknown)" }
        return String(cString: path)
    }

    @Test(arguments: [
        ("RuntimeConfiguration", RuntimeConfiguration.self as Any.Type),
        ("PluginSettings", PluginSettings.self as Any.Type),
        ("TransferProgress", TransferProgress.self as Any.Type),
        ("Logger", Logger.self as Any.Type),
    ])
    func sdkTypesLiveInTheSDKLibrary(name: String, type: Any.Type) {
        let path = image(of: type)
        #expect(path.hasSuffix("/libKizunaSDK.so"), "\(name) is defined in \(path): a second copy of the SDK is linked")
    }

    @Test func theTestKitIsNotTheSDK() {
        #expect(image(of: CheckResult.self).hasSuffix("/libKizunaSDK.so") == false)
        #expect(image(of: PluginManifest.self).hasSuffix("/libKizunaSDK.so") == false)
    }
}
