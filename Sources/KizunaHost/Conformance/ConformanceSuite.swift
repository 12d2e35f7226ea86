import Foundation
import Glibc
public import KizunaPluginTestKit
import KizunaSDK

/// `kizuna conformance`: the conformance suite against a plugin build, each check in a
/// child process of its own with a time limit, so a crash or a hang is reported as such
/// and the suite goes on.
///
/// The library checks are the host's own (they need its loader); the rest come from the
/// SDK's test kit, the same checks plugin authors run from `swift test`.
public struct ConformanceSuite: Sendable {
    /// The plugin's manifest.
    public let manifest: PluginManifest
    /// The transport file-transfer and streaming plugins (and discovery plugins that need
    /// one) run over during the checks.
    public let transport: PluginManifest?

    /// Finds `nameOrPath` (a manifest path, or a plugin name in the search directories) and
    /// the transport to check it with (`transportName`, default `tcp-transport`, looked for
    /// in the plugin's folder first).
    public init(_ nameOrPath: String, transportName: String? = nil, configuration: HostConfiguration = HostConfiguration()) throws(PluginLoadError) {
        let found = try PluginSearch(directories: configuration.manifestDirectories, installDirectory: configuration.installDirectory).manifest(for: nameOrPath)
        manifest = found
        // The plugin's own folder is searched first for its transport, the built-in
        // plugins' manifests last.
        let folder = (found.path as NSString).deletingLastPathComponent
        let directories = [folder] + configuration.manifestDirectories + (configuration.builtinManifestsDirectory.map { [$0] } ?? [])
        let search = PluginSearch(directories: directories, installDirectory: configuration.installDirectory)
        if manifest.kind == .transport {
            transport = nil
        } else if let transportName {
            transport = try search.manifest(for: transportName)
        } else {
            transport = try? search.manifest(for: "tcp-transport")
        }
        self.search = search
    }

    private let search: PluginSearch

    /// A check's identity and what it checks.
    public struct Entry: Sendable, Codable, Hashable {
        public var id: String
        public var summary: String
    }

    static let libraryChecks: [Entry] = [
        Entry(id: "library.loads", summary: "the library opens with RTLD_NOW (every symbol resolves) and exports a plugin descriptor"),
        Entry(id: "library.versions", summary: "its descriptor ABI, SDK version and Swift compiler match this host's"),
        Entry(id: "library.single-sdk", summary: "it uses the host's KizunaSDK, not a copy of its own"),
        Entry(id: "library.matches-manifest", summary: "the kind in its descriptor is the manifest's"),
        Entry(id: "library.actions-resolve", summary: "every action the manifest declares names a symbol the library exports"),
    ]

    /// Every check for this plugin, in order.
    public var checks: [Entry] {
        Self.libraryChecks + Conformance.checks(for: manifest.kind).map { Entry(id: $0.id, summary: $0.summary) }
    }

    /// True if `id` is selected by `patterns`: an exact id, a group (`lifecycle`), or a
    /// shell pattern (`transport.*`).
    public static func matches(_ id: String, _ patterns: [String]) -> Bool {
        patterns.contains { id == $0 || id.hasPrefix($0 + ".") || fnmatch($0, id, 0) == 0 }
    }

    // MARK: In the child

    /// Runs check `id` in this process; the result.
    public func runHere(_ id: String, timeLimit: Duration) async -> CheckResult {
        let started = ContinuousClock.now
        if id.hasPrefix("library.") { return libraryCheck(id, started: started) }
        guard let check = Conformance.checks(for: manifest.kind).first(where: { $0.id == id }) else {
            return CheckResult(id: id, status: .failed, message: "no such check for a \(manifest.kind) plugin; `kizuna conformance --list` shows them", seconds: 0)
        }
        let library: PluginLibrary
        do {
            library = try PluginLibrary.open(manifest, path: try search.library(for: manifest))
        } catch {
            return CheckResult(id: id, status: .skipped, message: "the library does not load (see library.loads): \(error.message)", seconds: 0)
        }
        var subject = PluginSubject(
            name: manifest.name, kind: manifest.kind, settings: manifest.settings, provides: manifest.provides,
            identities: {
                let identity = DeviceIdentity.ephemeral()
                return (identity.peerID, identity.credentials)
            }
        ) { [manifest] in
            try library.makePlugin(for: manifest)
        }
        if let transport, manifest.kind != .transport, manifest.requiredKinds.contains(.transport) || manifest.kind == .fileTransfer || manifest.kind == .streaming {
            do {
                let transportLibrary = try PluginLibrary.open(transport, path: try search.library(for: transport))
                subject.transport = TransportSubject(name: transport.name, settings: transport.settings) { try transportLibrary.makePlugin(for: transport) }
            } catch {
                return CheckResult(id: id, status: .skipped, message: "the transport to check it over does not load: \(error)", seconds: 0)
            }
        }
        return await Conformance.run(check, subject, timeLimit: timeLimit)
    }

    private func libraryCheck(_ id: String, started: ContinuousClock.Instant) -> CheckResult {
        func result(_ status: CheckStatus, _ message: String = "") -> CheckResult {
            CheckResult(id: id, status: status, message: message, seconds: Double((ContinuousClock.now - started).components.attoseconds) / 1e18)
        }
        let library: PluginLibrary
        do {
            library = try PluginLibrary.open(manifest, path: try search.library(for: manifest))
        } catch {
            let owner: String =
                switch error.code {
                case .abiMismatch, .sdkMismatch, .compilerMismatch: "library.versions"
                case .duplicateSDK: "library.single-sdk"
                case .kindMismatch: "library.matches-manifest"
                default: "library.loads"
                }
            if id == owner { return result(.failed, error.message) }
            return result(.skipped, "the library was refused for another reason (\(owner)): \(error.message)")
        }
        switch id {
        case "library.loads": return result(.passed, library.descriptor.description)
        case "library.versions": return result(.passed, "SDK \(library.descriptor.sdkVersion), Swift \(library.descriptor.compilerVersion)")
        case "library.single-sdk", "library.matches-manifest": return result(.passed)
        case "library.actions-resolve":
            let missing = library.unresolvedActions(of: manifest)
            if manifest.actions.isEmpty { return result(.notApplicable, "the manifest declares no actions") }
            if missing.isEmpty { return result(.passed, "\(manifest.actions.count) action(s)") }
            return result(.failed, missing.map { "action '\($0.name)' names symbol '\($0.symbol)', which the library does not export" }.joined(separator: "; "))
        default: return result(.failed, "no such library check")
        }
    }
}
