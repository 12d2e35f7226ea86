// The built-in discovery: announces this host as a DNS-SD service over multicast DNS and
// browses for the others. It speaks the protocol other implementations speak (Avahi,
// Bonjour, python-zeroconf): PTR, SRV, TXT and A records, their TTLs, and a goodbye
// (the same records with TTL 0) when it stops.
import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

final class MDNSDiscovery: DiscoveryPlugin {
    private let peers = PeerTable()

    func currentPeers() async -> [Peer] { peers.table.withLock { $0.values.sorted { $0.id.rawValue < $1.id.rawValue } } }

    func run(context: PluginContext) async throws {
        let options = try Options(context.settings)
        guard let transport = context.transport, let address = await transport.listeningAddress() else {
            throw DiscoveryError("there is no running transport to announce; discovery announces the port its transport listens on")
        }
        let socket: MulticastSocket
        do {
            socket = try MulticastSocket(interface: options.interface, port: options.port)
        } catch {
            throw DiscoveryError(error.description)
        }
        let responder = Responder(context: context, options: options, socket: socket, port: UInt16(address.port), peers: peers)
        activeResponder.withLock { $0 = responder }
        defer { activeResponder.withLock { if $0 === responder { $0 = nil } } }
        context.logger.info("announcing", metadata: ["instance": "\(responder.instanceName)", "interface": "\(options.interface)", "port": "\(options.port)"])

        let listener = try context.runtime.spawnBlocking(name: "mdns receive") {
            while !responder.isStopping {
                if let (packet, source) = socket.receive(timeoutMilliseconds: 200) { responder.handle(packet, from: source) }
            }
        }
        // Announce twice a second apart (RFC 6762, 8.3); query at 0, 1, 3, 7, 15 and 31 s
        // (intervals doubling, 5.2), then every query interval; expire records and follow
        // service changes each second.
        var tick = 0
        var announcedServices = context.host.services
        responder.announce()
        responder.query()
        context.ready()
        while !(await context.shutdown.wait(within: .seconds(1))) {
            tick += 1
            let services = context.host.services
            if tick == 1 || services != announcedServices {
                announcedServices = services
                responder.announce()
            }
            if [1, 3, 7, 15, 31].contains(tick) || tick % options.queryInterval == 0 { responder.query() }
            responder.expire()
        }
        responder.stop()
        _ = try? await listener.value
        responder.sendGoodbye()
        responder.forgetPeers()
    }
}

struct Options: Sendable {
    var interface = "127.0.0.1"
    var port: UInt16 = 5353
    var serviceType = DNSName("_kizuna._tcp.local")
    var queryInterval = 60
    var hostTTL: UInt32 = 120
    var otherTTL: UInt32 = 4500

    static let schema = SettingsSchema(
        plugin: "mdns-discovery", ["interface": .string, "port": .integer, "service-type": .string, "query-interval-seconds": .integer])

    init(_ settings: PluginSettings) throws(DiscoveryError) {
        if let refusal = Self.schema.refusal(of: settings) { throw DiscoveryError(refusal) }
        if let interface = settings.string("interface") { self.interface = interface }
        if let port = settings.integer("port") {
            guard (1...65535).contains(port) else { throw DiscoveryError("setting 'port' is \(port); give a UDP port from 1 to 65535 (mDNS uses 5353)") }
            self.port = UInt16(port)
        }
        if let type = settings.string("service-type") {
            let labels = type.split(separator: ".").map(String.init)
            guard labels.count == 2, labels[0].hasPrefix("_"), ["_tcp", "_udp"].contains(labels[1]) else {
                throw DiscoveryError("setting 'service-type' is '\(type)'; give a DNS-SD service type such as _kizuna._tcp")
            }
            serviceType = DNSName(labels + ["local"])
        }
        if let seconds = settings.integer("query-interval-seconds") {
            guard seconds >= 1 else { throw DiscoveryError("setting 'query-interval-seconds' is \(seconds); give at least 1") }
            queryInterval = Int(seconds)
        }
    }
}

struct DiscoveryError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The running responder of the plugin instance that is running, for the actions.
let activeResponder = Mutex<Responder?>(nil)

/// `rescan`: asks every responder on the link to announce itself again.
@_cdecl("kizuna_mdns_rescan") public func kizunaMDNSRescan() -> Bool {
    guard let responder = activeResponder.withLock({ $0 }) else { return false }
    responder.query()
    return true
}

/// `peer-count`: the peers found right now.
@_cdecl("kizuna_mdns_peer_count") public func kizunaMDNSPeerCount() -> Int64 {
    Int64(activeResponder.withLock { $0 }?.peerCount ?? 0)
}

/// `malformed-packets`: packets dropped because they did not parse.
@_cdecl("kizuna_mdns_malformed_packets") public func kizunaMDNSMalformedPackets() -> UInt64 {
    activeResponder.withLock { $0 }?.malformed.load(ordering: .relaxed) ?? 0
}

@_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { MDNSDiscovery() } }
