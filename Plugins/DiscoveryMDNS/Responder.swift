import Glibc
import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

/// Multicast DNS as RFC 6762 and 6763 describe it, for one DNS-SD service instance: this
/// host's. On each interface it probes for its names before it announces them and takes
/// another name on a conflict; it answers questions (shared answers after a random delay,
/// at most one multicast of a record a second, known answers suppressed, unicast where
/// asked, legacy queries answered to their sender); and it keeps what it hears of other
/// instances, refreshing their records before they expire and dropping those that no
/// longer answer. Instances complete enough to reach (an SRV record and an address for
/// its target) are published as peers.
///
/// Two threads use it: the plugin's receive thread (packets, and everything due at a
/// moment: probes, announcements, delayed answers) and its run loop (once a second:
/// queries, expiry, interfaces). Everything they share is in `state`; packets are sent
/// after the lock is let go.
final class Responder: Sendable {
    private let context: PluginContext
    private let options: Options
    private let sockets: [AddressFamily: MulticastSocket]
    private let port: UInt16
    private let peers: PeerTable
    private let state: Mutex<State>
    private let stopping = Atomic(false)
    /// Packets dropped because they did not parse.
    let malformed = Atomic<UInt64>(0)
    /// Packets dropped for their source: a response not from the mDNS port, or a packet
    /// from off the link it came in on.
    let refusedSources = Atomic<UInt64>(0)

    /// The longest a record heard is kept, whatever TTL its sender chose: the longest TTL
    /// RFC 6762 recommends (10.), for records other than host addresses.
    static let maxTTL: UInt32 = 4500
    /// The most instances and host addresses kept; once full, new names are ignored until
    /// old ones expire, so that no sender can make the cache grow without bound.
    static let maxCachedNames = 512
    /// Known answers put in one query, at most (the rest are left out, which only costs
    /// answers that were not needed).
    static let maxQueryBytes = 1400
    /// Unicast answers (to QU and legacy queries) a link sends a second, at most.
    static let maxUnicastPerSecond = 20

    init(context: PluginContext, options: Options, sockets: [AddressFamily: MulticastSocket], port: UInt16, peers: PeerTable) {
        self.context = context
        self.options = options
        self.sockets = sockets
        self.port = port
        self.peers = peers
        state = Mutex(State(names: Names(host: context.host, serviceType: options.serviceType)))
    }

    var instanceName: DNSName { state.withLock { $0.names.instance } }
    var isStopping: Bool { stopping.load(ordering: .acquiring) }
    var peerCount: Int { peers.table.withLock { $0.count } }
    func stop() { stopping.store(true, ordering: .releasing) }

    // MARK: State

    private struct State {
        var names: Names
        var links: [LinkKey: Link] = [:]
        var instances: [DNSName: Instance] = [:]
        var addresses: [DNSName: RecordSet<ScopedAddress>] = [:]
        /// Peer ids announced by more than one instance, already reported.
        var reportedDuplicates: Set<String> = []
        var recentConflicts: ArraySlice<ContinuousClock.Instant> = []
    }

    /// This host's names: `name-id8.type.local` for the instance and `kizuna-id.local` for
    /// the host, each with a number added after a conflict.
    struct Names {
        let base: String
        let hostBase: String
        let serviceType: DNSName
        var instanceNumber = 1
        var hostNumber = 1
        /// Names are numbered up to this; a name still taken then is probed for again.
        static let highestNumber = 99

        init(host: HostIdentity, serviceType: DNSName) {
            let id = host.id.rawValue
            // The name is cut to fit a label with room for " (99)", on a character
            // boundary, keeping the id's prefix that tells hosts of the same name apart.
            let suffix = "-\(id.prefix(8))"
            base = String(decoding: utf8Prefix(host.name, maxBytes: 63 - suffix.utf8.count - 5), as: UTF8.self) + suffix
            // A label holds 63 bytes: 50 of the id, with room for "-99".
            hostBase = "kizuna-\(id.prefix(50))"
            self.serviceType = serviceType
        }

        var instance: DNSName { serviceType.prepending(instanceNumber == 1 ? base : "\(base) (\(instanceNumber))") }
        var host: DNSName { DNSName([hostNumber == 1 ? hostBase : "\(hostBase)-\(hostNumber)", "local"]) }
    }

    /// An interface and an address family discovery runs on.
    struct LinkKey: Hashable {
        var index: UInt32
        var family: AddressFamily
    }

    /// An address heard, with the interface it was heard on when it is link-local IPv6
    /// (which can only be reached through that interface), else 0.
    private struct ScopedAddress: Equatable {
        var address: IPAddress
        var scope: UInt32

