import Foundation
import KizunaHost
import KizunaSDK
import Testing

@Suite struct PluginLibraryTests {
    @Test(arguments: [
        ("FixtureDiscovery", PluginKind.discovery),
        ("FixtureTransport", .transport),
        ("FixtureFileTransfer", .fileTransfer),
        ("FixtureStreaming", .streaming),
    ])
    func goodPluginsLoadAndConform(fixture: String, kind: PluginKind) throws {
        let manifest = try Fixtures.manifest(fixture, name: "good", kind: kind)
        let library = try PluginLibrary.open(manifest)
        #expect(library.descriptor.kind == kind)
        #expect(library.descriptor.sdkVersion == SDKInfo.version)
        #expect(library.descriptor.compilerVersion == SDKInfo.compilerVersion)
        #expect(library.descriptor.sharesHostSDK)
        let object = try library.makePlugin(for: manifest)
        #expect(object.kind == kind)
        // The object arrives typed by its kind, and really is of the plugin's own type.
        #expect(String(describing: type(of: object.plugin)) == fixture)
    }

    /// Each bad library, and the error code and message piece the host must answer with.
    static let refusals: [(fixture: String, code: PluginLoadError.Code, message: String)] = [
        ("FixtureNoEntry", .entrySymbolMissing, "has no 'kizuna_plugin_entry' symbol; export the plugin with `@_cdecl(\"kizuna_plugin_entry\")"),
        ("FixtureWrongABI", .abiMismatch, "its descriptor has ABI version 99, this host reads version 1; rebuild the plugin against KizunaSDK"),
        ("FixtureOldSDK", .sdkMismatch, "was built against KizunaSDK 0.0.1, this host has \(SDKInfo.version); rebuild the plugin"),
        ("FixtureOtherCompiler", .compilerMismatch, "was built with Swift 5.10.0, this host with Swift \(SDKInfo.compilerVersion); Swift has no stable ABI on Linux"),
        ("FixtureForeignSDK", .duplicateSDK, "carries its own copy of KizunaSDK"),
    ]

    @Test(arguments: refusals)
    func badLibrariesAreRefusedWithTheFix(refusal: (fixture: String, code: PluginLoadError.Code, message: String)) throws {
        let manifest = try Fixtures.manifest(refusal.fixture, name: "bad", kind: .discovery)
        let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(manifest) }
        #expect(error?.code == refusal.code)
        #expect(error?.plugin == "bad")
        #expect(error?.message.contains(refusal.message) == true, "got: \(error?.description ?? "no error")")
    }

    @Test func aKindOtherThanTheManifestsIsRefused() throws {
        let manifest = try Fixtures.manifest("FixtureTransport", name: "confused", kind: .discovery)
        let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(manifest) }
        #expect(error?.code == .kindMismatch)
        #expect(error?.message.contains("exports a transport plugin but the manifest says kind = \"discovery\"") == true)
    }

    @Test func aMissingLibraryIsNamed() throws {
        let directory = Fixtures.temporaryDirectory()
        let manifest = try PluginManifest(contentsOf: Fixtures.writeManifest(in: directory, name: "ghost", kind: .discovery, library: "libGhost.so"))
        let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(manifest) }
        #expect(error?.code == .libraryMissing)
        #expect(error?.file == "\(directory)/libGhost.so")
        #expect(error?.message.contains("does not exist; build the plugin, or fix 'library' in the manifest") == true)
    }

    @Test func aFileThatIsNotALibraryIsRefusedBeforeDlopen() throws {
        let directory = Fixtures.temporaryDirectory()
        try "not a library".write(toFile: "\(directory)/libText.so", atomically: true, encoding: .utf8)
        let manifest = try PluginManifest(contentsOf: Fixtures.writeManifest(in: directory, name: "text", kind: .discovery, library: "libText.so"))
        let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(manifest) }
        #expect(error?.code == .notASharedLibrary)
        #expect(error?.message.contains("is not a shared library (no ELF header)") == true)
    }

    @Test func anELFFileThatIsNotSharedIsRefused() throws {
        // An object file: ELF, but e_type is ET_REL.
        let directory = Fixtures.temporaryDirectory()
        var header = [UInt8](repeating: 0, count: 64)
        header[0...5] = [0x7F, 0x45, 0x4C, 0x46, 2, 1]  // 64-bit, little-endian
        header[16] = 1
        try Data(header).write(to: URL(fileURLWithPath: "\(directory)/libObject.so"))
        let manifest = try PluginManifest(contentsOf: Fixtures.writeManifest(in: directory, name: "object", kind: .discovery, library: "libObject.so"))
        let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(manifest) }
        #expect(error?.code == .notASharedLibrary)
        #expect(error?.message.contains("is an ELF file but not a shared library") == true)
    }

    @Test func aSHA256PinIsCheckedBeforeOpening() throws {
        let actual = try Fixtures.sha256(ofFile: Fixtures.library("FixtureDiscovery"))
        let pinned = try Fixtures.manifest("FixtureDiscovery", name: "pinned", kind: .discovery, extra: "sha256 = \"\(actual)\"")
        #expect(try PluginLibrary.open(pinned).sha256 == actual)

        let wrong = String(repeating: "0", count: 64)
        let mismatched = try Fixtures.manifest("FixtureDiscovery", name: "pinned", kind: .discovery, extra: "sha256 = \"\(wrong)\"")
        let error = #expect(throws: PluginLoadError.self) { try PluginLibrary.open(mismatched) }
        #expect(error?.code == .checksumMismatch)
        #expect(error?.message == "its SHA-256 is \(actual) but the manifest pins \(wrong); if this build is the one you mean to load, update 'sha256' in \(mismatched.path)")
    }
}
