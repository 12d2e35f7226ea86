// The built-in discovery: announces this host as a DNS-SD service over multicast DNS and
// browses for the others. It speaks the protocol other implementations speak (Avahi,
// Bonjour, python-zeroconf): PTR, SRV, TXT and A records, their TTLs, probing for its
// names, and a goodbye (the same records with TTL 0) when it stops; on every interface
// that is up unless told otherwise.
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
        let interfaces = InterfaceFollower(context: context, choice: options.interface, transportHost: address.host)
        // A socket for each family the transport serves; a machine without IPv6 runs on IPv4.
        var sockets: [AddressFamily: MulticastSocket] = [:]
        var failures: [String] = []
        for family in interfaces.families {
            do {
                sockets[family] = try MulticastSocket(port: options.port, family: family)
            } catch {
                failures.append(error.description)
            }
        }
        guard !sockets.isEmpty else { throw DiscoveryError(failures.joined(separator: "; ")) }
        for failure in failures { context.logger.warning("\(failure); discovery runs on \(sockets.keys.map(\.description).sorted().joined(separator: ", ")) only") }
        let responder = Responder(context: context, options: options, sockets: sockets, port: UInt16(address.port), peers: peers)
        activeResponder.withLock { $0 = responder }
        defer { activeResponder.withLock { if $0 === responder { $0 = nil } } }
        context.logger.info(
            "discovery starts", metadata: ["instance": "\(responder.instanceName)", "interface": "\(options.interface)", "port": "\(options.port)"])

        let all = Array(sockets.values)
        let listener = try context.runtime.spawnBlocking(name: "mdns receive") {
            while !responder.isStopping {
                if let (socket, datagram) = MulticastSocket.receive(from: all, timeoutMilliseconds: min(200, responder.millisecondsUntilDue())) {
                    responder.handle(datagram, family: socket.family)
                }
                responder.sendDue()
            }
        }
        // Each interface probes for this host's names, then announces them twice a second
        // apart (RFC 6762, 8.); queries go out at 0, 1, 3, 7, 15 and 31 s (intervals
        // doubling, 5.2), then every query interval; each second records expire or are
        // refreshed, and every two the interfaces are looked at again.
        var tick = 0
        var announcedServices = context.host.services
        interfaces.follow(responder)
        responder.query()
        context.ready()
        while !(await context.shutdown.wait(within: .seconds(1))) {
            tick += 1
            let services = context.host.services
            if services != announcedServices {
                announcedServices = services
                responder.announceAgain()
            }
            if tick % 2 == 0 { interfaces.follow(responder) }
            if [1, 3, 7, 15, 31].contains(tick) || tick % options.queryInterval == 0 { responder.query() }
            responder.expire()
        }
        responder.stop()
        _ = try? await listener.value
        responder.sendGoodbye()
        responder.forgetPeers()
    }
}

/// Chooses the interfaces discovery runs on, again each time it is asked, and logs what
/// changes. The transport decides the families (listening on `::`: IPv4 and IPv6; on
/// `0.0.0.0`: IPv4), and a transport that listens on one address keeps discovery to the
/// interface that has it, so discovery never announces an address the transport does not
/// serve.
final class InterfaceFollower: Sendable {
    private let context: PluginContext
    private let choice: InterfaceChoice
    /// The transport's own address, when it listens on one rather than on all.
    private let transportAddress: IPAddress?
    let families: [AddressFamily]
    private let warned = Mutex<Set<String>>([])

    init(context: PluginContext, choice: InterfaceChoice, transportHost: String) {
        self.context = context
        self.choice = choice
        let host = transportHost == "localhost" ? "127.0.0.1" : String(transportHost.filter { $0 != "[" && $0 != "]" })
        if let v4 = ipv4Address(host) {
            transportAddress = v4 == 0 ? nil : .v4(v4)
            families = [.v4]
        } else if let v6 = ipv6Address(host) {
            transportAddress = v6 == IPv6Address(bytes: [UInt8](repeating: 0, count: 16)) ? nil : .v6(v6)
            families = transportAddress == nil ? [.v4, .v6] : [.v6]
        } else {
            transportAddress = nil
            families = [.v4, .v6]
        }
    }

