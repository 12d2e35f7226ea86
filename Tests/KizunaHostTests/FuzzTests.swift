import Foundation
import Testing

extension ProcessSuites {
    /// A bounded, seeded run of `kizuna fuzz` over every decoder of peer or file input:
    /// 100,000 mutated inputs each, from seeds that are real messages (Tests/Fuzz/Seeds).
    /// Each runs in a child process, so a decoder that crashes fails its case (with the
    /// input kept) instead of ending the test run.
    @Suite(.serialized, .timeLimit(.minutes(3))) struct FuzzTests {
        static let seeds = BuiltinHost.repository + "/Tests/Fuzz/Seeds"

        @Test(arguments: [
            ("tcp-transport", "libKizunaTransportTCP.so"), ("file-transfer", "libKizunaFileTransfer.so"), ("streaming", "libKizunaStreaming.so"),
            ("mdns-discovery", "libKizunaDiscoveryMDNS.so"), ("manifest", "manifest"), ("control-request", "control-request"),
            ("library-header", "library-header"), ("pairing-message", "pairing-message"),
        ])
        func aDecoderSurvivesAHundredThousandMutatedInputs(decoder: String, target: String) throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let crashFile = "\(work)/crash.bin"
            let library = target.hasSuffix(".so") ? "\(Fixtures.buildDirectory)/\(target)" : target
            let run = try CLI.run(["fuzz", library, "--seeds", "\(Self.seeds)/\(decoder)", "--runs", "100000", "--seed", "20261202", "--crash-file", crashFile])
            let input = FileManager.default.contents(atPath: crashFile).map { Array($0) } ?? []
            #expect(run.status == 0, "\(decoder) crashed on \(input.count) bytes: \(input.prefix(256)) …\n\(run.stderr.suffix(2000))")
            #expect(run.stdout.contains("100000 inputs from"), "\(run.stdout)")
            #expect(!FileManager.default.fileExists(atPath: crashFile))
        }

        @Test func aLibraryWithoutAnEntryPointIsRefusedClearly() throws {
            let run = try CLI.run(["fuzz", "\(Fixtures.buildDirectory)/libFixtureDiscovery.so", "--runs", "10"])
            #expect(run.status != 0)
            #expect(run.stderr.contains("exports no kizuna_fuzz_one_input"), "\(run.stderr)")
        }
    }
}