        /// As the transport takes it: `fe80::1%eth0` for a link-local address.
        var host: String {
            guard scope != 0 else { return address.description }
            var name = [CChar](repeating: 0, count: 17)
            guard if_indextoname(scope, &name) != nil else { return address.description }
            return address.description + "%" + String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        /// IPv4 first, then IPv6 of wider scope, then link-local IPv6.
        var preference: Int {
            switch address {
            case .v4: 0
            case .v6(let value): value.isLinkLocal ? 2 : 1
            }
        }
    }

    /// An interface and family discovery runs on, and where this host is with its names there.
    private struct Link {
        var interface: NetworkInterface
        var family: AddressFamily
        var phase: Phase
        /// When each of this host's records was last multicast here.
        var lastMulticast: [RecordKey: ContinuousClock.Instant] = [:]
        /// Unicast answers sent in the current second, and when it began: at most
        /// `Responder.maxUnicastPerSecond`, so queries with a forged source cannot make
        /// this host a reflector.
        var unicastWindow: (start: ContinuousClock.Instant, count: Int)?
        /// A shared answer waiting for its random delay.
        var pending: (due: ContinuousClock.Instant, answers: [ResourceRecord], additionals: [ResourceRecord])?

        enum Phase {
            /// `sent` probes so far, the next at `next` (RFC 6762, 8.1).
            case probing(sent: Int, next: ContinuousClock.Instant)
            /// `left` announcements to go, the next at `next` (8.3).
            case announcing(left: Int, next: ContinuousClock.Instant)
            case announced
        }

        var hasProbed: Bool { if case .probing = phase { false } else { true } }
    }

    private struct RecordKey: Hashable {
        var name: DNSName
        var type: DNSType
    }

    /// A record heard, with when it came and the refresh queries asked for it since.
    private struct Cached<Value> {
        var value: Value
        var received: ContinuousClock.Instant
        var ttl: UInt32
        var refreshes = 0
        init(_ value: Value, ttl: UInt32, now: ContinuousClock.Instant) {
            self.value = value
            self.ttl = min(ttl, Responder.maxTTL)
            received = now
        }
        var expires: ContinuousClock.Instant { received + .seconds(Int(ttl)) }
        func remaining(at now: ContinuousClock.Instant) -> UInt32 {
            let left = expires - now
            return left <= .zero ? 0 : UInt32(left.components.seconds)
        }
        /// Whether a refresh query is due: at 80, 85, 90 and 95 % of the TTL (RFC 6762, 5.2).
        mutating func refreshDue(at now: ContinuousClock.Instant) -> Bool {
            guard refreshes < 4, ttl >= 4 else { return false }
            let fraction = 80 + 5 * refreshes
            guard now - received >= .milliseconds(Int(ttl) * 10 * fraction) else { return false }
            refreshes += 1
            return true
        }
    }

    private struct Instance {
        var pointer: Cached<Void>?
        var services = RecordSet<ServiceTarget>()
        var text: Cached<[String: String]>?
        var firstSeen: ContinuousClock.Instant
        /// Queries asked for records it lacks, and when the next may go (1, 2, 4, 8 s apart).
        var missingQueries = 0
        var nextMissingQuery: ContinuousClock.Instant
    }

    private struct ServiceTarget: Equatable {
        var target: DNSName
        var port: UInt16
    }

    /// The values heard for one name and type, newest first, each with its own TTL (at
    /// most four). A record with the cache-flush bit does not flush the others here, as
    /// RFC 6762 (10.2) would have it: a forged announcement adds an address to try after
    /// the newest, it cannot take the place of one the peer still answers for, and the
    /// transport keeps only a connection whose other end proves the peer's key.
    private struct RecordSet<Value: Equatable> {
        var entries: [Cached<Value>] = []
        static var limit: Int { 4 }

        var isEmpty: Bool { entries.isEmpty }

        mutating func heard(_ value: Value, ttl: UInt32, now: ContinuousClock.Instant) {
            entries.removeAll { $0.value == value }
            guard ttl != 0 else { return }  // a goodbye for this value
            entries.insert(Cached(value, ttl: ttl, now: now), at: 0)
            if entries.count > Self.limit { entries.removeLast(entries.count - Self.limit) }
        }

        mutating func dropExpired(at now: ContinuousClock.Instant) { entries.removeAll { $0.expires <= now } }

        /// Whether a refresh query is due for any of the values.
        mutating func refreshDue(at now: ContinuousClock.Instant) -> Bool {
            var due = false
            for index in entries.indices where entries[index].refreshDue(at: now) { due = true }
            return due
        }
    }

    private enum Destination {
        case group(NetworkInterface, AddressFamily)
        /// An address and port, and the interface it is reached through.
        case unicast(IPAddress, UInt16, scope: UInt32)
    }

