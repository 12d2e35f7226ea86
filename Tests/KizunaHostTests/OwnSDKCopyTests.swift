import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// A plugin that compiles the SDK into itself (Tests/Fixtures/OwnSDKCopy, a package of its
/// own, since the host package must not link the SDK statically anywhere).
extension ProcessSuites {
    @Suite(.timeLimit(.minutes(10))) struct OwnSDKCopyTests {
        static let packagePath: String = {
            // Tests/KizunaHostTests/OwnSDKCopyTests.swift → Tests/Fixtures/OwnSDKCopy
            let tests = (#filePath as NSString).deletingLastPathComponent
            return ((tests as NSString).deletingLastPathComponent as NSString).appendingPathComponent("Fixtures/OwnSDKCopy")
        }()

        /// Builds the fixture with `swift build` and returns its library.
        static func build() throws -> String {
            let scratch = NSTemporaryDirectory() + "kizuna-own-sdk-copy"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["swift", "build", "--package-path", packagePath, "--scratch-path", scratch]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            try process.run()
            let log = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw CommandFailure("building \(packagePath) failed:\n\(String(decoding: log, as: UTF8.self))")
            }
            return "\(scratch)/debug/libFixtureOwnSDKCopy.so"
        }

        struct CommandFailure: Error, CustomStringConvertible {
            let description: String
            init(_ description: String) { self.description = description }
        }

        @Test func aPluginWithItsOwnSDKCopyIsRefused() throws {
            let library = try Self.build()
            let directory = Fixtures.temporaryDirectory()
            let manifest = try PluginManifest(contentsOf: Fixtures.writeManifest(in: directory, name: "own-copy", kind: .discovery, library: library))
            let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(manifest) }
            #expect(error?.code == .duplicateSDK, "\(error?.description ?? "loaded without error")")
            #expect(error?.message.contains("carries its own copy of KizunaSDK") == true)
        }
    }
}
