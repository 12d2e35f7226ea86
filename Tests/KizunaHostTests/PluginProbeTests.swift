import Foundation
import Glibc
import KizunaHost
import KizunaSDK
import Testing

/// Hostile and broken plugin libraries: each is refused with what happened and how to look
/// into it, and the host goes on serving its other plugins. The libraries are small C
/// files built here with `cc`, each doing one bad thing.
@Suite(.timeLimit(.minutes(1))) struct PluginProbeTests {
    /// Builds `source` into `directory/libNAME.so` and writes a transport manifest for it.
    static func buildLibrary(_ name: String, _ source: String, in directory: String) throws {
        try source.write(toFile: "\(directory)/\(name).c", atomically: true, encoding: .utf8)
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        compiler.arguments = ["cc", "-shared", "-fPIC", "-o", "\(directory)/lib\(name).so", "\(directory)/\(name).c"]
        try compiler.run()
        compiler.waitUntilExit()
        try #require(compiler.terminationStatus == 0, "cc could not build \(name).c")
        Fixtures.writeManifest(in: directory, name: name, kind: .transport, library: "lib\(name).so")
    }

    /// A host whose probe gives up after `timeout`, with a good plugin running beside the
    /// bad ones.
    func hostWithAGoodPlugin(timeout: Duration = .seconds(10)) async throws -> (KizunaHost, String) {
        let directory = Fixtures.temporaryDirectory()
        let host = try KizunaHost(configuration: HostConfiguration(
            runtime: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil),
            pluginsDirectory: directory, searchPath: [], installDirectory: Fixtures.buildDirectory,
            controlSocketPath: "\(directory)/control.sock", stopGracePeriod: .milliseconds(100), cancellationGracePeriod: .milliseconds(100),
            stateDirectory: "\(directory)/state", probeTimeout: timeout))
        Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"))
        #expect(try await host.load("finder").state == .running)
        return (host, directory)
    }

    /// Loads `name` and returns the refusal, after checking that the host still serves:
    /// its good plugin runs, and the refused one is listed as blocked when the probe
    /// refused it.
    func refusal(of name: String, on host: KizunaHost) async throws -> PluginLoadError {
        let error = try #require(await #expect(throws: PluginLoadError.self) { try await host.load(name) })
        #expect(error.plugin == name)
        let listed = try await host.list()
        #expect(listed.first { $0.name == "finder" }?.state == .running)
        if error.code == .probeFailed {
            #expect(listed.first { $0.name == name }?.state == .failed(reason: "blocked: \(error.message)"))
        }
        return error
    }

    static let entry = "void *kizuna_plugin_entry(void) { return 0; }\n"

    @Test func aConstructorThatAbortsIsRefusedWithItsSignal() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        try Self.buildLibrary("aborts", "#include <stdlib.h>\n__attribute__((constructor)) static void start(void) { abort(); }\n" + Self.entry, in: directory)
        let error = try await refusal(of: "aborts", on: host)
        #expect(error.code == .probeFailed)
        #expect(error.message.contains("crashed when it was opened, with signal 6 (SIGABRT"), "\(error)")
        #expect(error.message.contains("look into it with `kizuna conformance MANIFEST`"))
        await host.shutdown()
    }

    @Test func aConstructorThatCrashesIsRefusedWithItsSignal() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        try Self.buildLibrary("faults", "__attribute__((constructor)) static void start(void) { *(volatile int *)8 = 1; }\n" + Self.entry, in: directory)
        let error = try await refusal(of: "faults", on: host)
        #expect(error.message.contains("with signal 11 (SIGSEGV"), "\(error)")
        await host.shutdown()
    }

    @Test func aConstructorThatExitsIsRefusedWithItsStatusAndWhatItPrinted() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        try Self.buildLibrary(
            "quits", "#include <stdio.h>\n#include <stdlib.h>\n__attribute__((constructor)) static void start(void) { fprintf(stderr, \"no licence\\n\"); exit(3); }\n" + Self.entry,
            in: directory)
        let error = try await refusal(of: "quits", on: host)
        #expect(error.message.contains("ended the process (exit status 3) when it was opened"), "\(error)")
        #expect(error.message.contains("(it printed: \"no licence\")"))
        await host.shutdown()
    }

    @Test func aConstructorThatNeverReturnsIsRefusedAfterTheTimeLimit() async throws {
        let (host, directory) = try await hostWithAGoodPlugin(timeout: .seconds(1))
        try Self.buildLibrary("hangs", "#include <unistd.h>\n__attribute__((constructor)) static void start(void) { for (;;) pause(); }\n" + Self.entry, in: directory)
        let error = try await refusal(of: "hangs", on: host)
        #expect(error.message.contains("did not return within 1 s of being opened"), "\(error)")
        await host.shutdown()
    }

    @Test func anEntrySymbolThatIsDataOrReturnsAWildPointerIsRefused() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        try Self.buildLibrary("data", "int kizuna_plugin_entry[16] = {1, 2, 3};\n", in: directory)
        let data = try await refusal(of: "data", on: host)
        #expect(data.code == .entrySymbolMissing)
        #expect(data.message.contains("exports 'kizuna_plugin_entry', but not as a function"), "\(data)")

        try Self.buildLibrary("wild", "void *kizuna_plugin_entry(void) { return (void *)0x1234; }\n", in: directory)
        let wild = try await refusal(of: "wild", on: host)
        #expect(wild.code == .badMagic)
        #expect(wild.message.contains("returned a pointer (0x1234) to no readable memory"), "\(wild)")
        await host.shutdown()
    }

    @Test func aRefusalIsRememberedUntilTheFileChanges() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        try Self.buildLibrary("flaky", "#include <stdlib.h>\n__attribute__((constructor)) static void start(void) { abort(); }\n" + Self.entry, in: directory)
        let first = try await refusal(of: "flaky", on: host)
        #expect(!first.message.contains("remembered"))
        let second = try await refusal(of: "flaky", on: host)
        #expect(second.message.contains("remembered from an earlier probe of this same file"), "\(second)")
        let again = try #require(await #expect(throws: PluginLoadError.self) { try await host.load("flaky", probeAgain: true) })
        #expect(again.code == .probeFailed && !again.message.contains("remembered"))

        // A fixed build over the same path is a new file: probed again, and loaded.
        let library = "\(directory)/libflaky.so"
        try FileManager.default.removeItem(atPath: library)
        try FileManager.default.copyItem(atPath: Fixtures.library("FixtureTransport"), toPath: library)
        #expect(try await host.load("flaky").state == .running)
        #expect(try await host.list().first { $0.name == "flaky" }?.state == .running)
        await host.shutdown()
    }

    @Test func aLibraryCutShortIsRefusedBeforeItIsOpened() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        let whole = try Data(contentsOf: URL(fileURLWithPath: Fixtures.library("FixtureTransport")))
        // Cut inside the loadable segments, and just short of the end.
        for (name, count) in [("half", whole.count / 2), ("short", whole.count - 1)] {
            try whole.prefix(count).write(to: URL(fileURLWithPath: "\(directory)/lib\(name).so"))
            Fixtures.writeManifest(in: directory, name: name, kind: .transport, library: "lib\(name).so")
            let error = try await refusal(of: name, on: host)
            #expect(error.code == .notASharedLibrary)
            #expect(error.message.contains("is cut short"), "\(error)")
            #expect(error.message.contains("build or copy it again"))
        }
        await host.shutdown()
    }

    @Test func aLibraryThatIsNoRegularFileIsRefusedWithoutReadingIt() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        // A FIFO with no writer: opening it for reading must not wait.
        #expect(mkfifo("\(directory)/libfifo.so", 0o600) == 0)
        Fixtures.writeManifest(in: directory, name: "fifo", kind: .transport, library: "libfifo.so")
        let fifo = try await refusal(of: "fifo", on: host)
        #expect(fifo.message.contains("is a FIFO (named pipe), not a regular file"), "\(fifo)")

        try FileManager.default.createDirectory(atPath: "\(directory)/libfolder.so", withIntermediateDirectories: false)
        Fixtures.writeManifest(in: directory, name: "folder", kind: .transport, library: "libfolder.so")
        #expect(try await refusal(of: "folder", on: host).message.contains("is a directory, not a regular file"))

        try FileManager.default.createSymbolicLink(atPath: "\(directory)/libzero.so", withDestinationPath: "/dev/zero")
        Fixtures.writeManifest(in: directory, name: "zero", kind: .transport, library: "libzero.so")
        #expect(try await refusal(of: "zero", on: host).message.contains("is a character device, not a regular file"))

        try FileManager.default.createSymbolicLink(atPath: "\(directory)/libloop.so", withDestinationPath: "\(directory)/libloop.so")
        Fixtures.writeManifest(in: directory, name: "loop", kind: .transport, library: "libloop.so")
        #expect(try await refusal(of: "loop", on: host).message.contains("is a symbolic link that loops"))
        await host.shutdown()
    }

    @Test func aLibraryForAnotherMachineIsNamedAsSuch() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.library("FixtureTransport"))))
        bytes[18] = ELFMachine.other
        bytes[19] = 0
        try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/libforeign.so"))
        Fixtures.writeManifest(in: directory, name: "foreign", kind: .transport, library: "libforeign.so")
        let error = try await refusal(of: "foreign", on: host)
        #expect(error.message.contains("is built for \(ELFMachine.otherName), this host runs on"), "\(error)")
        await host.shutdown()
    }

    @Test func aMissingAbsoluteLibraryIsNamedNotReplaced() async throws {
        let (host, directory) = try await hostWithAGoodPlugin()
        // The install directory has a libFixtureTransport.so; an absolute path elsewhere
        // that does not exist must not quietly become that one.
        Fixtures.writeManifest(in: directory, name: "absent", kind: .transport, library: "\(directory)/gone/libFixtureTransport.so")
        let error = try await refusal(of: "absent", on: host)
        #expect(error.code == .libraryMissing)
        #expect(error.message.contains("\(directory)/gone/libFixtureTransport.so"), "\(error)")
        await host.shutdown()
    }
}

/// Another machine's ELF code than this one's, for the foreign-library test.
enum ELFMachine {
    #if arch(x86_64)
    static let other: UInt8 = 183
    static let otherName = "AArch64"
    #else
    static let other: UInt8 = 62
    static let otherName = "x86-64"
    #endif
}
