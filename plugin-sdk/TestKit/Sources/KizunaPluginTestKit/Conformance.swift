public import KizunaSDK
import Foundation

/// The plugin conformance suite: checks any plugin build against the contract of its kind.
/// `kizuna conformance` runs each check in a child process of its own (so a crash or a
/// hang is reported as such); a plugin author runs the same checks from `swift test`:
///
/// ```swift
/// @Test func conformance() async throws {
///     let subject = PluginSubject(name: "my-transport", kind: .transport) { .transport(MyTransport()) }
///     for result in await Conformance.run(subject) { #expect(result.status.isSuccess, "\(result)") }
/// }
/// ```
public enum Conformance {
    /// Every check of the suite that applies to `kind`, in order.
    public static func checks(for kind: PluginKind) -> [ConformanceCheck] {
        lifecycleChecks + contractChecks.filter { $0.kinds.contains(kind) } + concurrencyChecks.filter { $0.kinds.contains(kind) }
    }

    static var contractChecks: [ConformanceCheck] { discoveryChecks + transportChecks + fileTransferChecks + streamingChecks }

    /// Runs the checks for `subject` (all that apply, or those `include` accepts) one after
    /// another, each within `timeLimit`, on a runtime of their own.
    public static func run(
        _ subject: PluginSubject, include: (ConformanceCheck) -> Bool = { _ in true }, timeLimit: Duration = .seconds(60)
    ) async -> [CheckResult] {
        var results: [CheckResult] = []
        for check in checks(for: subject.kind) where include(check) {
            results.append(await run(check, subject, timeLimit: timeLimit))
        }
        return results
    }

    /// Runs one check within `timeLimit`.
    public static func run(_ check: ConformanceCheck, _ subject: PluginSubject, timeLimit: Duration = .seconds(60)) async -> CheckResult {
        let started = ContinuousClock.now
        let runtime: AsyncRuntime
        do {
            var configuration = RuntimeConfiguration()
            configuration.threadNamePrefix = "kz-check"
            runtime = try AsyncRuntime(configuration: configuration)
        } catch {
            return CheckResult(id: check.id, status: .failed, message: "cannot start a runtime: \(error)", seconds: 0)
        }
        let environment = CheckEnvironment(subject: subject, runtime: runtime.handle)
        let outcome: CheckOutcome
        do {
            outcome = try await runtime.handle.spawn(timeout: timeLimit, name: check.id) { try await check.body(environment) }.value
        } catch let error as RuntimeError where error.code == .timedOut {
            outcome = CheckOutcome(.timedOut, "did not finish within \(timeLimit)")
        } catch let failure as CheckFailure {
            outcome = CheckOutcome(.failed, failure.message)
        } catch {
            outcome = CheckOutcome(.failed, "\(error)")
        }
        await environment.cleanUp()
        _ = await runtime.shutdown(gracePeriod: .seconds(2), cancellationGracePeriod: .seconds(1))
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return CheckResult(id: check.id, status: outcome.status, message: outcome.message, seconds: seconds)
    }
}

/// The plugin under test: how to make an instance, and what the host would give it.
public struct PluginSubject: Sendable {
    public var name: String
    public var kind: PluginKind
    /// The `[settings]` it runs with. Checks set a few of their own where the kind's
    /// contract names them: `receive-dir` and `accept` for file transfer, and a fresh
    /// `service-type` for discovery plugins that have one, so checks never see other hosts.
    public var settings: PluginSettings
    /// The services it provides (default: its kind).
    public var provides: [String]
    /// Makes a fresh instance, as the host does for every start.
    public var make: @Sendable () throws -> PluginObject
    /// The transport to run it over, for plugins that need one (file transfer, streaming,
    /// and discovery plugins that announce a transport's port).
    public var transport: TransportSubject?
    /// Makes an identity for each test host: a peer id and the certificate and key that
    /// prove it (``PluginContext/credentials``), for transports that authenticate hosts,
    /// such as the built-in TLS one. Without it, test hosts have random ids and give
    /// transports no credentials. (`kizuna conformance` gives each host a fresh key pair.)
    public var identities: (@Sendable () -> (id: PeerID, credentials: HostCredentials))?