    private typealias Outgoing = [(packet: [UInt8], to: Destination)]

    private func send(_ outgoing: Outgoing) {
        for (packet, destination) in outgoing {
            switch destination {
            case .group(let interface, let family): sockets[family]?.send(packet, on: interface)
            case .unicast(let address, let port, let scope):
                if case .v4 = address { sockets[.v4]?.send(packet, to: address, port: port, scope: scope) } else { sockets[.v6]?.send(packet, to: address, port: port, scope: scope) }
            }
        }
    }

    // MARK: This host's records

    private struct Records {
        var pointer, service, text: ResourceRecord
        /// The interface's addresses: an A record for its IPv4 address, an AAAA record for
        /// each IPv6 one (RFC 6762, 6.2: all of them, whichever family asks).
        var addresses: [ResourceRecord]
        /// NSEC records (RFC 6762, 6.1): the host name has only the address types it has,
        /// the instance only SRV and TXT.
        var hostAbsent, instanceAbsent: ResourceRecord
        var unique: [ResourceRecord] { [service, text] + addresses }
        var all: [ResourceRecord] { [pointer, service, text] + addresses }
    }

    private func records(_ names: Names, on interface: NetworkInterface, ttl: UInt32? = nil) -> Records {
        let host = context.host
        let text: [String: String] = ["id": host.id.rawValue, "name": host.name, "version": host.version, "services": host.services.joined(separator: ",")]
        return Records(
            pointer: ResourceRecord(name: options.serviceType, type: .ptr, cacheFlush: false, ttl: ttl ?? options.otherTTL, data: .ptr(names.instance)),
            service: ResourceRecord(name: names.instance, type: .srv, cacheFlush: true, ttl: ttl ?? options.hostTTL, data: .srv(priority: 0, weight: 0, port: port, target: names.host)),
            text: ResourceRecord(name: names.instance, type: .txt, cacheFlush: true, ttl: ttl ?? options.otherTTL, data: .txt(text)),
            addresses: addressRecords(names, on: interface, ttl: ttl ?? options.hostTTL),
            hostAbsent: nsec(names.host, types: (interface.ipv4 == nil ? [] : [.a]) + (interface.families.contains(.v6) ? [.aaaa] : []), ttl: ttl ?? options.hostTTL),
            instanceAbsent: nsec(names.instance, types: [.txt, .srv], ttl: ttl ?? options.hostTTL))
    }

    private func addressRecords(_ names: Names, on interface: NetworkInterface, ttl: UInt32) -> [ResourceRecord] {
        let v4 = interface.ipv4.map { [ResourceRecord(name: names.host, type: .a, cacheFlush: true, ttl: ttl, data: .a($0.address))] } ?? []
        let v6 = interface.families.contains(.v6) ? interface.ipv6.map { ResourceRecord(name: names.host, type: .aaaa, cacheFlush: true, ttl: ttl, data: .aaaa($0.address)) } : []
        return v4 + v6
    }

    /// An NSEC record that `name` has `types` and no others: the name itself as the next
    /// name and the types' bitmap in window 0 (RFC 4034, 4.1.2).
    private func nsec(_ name: DNSName, types: [DNSType], ttl: UInt32) -> ResourceRecord {
        var data: [UInt8] = []
        data.appendName(name)
        let highest = Int(types.map(\.rawValue).max() ?? 0)
        var bitmap = [UInt8](repeating: 0, count: highest / 8 + 1)
        for type in types { bitmap[Int(type.rawValue) / 8] |= 0x80 >> (type.rawValue % 8) }
        data += [0, UInt8(bitmap.count)] + bitmap
        return ResourceRecord(name: name, type: .nsec, cacheFlush: true, ttl: ttl, data: .other(data))
    }

    /// Whether `record` is one this host sends on any of its links (its own packets come
    /// back to it, also through another interface on the same link).
    private func isOwn(_ record: ResourceRecord, _ state: State) -> Bool {
        state.links.values.contains { records(state.names, on: $0.interface).all.contains { same($0, record) } }
    }

    private func same(_ a: ResourceRecord, _ b: ResourceRecord) -> Bool { a.name == b.name && a.type == b.type && a.data == b.data }

    // MARK: Interfaces

