// Test fixture: a discovery plugin that "finds" the peers listed in its settings
// (`peers = ["id@host:port", …]`) when it starts and loses them when it stops.
import Glibc
import KizunaSDK
import Synchronization

final class FixtureDiscovery: DiscoveryPlugin {
    private let found = ThreadSafe<[Peer]>([])

    func run(context: PluginContext) async throws {
        var peers: [Peer] = []
        if case .array(let entries) = context.settings.values["peers"] {
            for case .string(let entry) in entries {
                let parts = entry.split(separator: "@")
                let address = parts.last.map { $0.split(separator: ":") } ?? []
                let port = address.count == 2 ? Int(address[1]) ?? 0 : 0
                peers.append(Peer(id: PeerID(String(parts[0])), name: String(parts[0]), addresses: [PeerAddress(host: String(address.first ?? "127.0.0.1"), port: port)]))
            }
        }
        try await found.write { $0 = peers }
        for peer in peers { context.events.publish(.peerFound(peer)) }
        context.logger.info("fixture discovery announcing", metadata: ["peers": "\(peers.count)"])
        context.ready()
        await context.shutdown.wait()
        for peer in peers { context.events.publish(.peerLost(peer.id)) }
    }

    func currentPeers() async -> [Peer] { (try? await found.read { $0 }) ?? [] }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureDiscovery() } }

// Actions: plain C functions the tests (and the demo host's manifest) declare, one per
// parameter and result type, a mixed signature, and a void one whose effect is observable.
@_cdecl("fixture_add_int8") public func fixtureAddInt8(_ a: Int8, _ b: Int8) -> Int8 { a &+ b }
@_cdecl("fixture_add_int16") public func fixtureAddInt16(_ a: Int16, _ b: Int16) -> Int16 { a &+ b }
@_cdecl("fixture_add_int32") public func fixtureAddInt32(_ a: Int32, _ b: Int32) -> Int32 { a &+ b }
@_cdecl("fixture_add_int64") public func fixtureAddInt64(_ a: Int64, _ b: Int64) -> Int64 { a &+ b }
@_cdecl("fixture_add_uint8") public func fixtureAddUInt8(_ a: UInt8, _ b: UInt8) -> UInt8 { a &+ b }
@_cdecl("fixture_add_uint16") public func fixtureAddUInt16(_ a: UInt16, _ b: UInt16) -> UInt16 { a &+ b }
@_cdecl("fixture_add_uint32") public func fixtureAddUInt32(_ a: UInt32, _ b: UInt32) -> UInt32 { a &+ b }
@_cdecl("fixture_add_uint64") public func fixtureAddUInt64(_ a: UInt64, _ b: UInt64) -> UInt64 { a &+ b }
@_cdecl("fixture_scale") public func fixtureScale(_ value: Double, _ factor: Double) -> Double { value * factor }
@_cdecl("fixture_not") public func fixtureNot(_ value: Bool) -> Bool { !value }
/// Returns a malloc'd string: the host frees it.
@_cdecl("fixture_greet") public func fixtureGreet(_ name: UnsafePointer<CChar>) -> UnsafeMutablePointer<CChar> {
    strdup("hello, \(String(cString: name))")!
}
@_cdecl("fixture_describe")
public func fixtureDescribe(_ a: Int8, _ b: UInt16, _ c: Int64, _ d: Double, _ flag: Bool, _ text: UnsafePointer<CChar>) -> UnsafeMutablePointer<CChar> {
    strdup("\(a) \(b) \(c) \(d) \(flag) \(String(cString: text))")!
}
let touches = Atomic<UInt64>(0)
@_cdecl("fixture_touch") public func fixtureTouch() { touches.wrappingAdd(1, ordering: .relaxed) }
@_cdecl("fixture_touches") public func fixtureTouches() -> UInt64 { touches.load(ordering: .relaxed) }
/// Holds its caller until fixture_release (or 10 seconds, so a fixture never holds a process
/// forever): lets a test see a call in progress. fixture_rearm closes the gate again.
let released = Atomic<Bool>(false)
@_cdecl("fixture_wait") public func fixtureWait() {
    let limit = ContinuousClock.now + .seconds(10)
    while !released.load(ordering: .acquiring) && ContinuousClock.now < limit { sched_yield() }
}
@_cdecl("fixture_release") public func fixtureRelease() { released.store(true, ordering: .releasing) }
@_cdecl("fixture_rearm") public func fixtureRearm() { released.store(false, ordering: .releasing) }