    private func warnOnce(_ key: String, _ message: @autoclosure () -> String) {
        guard warned.withLock({ $0.insert(key).inserted }) else { return }
        context.logger.warning("\(message())")
    }

    func chosen() -> [(interface: NetworkInterface, family: AddressFamily)] {
        let all = currentInterfaces()
        var (chosen, missing) = choice.select(from: all)
        for entry in missing {
            warnOnce("missing \(entry)", "no interface \(entry) is up; discovery runs on it once it is (interfaces up now: \(all.map(\.name).joined(separator: ", ")))")
        }
        if let transportAddress {
            let served = all.filter { interface in
                if case .v4(let value) = transportAddress, value >> 24 == 127 { return interface.isLoopback }
                return interface.has(transportAddress)
            }
            if served.isEmpty {
                warnOnce("unserved", "the transport listens on \(transportAddress), which no interface has; discovery announces nothing until one has it")
            } else if case .listed = choice, !served.allSatisfy(chosen.contains) {
                warnOnce("narrowed", "the transport listens on \(transportAddress) only, so discovery runs on \(served.map(\.name).joined(separator: ", ")) and not on the interfaces set in 'interface'; set the transport's listen-host to :: to serve them all")
            }
            chosen = served
        }
        return chosen.flatMap { interface in interface.families.filter(families.contains).map { (interface, $0) } }
    }

    /// Points `responder` at the interfaces chosen now.
    func follow(_ responder: Responder) {
        let (joined, left, failed) = responder.use(chosen())
        for link in joined { context.logger.info("discovery runs on \(link)") }
        for link in left { context.logger.info("discovery no longer runs on \(link)") }
        for failure in failed { warnOnce(failure, failure) }
    }
}

struct Options: Sendable {
    var interface = InterfaceChoice.automatic
    var port: UInt16 = 5353
    var serviceType = DNSName("_kizuna._tcp")
    var queryInterval = 60
    var hostTTL: UInt32 = 120
    var otherTTL: UInt32 = 4500

    static let schema = SettingsSchema(
        plugin: "mdns-discovery",
        ["interface": .strings, "port": .integer, "service-type": .string, "query-interval-seconds": .integer, "host-ttl-seconds": .integer])

    init(_ settings: PluginSettings) throws(DiscoveryError) {
        if let refusal = Self.schema.refusal(of: settings) { throw DiscoveryError(refusal) }
        switch settings.values["interface"] {
        case .string(let value): interface = try InterfaceChoice(parsing: [value])
        case .array(let values): interface = try InterfaceChoice(parsing: values.compactMap { if case .string(let text) = $0 { text } else { nil } })
        default: break
        }
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
        if let seconds = settings.integer("host-ttl-seconds") {
            guard (5...4500).contains(seconds) else {
                throw DiscoveryError("setting 'host-ttl-seconds' is \(seconds); give 5 to 4500 (RFC 6762 recommends 120)")
            }
            hostTTL = UInt32(seconds)
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

/// `violations`: packets dropped for breaking the protocol: they did not parse, or came
/// from off the link or (responses) not from the mDNS port.
@_cdecl("kizuna_mdns_violations") public func kizunaMDNSViolations() -> UInt64 {
    guard let responder = activeResponder.withLock({ $0 }) else { return 0 }
    return responder.malformed.load(ordering: .relaxed) + responder.refusedSources.load(ordering: .relaxed)
}

/// `malformed-packets`: packets dropped because they did not parse.
@_cdecl("kizuna_mdns_malformed_packets") public func kizunaMDNSMalformedPackets() -> UInt64 {
    activeResponder.withLock { $0 }?.malformed.load(ordering: .relaxed) ?? 0
}

@_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { MDNSDiscovery() } }