    /// Runs on exactly `interfaces` from now, in each of the families given: joins the new
    /// ones (each probes, then announces) and leaves those gone. Returns what changed, for
    /// the log.
    func use(_ targets: [(interface: NetworkInterface, family: AddressFamily)]) -> (joined: [String], left: [String], failed: [String]) {
        var joined: [String] = []
        var failed: [String] = []
        let now = ContinuousClock.now
        let wanted = targets.filter { sockets[$0.family] != nil }
        func isWanted(_ link: Link) -> Bool { wanted.contains { $0.interface == link.interface && $0.family == link.family } }
        let (left, goodbyes) = state.withLock { state -> ([Link], Outgoing) in
            var left: [Link] = []
            var goodbyes: Outgoing = []
            for (key, link) in state.links where !isWanted(link) {
                state.links[key] = nil
                left.append(link)
                // Addresses that changed under a running interface: the old ones withdrawn there.
                if let renumbered = wanted.first(where: { $0.interface.index == key.index && $0.family == key.family })?.interface {
                    let current = records(state.names, on: renumbered).addresses
                    let old = records(state.names, on: link.interface, ttl: 0).addresses.filter { record in !current.contains { same($0, record) } }
                    if !old.isEmpty { goodbyes.append((DNSMessage(isResponse: true, answers: old).encoded(), .group(renumbered, key.family))) }
                }
            }
            return (left, goodbyes)
        }
        for link in left where !wanted.contains(where: { $0.interface.index == link.interface.index && $0.family == link.family }) {
            sockets[link.family]?.leave(link.interface)
        }
        send(goodbyes)
        for (interface, family) in wanted {
            let key = LinkKey(index: interface.index, family: family)
            guard state.withLock({ $0.links[key] == nil }), let socket = sockets[family] else { continue }
            do {
                try socket.join(interface)
            } catch {
                failed.append(error.description)
                continue
            }
            // The first probe after a random 0-250 ms (RFC 6762, 8.1).
            let start = now + .milliseconds(Int.random(in: 0...250))
            state.withLock { $0.links[key] = Link(interface: interface, family: family, phase: .probing(sent: 0, next: start)) }
            joined.append("\(interface) over \(family)")
        }
        return (joined, left.map { "\($0.interface) over \($0.family)" }, failed)
    }

    // MARK: Timed work (the receive thread)

    /// Milliseconds until the next probe, announcement or delayed answer is due.
    func millisecondsUntilDue() -> Int32 {
        let now = ContinuousClock.now
        let next = state.withLock { state in
            state.links.values.compactMap { link -> ContinuousClock.Instant? in
                var due: [ContinuousClock.Instant] = []
                switch link.phase {
                case .probing(_, let next), .announcing(_, let next): due.append(next)
                case .announced: break
                }
                if let pending = link.pending { due.append(pending.due) }
                return due.min()
            }.min()
        }
        guard let next else { return 1000 }
        let wait = next - now
        return wait <= .zero ? 0 : Int32(min(1000, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000 + 1))
    }

    /// Sends what is due: probes (three, 250 ms apart), announcements (two, a second apart)
    /// and delayed answers.
    func sendDue() {
        let now = ContinuousClock.now
        let outgoing = state.withLock { state -> Outgoing in
            var outgoing: Outgoing = []
            for (index, var link) in state.links {
                let own = records(state.names, on: link.interface)
                switch link.phase {
                case .probing(let sent, let next) where next <= now:
                    if sent < 3 {
                        // Questions for both names (the first asking for a unicast answer) and
                        // the records this host would have them hold, for tie-breaking.
                        let probe = DNSMessage(
                            isResponse: false,
                            questions: [
                                Question(name: state.names.instance, type: .any, unicastResponse: sent == 0),
                                Question(name: state.names.host, type: .any, unicastResponse: sent == 0),
                            ],
                            authorities: own.unique)
                        outgoing.append((probe.encoded(), .group(link.interface, link.family)))
                        link.phase = .probing(sent: sent + 1, next: now + .milliseconds(250))
                    } else {
                        link.phase = .announcing(left: 2, next: now)
                    }
                default: break
                }
                if case .announcing(let left, let next) = link.phase, next <= now {
                    outgoing.append((DNSMessage(isResponse: true, answers: own.all).encoded(), .group(link.interface, link.family)))
                    for record in own.all { link.lastMulticast[RecordKey(name: record.name, type: record.type)] = now }
                    link.phase = left > 1 ? .announcing(left: left - 1, next: now + .seconds(1)) : .announced
                }
                if let pending = link.pending, pending.due <= now {
                    link.pending = nil
                    if let packet = multicastAnswer(pending.answers, pending.additionals, on: &link, now: now, minimumGap: .seconds(1)) {
                        outgoing.append((packet, .group(link.interface, link.family)))
                    }
                }
                state.links[index] = link
            }
            return outgoing
        }
        send(outgoing)
    }