    public init(
        name: String, kind: PluginKind, settings: PluginSettings = PluginSettings(), provides: [String] = [],
        transport: TransportSubject? = nil, identities: (@Sendable () -> (id: PeerID, credentials: HostCredentials))? = nil,
        make: @escaping @Sendable () throws -> PluginObject
    ) {
        self.identities = identities
        self.name = name
        self.kind = kind
        self.settings = settings
        self.provides = provides
        self.transport = transport
        self.make = make
    }
}

/// A transport for a subject that needs one.
public struct TransportSubject: Sendable {
    public var name: String
    public var settings: PluginSettings
    public var make: @Sendable () throws -> PluginObject

    public init(name: String, settings: PluginSettings = PluginSettings(), make: @escaping @Sendable () throws -> PluginObject) {
        self.name = name
        self.settings = settings
        self.make = make
    }
}

/// One check of the suite.
public struct ConformanceCheck: Sendable {
    /// A stable identifier such as `transport.round-trip`.
    public let id: String
    /// What it checks, in a sentence.
    public let summary: String
    /// The kinds it applies to.
    public let kinds: Set<PluginKind>
    let body: @Sendable (CheckEnvironment) async throws -> CheckOutcome

    init(_ id: String, _ summary: String, kinds: Set<PluginKind> = Set(PluginKind.allCases), _ body: @escaping @Sendable (CheckEnvironment) async throws -> CheckOutcome) {
        self.id = id
        self.summary = summary
        self.kinds = kinds
        self.body = body
    }
}

/// How a check ended.
///
/// `notApplicable` and `skipped` differ in what they say about the run: a check that does
/// not apply has nothing to check in this plugin (it declares no actions, it names no port
/// to send garbage to); a skipped check applies but could not run (no transport to run it
/// over), so the plugin is not shown to conform until it does.
public enum CheckStatus: String, Sendable, Codable, Hashable, CaseIterable {
    case passed, warning
    case notApplicable = "n/a"
    case skipped, failed, crashed
    case timedOut = "timed out"

    /// Passed, warned, not applicable or skipped: nothing in the plugin is known to be wrong.
    public var isSuccess: Bool { self == .passed || self == .warning || self == .notApplicable || self == .skipped }
}

/// A check's result.
public struct CheckResult: Sendable, Codable, Hashable, CustomStringConvertible {
    public var id: String
    public var status: CheckStatus
    public var message: String
    public var seconds: Double

    public init(id: String, status: CheckStatus, message: String, seconds: Double) {
        self.id = id
        self.status = status
        self.message = message
        self.seconds = seconds
    }

    public var description: String { "\(id): \(status.rawValue)\(message.isEmpty ? "" : " — \(message)")" }
}

/// What a check's body returns; throwing ``CheckFailure`` (or any error) fails it.
public struct CheckOutcome: Sendable {
    var status: CheckStatus
    var message: String
    init(_ status: CheckStatus, _ message: String = "") {
        self.status = status
        self.message = message
    }
    static func passed(_ message: String = "") -> CheckOutcome { CheckOutcome(.passed, message) }
    static func warning(_ message: String) -> CheckOutcome { CheckOutcome(.warning, message) }
    static func skipped(_ message: String) -> CheckOutcome { CheckOutcome(.skipped, message) }
    static func notApplicable(_ message: String) -> CheckOutcome { CheckOutcome(.notApplicable, message) }
}

/// A check that found the plugin wrong, and how.
struct CheckFailure: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Fails the check with `message` unless `condition` holds.
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws(CheckFailure) {
    if !condition { throw CheckFailure(message()) }
}
