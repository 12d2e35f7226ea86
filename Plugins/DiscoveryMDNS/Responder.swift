import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

/// Answers questions about this host, and keeps what it hears of other instances of the
/// service type until they expire or say goodbye; instances complete enough to reach
/// (an SRV record and an address for its target) are published as peers.
final class Responder: Sendable {
    let instanceName: DNSName
    private let context: PluginContext
    private let options: Options
    private let socket: MulticastSocket
    private let port: UInt16
    private let hostTarget: DNSName
    private let interfaceAddress: UInt32
    private let peers: PeerTable
    private let cache = Mutex(Cache())
    private let stopping = Atomic(false)
    /// Packets dropped because they did not parse.
    let malformed = Atomic<UInt64>(0)

    private struct Cache {
        var instances: [DNSName: Instance] = [:]
        var addresses: [DNSName: Expiring<UInt32>] = [:]
    }

    private struct Instance {
        var pointer: Expiring<Void>?
        var service: Expiring<(target: DNSName, port: UInt16)>?
        var text: Expiring<[String: String]>?
        var lastQuery: ContinuousClock.Instant?
    }

    /// The longest a record heard is kept, whatever TTL its sender chose: the longest TTL
    /// RFC 6762 recommends (10.), for records other than host addresses.
    static let maxTTL: UInt32 = 4500
    /// The most instances and host addresses kept; once full, new names are ignored until
    /// old ones expire, so that no sender can make the cache grow without bound.
    static let maxCachedNames = 512

    private struct Expiring<Value> {
        var value: Value
        var expires: ContinuousClock.Instant
        init(_ value: Value, ttl: UInt32) {
            self.value = value
            expires = .now + .seconds(Int(min(ttl, Responder.maxTTL)))
        }
    }