    /// The response carrying `answers` (less those multicast here within `minimumGap`, RFC
    /// 6762, 6.) and `additionals`, noting them as multicast now; nil if nothing is left.
    private func multicastAnswer(
        _ answers: [ResourceRecord], _ additionals: [ResourceRecord], on link: inout Link, now: ContinuousClock.Instant, minimumGap: Duration
    ) -> [UInt8]? {
        let fresh = answers.filter { record in link.lastMulticast[RecordKey(name: record.name, type: record.type)].map { now - $0 >= minimumGap } ?? true }
        guard !fresh.isEmpty else { return nil }
        for record in fresh { link.lastMulticast[RecordKey(name: record.name, type: record.type)] = now }
        return DNSMessage(isResponse: true, answers: fresh, additionals: uniqueAdditionals(additionals, besides: fresh)).encoded()
    }

    private func uniqueAdditionals(_ additionals: [ResourceRecord], besides answers: [ResourceRecord]) -> [ResourceRecord] {
        var unique: [ResourceRecord] = []
        for record in additionals where !answers.contains(record) && !unique.contains(record) { unique.append(record) }
        return unique
    }

    // MARK: Sending (the run loop)

    /// Announces again on every link that has probed (the services this host offers changed).
    func announceAgain() {
        let now = ContinuousClock.now
        state.withLock { state in
            for (index, link) in state.links where link.hasProbed { state.links[index]?.phase = .announcing(left: 2, next: now) }
        }
    }

    /// Withdraws this host: its records with TTL 0 on every link that announced them.
    func sendGoodbye() {
        let outgoing = state.withLock { state -> Outgoing in
            state.links.values.filter(\.hasProbed).map { link in
                (DNSMessage(isResponse: true, answers: records(state.names, on: link.interface, ttl: 0).all).encoded(), .group(link.interface, link.family))
            }
        }
        send(outgoing)
    }

    /// Asks every link for every instance of the service type, listing the instances known
    /// with more than half their TTL left so that they do not answer again (RFC 6762, 7.1).
    func query() {
        let now = ContinuousClock.now
        let outgoing = state.withLock { state -> Outgoing in
            var message = DNSMessage(isResponse: false, questions: [Question(name: options.serviceType, type: .ptr)])
            var size = message.encoded().count
            for (name, instance) in state.instances.sorted(by: { $0.key.description < $1.key.description }) {
                guard let pointer = instance.pointer, pointer.remaining(at: now) > pointer.ttl / 2 else { continue }
                let known = ResourceRecord(name: options.serviceType, type: .ptr, cacheFlush: false, ttl: pointer.remaining(at: now), data: .ptr(name))
                var encoded: [UInt8] = []
                encoded.appendRecord(known)
                guard size + encoded.count <= Self.maxQueryBytes else { break }
                size += encoded.count
                message.answers.append(known)
            }
            return state.links.values.map { (message.encoded(), .group($0.interface, $0.family)) }
        }
        send(outgoing)
    }

    // MARK: Receiving

    func handle(_ datagram: MulticastSocket.Datagram, family: AddressFamily) {
        let message: DNSMessage
        do {
            message = try DNSMessage(parsing: datagram.bytes)
        } catch {
            malformed.add(1, ordering: .relaxed)
            context.logger.debug("dropped a malformed mDNS packet", metadata: ["from": "\(datagram.source)", "reason": "\(error)"])
            return
        }
        // Only from the link the packet came in on (a unicast from further away is not
        // for mDNS), and responses only from the mDNS port (RFC 6762, 6. and 11.).
        let key = LinkKey(index: datagram.interfaceIndex, family: family)
        guard let link = state.withLock({ $0.links[key] }), link.interface.isOnLink(datagram.source),
            !message.isResponse || datagram.sourcePort == options.port
        else {
            refusedSources.add(1, ordering: .relaxed)
            context.logger.debug(
                "dropped an mDNS packet from off the link or port", metadata: ["from": "\(datagram.source) port \(datagram.sourcePort)"])
            return
        }
        if message.isResponse {
            learn(message.answers + message.additionals, on: link.interface)
        } else if !message.questions.isEmpty {
            answer(message, from: datagram, on: key)
        }
    }

