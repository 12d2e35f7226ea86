public import KizunaSDK
import Foundation

/// What a check works with: the subject, a runtime, test hosts and a scratch folder, all
/// cleaned up when the check ends.
public final class CheckEnvironment: Sendable {
    public let subject: PluginSubject
    public let runtime: RuntimeHandle
    /// A fresh folder for this check's files.
    public let directory: String
    private let hosts = Locked<[TestHost]>([])
    /// Inbound connections no plugin serves, from every host of the check.
    public let unclaimed = BoundedChannel<any Connection>(capacity: 256)
    /// A fresh DNS-SD service type, so discovery checks see only their own hosts.
    let serviceType = "_kzc\(UUID().uuidString.prefix(8).lowercased())._tcp"

    init(subject: PluginSubject, runtime: RuntimeHandle) {
        self.subject = subject
        self.runtime = runtime
        directory = NSTemporaryDirectory() + "kizuna-conformance-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// A new test host. The hosts of one check trust each other, as paired hosts do.
    public func host(_ name: String) -> TestHost {
        let hosts = hosts
        let trust = PeerTrust { peer in hosts.get().contains { $0.identity.id == peer } }
        let host = TestHost(name: name, runtime: runtime, unclaimed: unclaimed, identity: subject.identities?(), trust: trust)
        hosts.update { $0.append(host) }
        return host
    }

    /// The subject's settings with the ones checks set themselves.
    func settings(for host: TestHost) -> PluginSettings {
        var values = subject.settings.values
        switch subject.kind {
        case .fileTransfer:
            values["receive-dir"] = .string("\(directory)/\(host.identity.name)-received")
            values["accept"] = .string("auto")
        case .discovery where values["service-type"] != nil:
            values["service-type"] = .string(serviceType)
        default: break
        }
        return PluginSettings(values)
    }

    /// Starts the subject's transport on `host` if it needs one, then a fresh instance of
    /// the subject.
    @discardableResult
    public func startSubject(on host: TestHost) throws -> HostedPlugin {
        if subject.kind != .transport, let transport = subject.transport {
            try host.start(try transport.make(), name: transport.name, settings: transport.settings)
        }
        return try host.start(try subject.make(), name: subject.name, settings: settings(for: host), provides: subject.provides)
    }

    /// Fails unless the subject's kind needs no transport or one was given.
    func requireTransportIfNeeded() throws -> CheckOutcome? {
        guard subject.kind == .fileTransfer || subject.kind == .streaming, subject.transport == nil else { return nil }
        return .skipped("no transport was given to run it over")
    }

    func cleanUp() async {
        for host in hosts.get() { await host.close(grace: .seconds(2)) }
        unclaimed.finish()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Waits up to `limit` for an event on `bus` that `matches`.
func waitForEvent(on receiver: BroadcastReceiver<HostEvent>, within limit: Duration, _ matches: @escaping @Sendable (HostEvent) -> Bool) async -> Bool {
    let found = ShutdownSignal()
    let watcher = Task {
        for await message in receiver {
            if case .element(let event) = message, matches(event) {
                found.signal()
                return
            }
        }
    }
    let seen = await found.subscribe().wait(within: limit)
    watcher.cancel()
    return seen
}

/// `count` random bytes.
func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    var bytes = [UInt8](repeating: 0, count: count)
    for index in stride(from: 0, to: count, by: 8) {
        let word = generator.next() as UInt64
        for offset in 0..<min(8, count - index) { bytes[index + offset] = UInt8(truncatingIfNeeded: word >> (offset * 8)) }
    }
    return bytes
}