    init(context: PluginContext, options: Options, socket: MulticastSocket, port: UInt16, peers: PeerTable) {
        self.context = context
        self.options = options
        self.socket = socket
        self.port = port
        self.peers = peers
        let id = context.host.id.rawValue
        // The name is cut to the 63 bytes a label holds, on a character boundary, keeping
        // the id's prefix that tells hosts of the same name apart.
        let suffix = "-\(id.prefix(8))"
        let label = String(decoding: utf8Prefix(context.host.name, maxBytes: 63 - suffix.utf8.count), as: UTF8.self) + suffix
        instanceName = options.serviceType.prepending(label)
        hostTarget = DNSName(["kizuna-\(id)", "local"])
        interfaceAddress = ipv4Value(options.interface)
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    var peerCount: Int { peers.table.withLock { $0.count } }
    func stop() { stopping.store(true, ordering: .releasing) }

    // MARK: Sending

    private func records(ttl: UInt32?) -> (pointer: ResourceRecord, service: ResourceRecord, text: ResourceRecord, address: ResourceRecord) {
        let host = context.host
        let text: [String: String] = ["id": host.id.rawValue, "name": host.name, "version": host.version, "services": host.services.joined(separator: ",")]
        return (
            ResourceRecord(name: options.serviceType, type: .ptr, cacheFlush: false, ttl: ttl ?? options.otherTTL, data: .ptr(instanceName)),
            ResourceRecord(name: instanceName, type: .srv, cacheFlush: true, ttl: ttl ?? options.hostTTL, data: .srv(priority: 0, weight: 0, port: port, target: hostTarget)),
            ResourceRecord(name: instanceName, type: .txt, cacheFlush: true, ttl: ttl ?? options.otherTTL, data: .txt(text)),
            ResourceRecord(name: hostTarget, type: .a, cacheFlush: true, ttl: ttl ?? options.hostTTL, data: .a(interfaceAddress)))
    }

    /// Tells the link about this host, unasked.
    func announce() {
        let all = records(ttl: nil)
        socket.send(DNSMessage(isResponse: true, answers: [all.pointer, all.service, all.text, all.address]).encoded())
    }

    /// Withdraws this host: its records with TTL 0.
    func sendGoodbye() {
        let all = records(ttl: 0)
        socket.send(DNSMessage(isResponse: true, answers: [all.pointer, all.service, all.text, all.address]).encoded())
    }

    /// Asks for every instance of the service type.
    func query() {
        socket.send(DNSMessage(isResponse: false, questions: [Question(name: options.serviceType, type: .ptr)]).encoded())
    }

    // MARK: Receiving

    func handle(_ packet: [UInt8], from source: UInt32) {
        let message: DNSMessage
        do {
            message = try DNSMessage(parsing: packet)
        } catch {
            malformed.add(1, ordering: .relaxed)
            context.logger.debug("dropped a malformed mDNS packet", metadata: ["from": "\(dottedQuad(source))", "reason": "\(error)"])
            return
        }
        if message.isResponse {
            learn(message.answers + message.additionals)
        } else if !message.questions.isEmpty {
            answer(message.questions)
        }
    }

    private func answer(_ questions: [Question]) {
        let all = records(ttl: nil)
        var answers: [ResourceRecord] = []
        var additionals: [ResourceRecord] = []
        for question in questions {
            let any = question.type == .any
            if question.name == options.serviceType, question.type == .ptr || any {
                answers.append(all.pointer)
                additionals += [all.service, all.text, all.address]
            } else if question.name == instanceName {
                if question.type == .srv || any { answers.append(all.service) }
                if question.type == .txt || any { answers.append(all.text) }
                additionals.append(all.address)
            } else if question.name == hostTarget, question.type == .a || any {
                answers.append(all.address)
            } else if question.name == DNSName("_services._dns-sd._udp.local"), question.type == .ptr || any {
                answers.append(ResourceRecord(name: question.name, type: .ptr, cacheFlush: false, ttl: options.otherTTL, data: .ptr(options.serviceType)))
            }
        }
        guard !answers.isEmpty else { return }
        additionals.removeAll { answers.contains($0) }
        var unique: [ResourceRecord] = []
        for record in additionals where !unique.contains(record) { unique.append(record) }
        socket.send(DNSMessage(isResponse: true, answers: answers, additionals: unique).encoded())
    }

    /// Instances are the names one label under the service type.
    private func isInstance(_ name: DNSName) -> Bool {
        name.labels.count == options.serviceType.labels.count + 1 && DNSName(Array(name.labels.dropFirst())) == options.serviceType
    }

    private func learn(_ records: [ResourceRecord]) {
        cache.withLock { cache in
            for record in records {
                // The name the record would add to the cache: a pointer adds its instance.
                var name = record.name
                if case .ptr(let instance) = record.data { name = instance }
                if record.ttl != 0, cache.instances[name] == nil, cache.addresses[name] == nil,
                    cache.instances.count + cache.addresses.count >= Self.maxCachedNames
                {
                    continue
                }
                switch record.data {
                case .ptr(let instance) where record.name == options.serviceType && isInstance(instance) && instance != instanceName:
                    cache.instances[instance, default: Instance()].pointer = record.ttl == 0 ? nil : Expiring((), ttl: record.ttl)
                case .srv(_, _, let port, let target) where isInstance(record.name) && record.name != instanceName:
                    cache.instances[record.name, default: Instance()].service = record.ttl == 0 ? nil : Expiring((target, port), ttl: record.ttl)
                case .txt(let entries) where isInstance(record.name) && record.name != instanceName:
                    cache.instances[record.name, default: Instance()].text = record.ttl == 0 ? nil : Expiring(entries, ttl: record.ttl)
                case .a(let address):
                    cache.addresses[record.name] = record.ttl == 0 ? nil : Expiring(address, ttl: record.ttl)
                default:
                    break
                }
            }
        }
        reconcile()
    }

    /// Drops what has expired, then publishes the changes.
    func expire() {
        let now = ContinuousClock.now
        cache.withLock { cache in
            cache.addresses = cache.addresses.filter { $0.value.expires > now }
            for (name, var instance) in cache.instances {
                if let pointer = instance.pointer, pointer.expires <= now { instance.pointer = nil }
                if let service = instance.service, service.expires <= now { instance.service = nil }
                if let text = instance.text, text.expires <= now { instance.text = nil }
                cache.instances[name] = instance.pointer == nil && instance.service == nil ? nil : instance
            }
        }
        reconcile()
    }

    /// Publishes peers found, changed and lost since last time, and asks for the records
    /// that instances still lack.
    private func reconcile() {
        let now = ContinuousClock.now
        var missing: [Question] = []
        let visible: [PeerID: Peer] = cache.withLock { cache in
            var visible: [PeerID: Peer] = [:]
            for (name, instance) in cache.instances where instance.pointer != nil {
                guard let service = instance.service, let address = cache.addresses[service.value.target] else {
                    if instance.lastQuery.map({ now - $0 > .seconds(1) }) ?? true {
                        cache.instances[name]?.lastQuery = now
                        if let service = instance.service {
                            missing.append(Question(name: service.value.target, type: .a))
                        } else {
                            missing += [Question(name: name, type: .srv), Question(name: name, type: .txt)]
                        }
                    }
                    continue
                }
                let text = instance.text?.value ?? [:]
                // What a peer announces is shown to people: control characters escaped.
                let id = PeerID(escapedForDisplay(text["id"] ?? name.labels[0]))
                guard id != context.host.id else { continue }
                visible[id] = Peer(
                    id: id, name: escapedForDisplay(text["name"] ?? name.labels[0]),
                    addresses: [PeerAddress(host: dottedQuad(address.value), port: Int(service.value.port))],
                    services: (text["services"] ?? "").split(separator: ",").map(String.init))
            }
            return visible
        }
        if !missing.isEmpty { socket.send(DNSMessage(isResponse: false, questions: missing).encoded()) }
        let (found, lost) = peers.table.withLock { known -> ([Peer], [PeerID]) in
            let found = visible.values.filter { known[$0.id] != $0 }
            let lost = known.keys.filter { visible[$0] == nil }
            known = visible
            return (found, lost)
        }
        for peer in found { context.events.publish(.peerFound(peer)) }
        for id in lost { context.events.publish(.peerLost(id)) }
    }

    /// On stop: the peers this plugin found are no longer followed.
    func forgetPeers() {
        let lost = peers.table.withLock { known in
            defer { known = [:] }
            return Array(known.keys)
        }
        for id in lost { context.events.publish(.peerLost(id)) }
    }
}

/// The IPv4 address in `text` in host byte order (0 if it does not parse; `Options` and
/// the socket have checked it by then).
private func ipv4Value(_ text: String) -> UInt32 {
    let parts = text.split(separator: ".").compactMap { UInt32($0) }
    guard parts.count == 4 else { return 0 }
    return parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]
}

/// The peers found, as last published.
final class PeerTable: Sendable {
    let table = Mutex<[PeerID: Peer]>([:])
}