    private func answer(_ query: DNSMessage, from datagram: MulticastSocket.Datagram, on key: LinkKey) {
        let now = ContinuousClock.now
        let isLegacy = datagram.sourcePort != options.port
        let outgoing = state.withLock { state -> Outgoing in
            guard var link = state.links[key] else { return [] }
            let interface = link.interface
            let own = records(state.names, on: interface)
            // Probes from another host for this host's names while it is probing itself:
            // the lexicographically later set of records wins (RFC 6762, 8.2).
            if case .probing = link.phase, !query.authorities.isEmpty {
                let theirs = query.authorities.filter { ($0.name == state.names.instance || $0.name == state.names.host) && !isOwn($0, state) }
                if lostTieBreak(own.unique, against: theirs) {
                    link.phase = .probing(sent: 0, next: now + .seconds(1))
                    state.links[key] = link
                }
                return []
            }
            guard link.hasProbed else { return [] }
            var multicast: [ResourceRecord] = []
            var unicast: [ResourceRecord] = []
            var additionals: [ResourceRecord] = []
            for question in query.questions {
                let any = question.type == .any
                var matched: [ResourceRecord] = []
                if question.name == options.serviceType, question.type == .ptr || any {
                    matched.append(own.pointer)
                    additionals += own.unique
                } else if question.name == state.names.instance {
                    if question.type == .srv || any { matched.append(own.service) }
                    if question.type == .txt || any { matched.append(own.text) }
                    // A type the instance does not have: say so (RFC 6762, 6.1).
                    if matched.isEmpty { matched.append(own.instanceAbsent) }
                    additionals += own.addresses
                } else if question.name == state.names.host {
                    // The addresses of the type asked; for a type the host has none of, the
                    // NSEC that says which it has, which every address answer carries too,
                    // so nobody waits for an answer that will not come.
                    matched += own.addresses.filter { any || $0.type == question.type }
                    if matched.isEmpty { matched.append(own.hostAbsent) }
                    additionals += own.addresses + [own.hostAbsent]
                } else if question.name == DNSName("_services._dns-sd._udp.local"), question.type == .ptr || any {
                    matched.append(ResourceRecord(name: question.name, type: .ptr, cacheFlush: false, ttl: options.otherTTL, data: .ptr(options.serviceType)))
                }
                // Known-answer suppression: what the asker holds with at least half its TTL.
                matched.removeAll { record in query.answers.contains { same($0, record) && $0.ttl >= record.ttl / 2 } }
                if question.unicastResponse || isLegacy {
                    unicast += matched
                    // Multicast as well what this link has not had for a quarter of its TTL (5.4).
                    if !isLegacy {
                        multicast += matched.filter { record in
                            link.lastMulticast[RecordKey(name: record.name, type: record.type)].map { now - $0 >= .seconds(Int(record.ttl / 4)) } ?? true
                        }
                    }
                } else {
                    multicast += matched
                }
            }
            var outgoing: Outgoing = []
            if !unicast.isEmpty {
                if let window = link.unicastWindow, now - window.start < .seconds(1) {
                    link.unicastWindow?.count += 1
                } else {
                    link.unicastWindow = (now, 1)
                }
            }
            if !unicast.isEmpty, let window = link.unicastWindow, window.count <= Self.maxUnicastPerSecond {
                var reply = DNSMessage(id: isLegacy ? query.id : 0, isResponse: true, answers: unicast, additionals: uniqueAdditionals(additionals, besides: unicast))
                if isLegacy {
                    // To a resolver that is not mDNS (6.7): its id and questions echoed,
                    // short TTLs and no cache-flush bits.
                    reply.questions = query.questions
                    func legacy(_ record: ResourceRecord) -> ResourceRecord {
                        var record = record
                        record.ttl = min(record.ttl, 10)
                        record.cacheFlush = false
                        return record
                    }
                    reply.answers = reply.answers.map(legacy)
                    reply.additionals = reply.additionals.map(legacy)
                }
                outgoing.append((reply.encoded(), .unicast(datagram.source, datagram.sourcePort, scope: datagram.interfaceIndex)))
            }
            if !multicast.isEmpty {
                if multicast.contains(where: { !$0.cacheFlush }) {
                    // A shared record: after 20-120 ms, with whatever else is asked meanwhile (6.).
                    var pending = link.pending ?? (now + .milliseconds(Int.random(in: 20...120)), [], [])
                    // Each record once, however many queries come meanwhile.
                    for record in multicast where !pending.answers.contains(record) { pending.answers.append(record) }
                    for record in additionals where !pending.additionals.contains(record) { pending.additionals.append(record) }
                    link.pending = pending
                } else if let packet = multicastAnswer(
                    multicast, additionals, on: &link, now: now, minimumGap: query.authorities.isEmpty ? .seconds(1) : .milliseconds(250))
                {
                    // Only this host's unique records: at once (a probe's at most every 250 ms).
                    outgoing.append((packet, .group(interface, key.family)))
                }
            }
            state.links[key] = link
            return outgoing
        }
        send(outgoing)
    }

    /// Whether `ours` loses against `theirs` (RFC 6762, 8.2): the sets sorted, compared
    /// record by record on class, type and data; equal sets (our own probe heard back) do not.
    private func lostTieBreak(_ ours: [ResourceRecord], against theirs: [ResourceRecord]) -> Bool {
        guard !theirs.isEmpty else { return false }
        func key(_ record: ResourceRecord) -> [UInt8] { [UInt8(record.type.rawValue >> 8), UInt8(record.type.rawValue & 0xFF)] + record.data.encoded() }
        let a = ours.map(key).sorted { $0.lexicographicallyPrecedes($1) }
        let b = theirs.map(key).sorted { $0.lexicographicallyPrecedes($1) }
        for (x, y) in zip(a, b) where x != y { return x.lexicographicallyPrecedes(y) }
        return a.count < b.count
    }

