import Foundation
import KizunaSDK
import Testing

/// DESIGN.md facts 1 and 2: the process holds one copy of the SDK and of every package
/// whose types cross the host/plugin boundary, and that copy is libKizunaSDK.so.
@Suite struct SDKIdentityTests {
    /// The lines of /proc/self/maps, read with getline: the file changes while other tests
    /// start threads, and the kernel keeps each line whole only for line-sized reads.
    func mapsLines() throws -> [Substring] {
        guard let file = fopen("/proc/self/maps", "r") else { throw CocoaError(.fileReadNoPermission) }
        defer { fclose(file) }
        var lines: [Substring] = []
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        while getline(&buffer, &capacity, file) > 0 {
            lines.append(Substring(String(cString: buffer!).trimmingCharacters(in: .newlines)))
        }
        return lines
    }

    /// The file mapped at `address`, from /proc/self/maps.
    func imagePath(containing address: UInt) throws -> String {
        for line in try mapsLines() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let range = fields[0].split(separator: "-")
            guard fields.count >= 6, let low = UInt(range[0], radix: 16), let high = UInt(range[1], radix: 16) else { continue }
            if address >= low && address < high { return String(fields[5]) }
        }
        return "(anonymous)"
    }

    /// Where a struct's or enum's type descriptor is. Its metadata may be set up at run
    /// time on the heap, but the descriptor it points to (the metadata's second word) is
    /// always static data in the image that defines the type.
    func descriptorAddress(_ type: Any.Type) -> UInt {
        let metadata = unsafeBitCast(type, to: UnsafePointer<UInt>.self)
        return metadata[1]
    }

    @Test func hostAndSDKSeeTheSameTypes() {
        let fromSDK = SDKInfo.typeIdentities
        #expect(fromSDK["KizunaSDK.AsyncRuntime"] == ObjectIdentifier(AsyncRuntime.self))
        #expect(fromSDK["Logging.Logger"] == ObjectIdentifier(Logger.self))
        #expect(fromSDK["CoreMetrics.Counter"] == ObjectIdentifier(Counter.self))
    }

    @Test(arguments: [
        ("RuntimeConfiguration", RuntimeConfiguration.self as Any.Type),
        ("Logger", Logger.self as Any.Type),
        ("LoggingSystem", LoggingSystem.self as Any.Type),
        ("MetricsSystem", MetricsSystem.self as Any.Type),
    ])
    func sharedTypesLiveInTheSDKLibrary(name: String, type: Any.Type) throws {
        let image = try imagePath(containing: descriptorAddress(type))
        #expect(image.hasSuffix("/libKizunaSDK.so"), "\(name)'s metadata is in \(image), not in libKizunaSDK.so: a second copy is linked")
    }

    @Test func theSDKIsLoadedExactlyOnce() throws {
        let images = Set(try mapsLines().compactMap { line -> String? in
            let path = line.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init) ?? ""
            return path.hasSuffix("libKizunaSDK.so") ? path : nil
        })
        #expect(images.count == 1, "mapped SDK images: \(images)")
    }
}
