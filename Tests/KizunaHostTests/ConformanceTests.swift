import Foundation
import KizunaHost
import KizunaPluginTestKit
import KizunaSDK
import Testing

/// `kizuna conformance` (the real binary, each check in a child process) on the built-in
/// plugins, which pass, and on deliberately broken fixtures, which fail the right checks
/// with the right status and message.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(4))) struct ConformanceTests {
        static let fixtures = "\(BuiltinHost.repository)/Tests/Fixtures/conformance"

        struct Report: Decodable {
            var plugin: String
            var kind: PluginKind
            var results: [CheckResult]

            func status(_ id: String) -> CheckStatus? { results.first { $0.id == id }?.status }
            func message(_ id: String) -> String { results.first { $0.id == id }?.message ?? "" }
        }

        func conformance(_ arguments: [String]) throws -> (status: Int32, report: Report?, stderr: String) {
            let outcome = try CLI.run(["conformance"] + arguments + ["--json"])
            return (outcome.status, try? JSONDecoder().decode(Report.self, from: Data(outcome.stdout.utf8)), outcome.stderr)
        }

        @Test(arguments: ["tcp-transport", "mdns-discovery", "file-transfer", "streaming"])
        func everyBuiltInPluginPasses(_ name: String) throws {
            // The built-in manifests, with the transport (and so discovery) on loopback.
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let (status, report, stderr) = try conformance(["\(plugins)/\(name).toml"])
            let results = try #require(report?.results, "\(stderr)")
            #expect(status == 0, "\(results.filter { !$0.status.isSuccess })")
            #expect(results.count >= 12)
            for result in results {
                #expect(result.status == .passed || result.id == "library.actions-resolve" && result.status == .notApplicable, "\(result)")
            }
            #expect(results.contains { $0.id == "concurrency.concurrent-calls" })
        }

        @Test func aCrashInRunIsReportedAsACrashAndTheSuiteGoesOn() throws {
            let (status, report, _) = try conformance(["\(Self.fixtures)/crashes-in-run.toml", "--include", "library.loads", "--include", "lifecycle.starts", "--include", "concurrency"])
            let found = try #require(report)
            #expect(status == 1)
            #expect(found.status("library.loads") == .passed)
            #expect(found.status("lifecycle.starts") == .crashed)
            #expect(found.message("lifecycle.starts").contains("Fatal error: fixture: crashes in run"))
            #expect(found.status("concurrency.concurrent-calls") == .crashed)  // every check got its turn
        }

        @Test func aPluginThatHangsOnShutdownFailsOrTimesOut() throws {
            let (status, report, _) = try conformance(["\(Self.fixtures)/never-returns.toml", "--include", "lifecycle.stops-within-grace"])
            #expect(status == 1)
            #expect(report?.status("lifecycle.stops-within-grace") == .failed)
            #expect(report?.message("lifecycle.stops-within-grace").contains("never returned, not even after its tasks were cancelled") == true)

            let (_, short, _) = try conformance(["\(Self.fixtures)/never-returns.toml", "--include", "lifecycle.stops-within-grace", "--timeout", "2"])
            #expect(short?.status("lifecycle.stops-within-grace") == .timedOut)
        }

        @Test func aPluginThatNeverReportsReadyFailsToStart() throws {
            let (status, report, _) = try conformance(["\(Self.fixtures)/never-ready.toml", "--include", "lifecycle.starts"])
            #expect(status == 1)
            #expect(report?.status("lifecycle.starts") == .failed)
            #expect(report?.message("lifecycle.starts") == "run did not call context.ready() within 10 s; a host stops such a plugin and reports it failed")
        }

        @Test func leakedTasksAreNamed() throws {
            let (status, report, _) = try conformance(["\(Self.fixtures)/leaks-tasks.toml", "--include", "lifecycle"])
            #expect(status == 1)
            #expect(report?.status("lifecycle.stops-within-grace") == .passed)
            #expect(report?.status("lifecycle.no-leftover-tasks") == .failed)
            let message = report?.message("lifecycle.no-leftover-tasks") ?? ""
            #expect(message.contains("2 task(s) still running") && message.contains("leaky-scan") && message.contains("leaky-timer"), "\(message)")
        }

        @Test func transportsThatCorruptDataOrIgnoreBackpressureFailThoseChecks() throws {
            let (goodStatus, good, _) = try conformance(["\(Self.fixtures)/good-memory-transport.toml", "--exclude", "library"])
            #expect(goodStatus == 0)
            #expect(good?.results.allSatisfy { $0.status == .passed } == true, "\(good?.results ?? [])")

            let (corruptStatus, corrupt, _) = try conformance(["\(Self.fixtures)/corrupting-transport.toml", "--include", "transport"])
            #expect(corruptStatus == 1)
            #expect(corrupt?.status("transport.round-trip") == .failed)
            #expect(corrupt?.message("transport.round-trip") == "a 1000-byte message arrived changed")
            #expect(corrupt?.status("transport.closes-cleanly") == .passed)

            let (unboundedStatus, unbounded, _) = try conformance(["\(Self.fixtures)/unbounded-transport.toml", "--include", "transport.backpressure"])
            #expect(unboundedStatus == 1)
            #expect(unbounded?.status("transport.backpressure") == .failed)
            #expect(unbounded?.message("transport.backpressure").contains("send does not wait for the reader") == true)
        }

        @Test func everyDeclaredActionMustResolve() throws {
            let (status, report, _) = try conformance(["\(Self.fixtures)/missing-action.toml", "--include", "library"])
            #expect(status == 1)
            #expect(report?.status("library.loads") == .passed)
            #expect(report?.status("library.actions-resolve") == .failed)
            #expect(report?.message("library.actions-resolve") == "action 'vanish' names symbol 'fixture_no_such_symbol', which the library does not export")
        }

        @Test func checksAreListedSelectedAndRefusedClearly() throws {
            let listed = try CLI.run(["conformance", "\(BuiltinHost.repository)/manifests/tcp-transport.toml", "--list", "--exclude", "library"])
            #expect(listed.status == 0)
            #expect(listed.stdout.contains("transport.backpressure"))
            #expect(!listed.stdout.contains("library.loads"))
            #expect(!listed.stdout.contains("file-transfer."))

            let none = try CLI.run(["conformance", "\(BuiltinHost.repository)/manifests/tcp-transport.toml", "--include", "nothing-like-this"])
            #expect(none.status != 0)
            #expect(none.stderr.contains("no check matches --include/--exclude"))

            let missing = try CLI.run(["conformance", "no-such-plugin", "--plugins-dir", Fixtures.temporaryDirectory()])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("no manifest for this plugin"))
        }

        /// A plugin whose folder holds no transport is checked over the built-in one that came
        /// with this `kizuna`; a transport that cannot run skips the checks that need it, and
        /// a run with skipped checks fails unless `--allow-skipped` says a partial run will do.
        @Test func skippedChecksFailTheRunUnlessAllowed() throws {
            let folder = Fixtures.temporaryDirectory()
            let empty = Fixtures.temporaryDirectory()
            let manifest = "\(folder)/file-transfer.toml"
            try FileManager.default.copyItem(atPath: "\(BuiltinHost.repository)/manifests/file-transfer.toml", toPath: manifest)
            let found = try CLI.run(["conformance", manifest, "--plugins-dir", empty, "--include", "file-transfer.integrity"])
            #expect(found.status == 0, "\(found.stdout)\(found.stderr)")
            #expect(found.stdout.contains("PASSED    file-transfer.integrity"), "\(found.stdout)")

            // A transport whose library is missing: every check over it is skipped.
            let broken = "\(folder)/broken-transport.toml"
            try """
                schema = 1
                name = "broken-transport"
                version = "0.1.0"
                kind = "transport"
                library = "libNoSuchTransport.so"
                """.write(toFile: broken, atomically: true, encoding: .utf8)
            let skipped = try CLI.run(["conformance", manifest, "--plugins-dir", empty, "--transport", broken, "--include", "file-transfer"])
            #expect(skipped.status == 1, "\(skipped.stdout)\(skipped.stderr)")
            let lines = skipped.stdout.split(separator: "\n").filter { $0.hasPrefix("SKIPPED") }
            #expect(lines.count >= 2, "\(skipped.stdout)")
            #expect(lines.first?.contains("the transport to check it over does not load") == true, "\(skipped.stdout)")
            #expect(lines.dropFirst().allSatisfy { $0.hasSuffix("(the same reason)") }, "\(skipped.stdout)")
            #expect(skipped.stderr.contains("checks were skipped, so the plugin is not shown to conform"), "\(skipped.stderr)")
            #expect(skipped.stderr.contains("--transport"), "\(skipped.stderr)")

            let allowed = try CLI.run(["conformance", manifest, "--plugins-dir", empty, "--transport", broken, "--include", "file-transfer", "--allow-skipped"])
            #expect(allowed.status == 0, "\(allowed.stdout)\(allowed.stderr)")
        }

        /// The test kit used directly, as a plugin author's `swift test` would: a fixture
        /// library's plugin run through one check in this process.
        @Test func theTestKitRunsChecksInProcess() async throws {
            let manifest = try PluginManifest(contentsOf: "\(Self.fixtures)/corrupting-transport.toml")
            let library = try PluginLibrary.open(manifest, path: Fixtures.library("FixtureFaultyTransport"))
            let subject = PluginSubject(name: "corrupting", kind: .transport, settings: manifest.settings) { try library.makePlugin(for: manifest) }
            let results = await Conformance.run(subject, include: { $0.id == "transport.round-trip" || $0.id == "lifecycle.starts" })
            #expect(results.map(\.id) == ["lifecycle.starts", "transport.round-trip"])
            #expect(results.map(\.status) == [.passed, .failed])
        }
    }
}