    /// Instances are the names one label under the service type.
    private func isInstance(_ name: DNSName) -> Bool {
        name.labels.count == options.serviceType.labels.count + 1 && DNSName(Array(name.labels.dropFirst())) == options.serviceType
    }

    private func learn(_ heard: [ResourceRecord], on interface: NetworkInterface) {
        let now = ContinuousClock.now
        let conflicts = state.withLock { state -> [String] in
            var conflicts: [String] = []
            for record in heard {
                // Another host's record under one of this host's names, with other data:
                // this host gives the name up and probes for the next (RFC 6762, 9.).
                if record.name == state.names.instance || record.name == state.names.host {
                    if record.ttl != 0, [.srv, .txt, .a, .aaaa].contains(record.type), !isOwn(record, state) {
                        conflicts.append("\(record.name) (\(record.type))")
                        if record.name == state.names.instance {
                            state.names.instanceNumber = min(state.names.instanceNumber + 1, Names.highestNumber)
                        } else {
                            state.names.hostNumber = min(state.names.hostNumber + 1, Names.highestNumber)
                        }
                        // More than 15 conflicts in 10 s: wait 5 s before probing again (8.1),
                        // so a host that claims every name cannot keep this one busy.
                        // (The last 16 are all that is needed to tell.)
                        state.recentConflicts = (state.recentConflicts.filter { now - $0 < .seconds(10) } + [now]).suffix(16)
                        let delay: Duration = state.recentConflicts.count > 15 ? .seconds(5) : .milliseconds(Int.random(in: 0...250))
                        for index in state.links.keys { state.links[index]?.phase = .probing(sent: 0, next: now + delay) }
                    }
                    continue
                }
                // The name the record would add to the cache: a pointer adds its instance.
                var name = record.name
                if case .ptr(let instance) = record.data { name = instance }
                if record.ttl != 0, state.instances[name] == nil, state.addresses[name] == nil,
                    state.instances.count + state.addresses.count >= Self.maxCachedNames
                {
                    continue
                }
                func instance(_ name: DNSName, _ change: (inout Instance) -> Void) {
                    var instance = state.instances[name] ?? Instance(firstSeen: now, nextMissingQuery: now)
                    change(&instance)
                    state.instances[name] = instance
                }
                switch record.data {
                case .ptr(let target) where record.name == options.serviceType && isInstance(target) && target != state.names.instance:
                    instance(target) { $0.pointer = record.ttl == 0 ? nil : Cached((), ttl: record.ttl, now: now) }
                case .srv(_, _, let port, let target) where isInstance(record.name):
                    instance(record.name) { $0.services.heard(ServiceTarget(target: target, port: port), ttl: record.ttl, now: now) }
                case .txt(let entries) where isInstance(record.name):
                    instance(record.name) { $0.text = record.ttl == 0 ? nil : Cached(entries, ttl: record.ttl, now: now) }
                case .a(let address):
                    state.addresses[record.name, default: RecordSet()].heard(ScopedAddress(address: .v4(address), scope: 0), ttl: record.ttl, now: now)
                    if state.addresses[record.name]?.isEmpty == true { state.addresses[record.name] = nil }
                case .aaaa(let address):
                    let scoped = ScopedAddress(address: .v6(address), scope: address.isLinkLocal ? interface.index : 0)
                    state.addresses[record.name, default: RecordSet()].heard(scoped, ttl: record.ttl, now: now)
                    if state.addresses[record.name]?.isEmpty == true { state.addresses[record.name] = nil }
                default:
                    break
                }
            }
            return conflicts
        }
        for conflict in conflicts {
            context.logger.warning(
                "another host on the link holds \(conflict); taking a new name", metadata: ["interface": "\(interface)", "instance": "\(instanceName)"])
        }
        reconcile()
    }

    /// Once a second: drops what has expired (an instance with its SRV record), asks
    /// for records due a refresh and for those that instances lack, then publishes the changes.
    func expire() {
        let now = ContinuousClock.now
        let outgoing = state.withLock { state -> Outgoing in
            var questions: [Question] = []
            for name in Array(state.addresses.keys) {
                state.addresses[name]?.dropExpired(at: now)
                if state.addresses[name]?.isEmpty == true { state.addresses[name] = nil }
            }
            for (name, var instance) in state.instances {
                if let pointer = instance.pointer, pointer.expires <= now { instance.pointer = nil }
                if let text = instance.text, text.expires <= now { instance.text = nil }
                // Its SRV records gone unrefreshed: the instance has gone (or never answered).
                let hadServices = !instance.services.isEmpty
                instance.services.dropExpired(at: now)
                guard !(hadServices && instance.services.isEmpty), instance.pointer != nil || !instance.services.isEmpty else {
                    state.instances[name] = nil
                    continue
                }
                if instance.pointer?.refreshDue(at: now) == true { questions.append(Question(name: options.serviceType, type: .ptr)) }
                if instance.services.refreshDue(at: now) { questions.append(Question(name: name, type: .srv)) }
                if instance.text?.refreshDue(at: now) == true { questions.append(Question(name: name, type: .txt)) }
                for service in instance.services.entries where state.addresses[service.value.target]?.refreshDue(at: now) == true {
                    questions.append(Question(name: service.value.target, type: .any))
                }
                // What it lacks, asked at 1, 2, 4 and 8 s; then it is given up.
                let lacks = !instance.services.entries.contains { state.addresses[$0.value.target] != nil }
                if !lacks {
                    instance.missingQueries = 0
                } else if instance.nextMissingQuery <= now {
                    guard instance.missingQueries < 4 else {
                        state.instances[name] = nil
                        continue
                    }
                    if let service = instance.services.entries.first {
                        questions.append(Question(name: service.value.target, type: .any))
                    } else {
                        questions += [Question(name: name, type: .srv), Question(name: name, type: .txt)]
                    }
                    instance.nextMissingQuery = now + .seconds(1 << instance.missingQueries)
                    instance.missingQueries += 1
                }
                state.instances[name] = instance
            }
            var unique: [Question] = []
            for question in questions where !unique.contains(question) { unique.append(question) }
            guard !unique.isEmpty else { return [] }
            let packet = DNSMessage(isResponse: false, questions: unique).encoded()
            return state.links.values.map { (packet, .group($0.interface, $0.family)) }
        }
        send(outgoing)
        reconcile()
    }

    /// Publishes peers found, changed and lost since last time. A peer is its id: when
    /// two instances announce the same id, the one heard first stays and the other is
    /// reported (not taken, so a peer's address cannot be made to flap).
    private func reconcile() {
        let (visible, duplicates) = state.withLock { state -> ([PeerID: Peer], [(String, DNSName)]) in
            var visible: [PeerID: (Peer, ContinuousClock.Instant)] = [:]
            var duplicates: [(String, DNSName)] = []
            for (name, instance) in state.instances.sorted(by: { $0.value.firstSeen < $1.value.firstSeen }) where instance.pointer != nil {
                // Every address of every target, newest first: the transport tries them in turn.
                // (IPv4 first, then IPv6, link-local last.)
                var addresses: [PeerAddress] = []
                for service in instance.services.entries {
                    let heard = state.addresses[service.value.target]?.entries.map(\.value) ?? []
                    for address in heard.enumerated().sorted(by: { ($0.element.preference, $0.offset) < ($1.element.preference, $1.offset) }).map(\.element) {
                        let reachable = PeerAddress(host: address.host, port: Int(service.value.port))
                        if !addresses.contains(reachable) { addresses.append(reachable) }
                    }
                }
                guard !addresses.isEmpty else { continue }
                let text = instance.text?.value ?? [:]
                // What a peer announces is shown to people: control characters escaped.
                let id = PeerID(escapedForDisplay(text["id"] ?? name.labels[0]))
                guard id != context.host.id else { continue }
                guard visible[id] == nil else {
                    if state.reportedDuplicates.insert("\(id.rawValue) \(name)").inserted { duplicates.append((id.rawValue, name)) }
                    continue
                }
                let peer = Peer(
                    id: id, name: escapedForDisplay(text["name"] ?? name.labels[0]),
                    addresses: addresses,
                    services: (text["services"] ?? "").split(separator: ",").map(String.init))
                visible[id] = (peer, instance.firstSeen)
            }
            // Only names still cached stay reported, so the set is as bounded as the cache.
            if state.reportedDuplicates.count > Self.maxCachedNames {
                state.reportedDuplicates = state.reportedDuplicates.filter { key in state.instances.keys.contains { key.hasSuffix(" \($0)") } }
            }
            return (visible.mapValues(\.0), duplicates)
        }
        for (id, name) in duplicates {
            context.logger.warning(
                "two instances announce the peer id \(escapedForDisplay(id)); keeping the one heard first", metadata: ["ignored": "\(escapedForDisplay(name.description))"])
        }
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

/// The peers found, as last published.
final class PeerTable: Sendable {
    let table = Mutex<[PeerID: Peer]>([:])
}
