import Foundation
import Glibc
import KizunaSDK
import Testing

/// What RFC 6762 asks of a responder, checked against a running host on loopback with raw
/// packets: legacy queries answered to their sender, known answers suppressed, responses
/// from other ports and off-link senders ignored.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(2))) struct MDNSBehaviourTests {
        /// A query for `type` (labels such as ["_kzab12cd34", "_tcp"]) with id `id`,
        /// listing `known` pointer targets (instance labels) as known answers with `ttl`.
        static func query(id: UInt16, type: [String], known: [String] = [], ttl: UInt32 = 4500) -> [UInt8] {
            let service = name(type + ["local"])
            var packet: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0, 0, 0, 1, 0, UInt8(known.count), 0, 0, 0, 0]
            packet += service + [0, 12, 0, 1]
            for label in known {
                let target = name([label] + type + ["local"])
                packet += service + [0, 12, 0, 1] + [UInt8(ttl >> 24), UInt8((ttl >> 16) & 0xFF), UInt8((ttl >> 8) & 0xFF), UInt8(ttl & 0xFF)]
                packet += [UInt8(target.count >> 8), UInt8(target.count & 0xFF)] + target
            }
            return packet
        }

        static func name(_ labels: [String]) -> [UInt8] { labels.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0] }

        /// The TTLs of the answers in `packet` (names written whole, as Kizuna writes them).
        static func answerTTLs(_ packet: [UInt8]) -> [UInt32]? { answers(packet)?.map(\.ttl) }

        /// The data of the first answer in `packet`.
        static func firstAnswerData(_ packet: [UInt8]) -> [UInt8]? { answers(packet)?.first?.data }

        /// A query with one question, for `labels` and the record type `type`.
        static func question(id: UInt16, _ labels: [String], type: UInt16) -> [UInt8] {
            [UInt8(id >> 8), UInt8(id & 0xFF), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0] + name(labels) + [UInt8(type >> 8), UInt8(type & 0xFF), 0, 1]
        }

        /// The type and TTL of each answer in `packet`.
        static func answers(_ packet: [UInt8]) -> [(type: UInt16, ttl: UInt32, data: [UInt8])]? {
            guard packet.count >= 12 else { return nil }
            var offset = 12
            func skipName() -> Bool {
                while offset < packet.count {
                    let length = Int(packet[offset])
                    if length == 0 { offset += 1; return true }
                    if length & 0xC0 == 0xC0 { offset += 2; return true }
                    offset += 1 + length
                }
                return false
            }
            for _ in 0..<Int(packet[5]) {
                guard skipName() else { return nil }
                offset += 4
            }
            var ttls: [(type: UInt16, ttl: UInt32, data: [UInt8])] = []
            for _ in 0..<Int(packet[7]) {
                guard skipName(), offset + 10 <= packet.count else { return nil }
                let length = Int(packet[offset + 8]) << 8 | Int(packet[offset + 9])
                guard offset + 10 + length <= packet.count else { return nil }
                ttls.append((
                    UInt16(packet[offset]) << 8 | UInt16(packet[offset + 1]), packet[(offset + 4)..<(offset + 8)].reduce(0) { $0 << 8 | UInt32($1) },
                    Array(packet[(offset + 10)..<(offset + 10 + length)])
                ))
                offset += 10 + length
            }
            return ttls
        }

        func host() throws -> (host: BuiltinHost, type: [String], instance: String, work: String) {
            let work = Fixtures.temporaryDirectory()
            let type = BuiltinHost.serviceType()
            let host = try BuiltinHost(name: "aiko", work: work, plugins: try BuiltinHost.pluginsDirectory(in: work, serviceType: type))
            // Probed and announced (twice, a second apart) once another host lists it.
            let watcher = try BuiltinHost(name: "bo", work: work, plugins: host.pluginsDirectory)
            try watcher.waitFor("peer found: \(host.id)")
            _ = watcher.kill()
            return (host, type.split(separator: ".").map(String.init), "aiko-\(host.id.prefix(8))", work)
        }

        @Test func aLegacyQueryIsAnsweredToItsSenderWithItsIdAndShortTTLs() throws {
            let (host, type, _, work) = try host()
            defer {
                _ = host.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            // From an ephemeral port: a resolver that is not mDNS (RFC 6762, 6.7).
            let asker = try LoopbackUDP(port: 0)
            try asker.sendToGroup(Self.query(id: 0x4B5A, type: type))
            let reply = try #require(asker.receive(within: 5), "no unicast answer to a legacy query")
            #expect(reply.prefix(2) == [0x4B, 0x5A], "the id is not echoed: \(reply.prefix(4))")
            #expect(reply[2] & 0x80 != 0 && reply[5] == 1, "not a response echoing the question")
            let ttls = try #require(Self.answerTTLs(reply))
            #expect(!ttls.isEmpty && ttls.allSatisfy { $0 <= 10 }, "\(ttls)")
        }

        @Test func unicastAnswersAreCappedSoAForgedSourceGetsNoFlood() throws {
            let (host, type, _, work) = try host()
            defer {
                _ = host.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            // 300 legacy queries (each would get a unicast answer) within a fraction of a second.
            let asker = try LoopbackUDP(port: 0)
            let started = Date()
            for id in 0..<300 { try asker.sendToGroup(Self.query(id: UInt16(id), type: type)) }
            var replies = 0
            let deadline = Date(timeIntervalSinceNow: 2)
            while asker.receive(within: deadline.timeIntervalSinceNow) != nil { replies += 1 }
            let seconds = Date().timeIntervalSince(started)
            #expect(replies >= 1 && Double(replies) <= 20 * seconds.rounded(.up), "\(replies) unicast answers to 300 queries in \(seconds) s")
        }

        @Test func anAAAAQuestionForTheHostNameGetsAnNSECThatSaysItHasOnlyAnA() throws {
            let (host, _, _, work) = try host()
            defer {
                _ = host.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            let asker = try LoopbackUDP(port: 0)
            try asker.sendToGroup(Self.question(id: 7, ["kizuna-\(host.id.prefix(50))", "local"], type: 28))
            let reply = try #require(asker.receive(within: 5), "no answer to an AAAA question for the host's name")
            let types = try #require(Self.answers(reply)).map(\.type)
            #expect(types == [47], "answer types \(types), not one NSEC")
            // The NSEC's bitmap: window 0, one byte, the bit of type 1 (A).
            let data = try #require(Self.firstAnswerData(reply))
            #expect(data.suffix(3) == [0, 1, 0x40], "\(data)")
        }

        @Test func aQueryThatListsTheAnswerAlreadyGetsNone() throws {
            let (host, type, instance, work) = try host()
            defer {
                _ = host.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            let listener = try LoopbackUDP(port: 5353, joinGroup: true)
            // Until the link has been quiet for 1.2 s: the host's answers to the watcher's
            // queries are out, and its once-a-second limit is behind it.
            #expect(listener.quiet(for: 1.2, within: 15), "the link never went quiet")
            func answered(_ query: [UInt8]) throws -> Bool {
                try listener.sendToGroup(query)
                let deadline = Date(timeIntervalSinceNow: 1.5)
                while let packet = listener.receive(within: deadline.timeIntervalSinceNow) {
                    // The answer to this question: the pointer alone (an announcement carries all four records).
                    if packet[2] & 0x80 != 0, packet[6] == 0, packet[7] == 1, packet.indices.contains(where: { packet[$0...].starts(with: Array(instance.utf8)) }) {
                        return true
                    }
                }
                return false
            }
            // Knowing the answer with its full TTL: no answer. Knowing it with less than half
            // its TTL left, or not at all: answered.
            #expect(try !answered(Self.query(id: 0, type: type, known: [instance])))
            #expect(try answered(Self.query(id: 0, type: type, known: [instance], ttl: 100)))
            usleep(1_100_000)  // a record goes out at most once a second (6.)
            #expect(try answered(Self.query(id: 0, type: type)))
        }

        /// A response from the mDNS port with `records`: (owner labels, type, data), each
        /// with the cache-flush bit and a TTL of 120 s.
        static func response(_ records: [([String], UInt16, [UInt8])]) -> [UInt8] {
            var packet: [UInt8] = [0, 0, 0x84, 0, 0, 0, 0, UInt8(records.count), 0, 0, 0, 0]
            for (owner, type, data) in records {
                packet += name(owner) + [UInt8(type >> 8), UInt8(type & 0xFF), 0x80, 1, 0, 0, 0, 120, UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
            }
            return packet
        }

        @Test func aForgedAnnouncementAddsAnAddressToTryButCannotTakeAPeersPlace() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let type = BuiltinHost.serviceType()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: type)
            let (a, b) = try BuiltinHost.pair(work: work, plugins: plugins)
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let real = try #require(try LANTests.addresses(of: b.id, seenBy: a).first)
            // Another program on the link claims bo's instance is at port 1 and bo's host
            // name at 127.0.0.2, with cache-flush bits, as if bo had moved.
            let labels = type.split(separator: ".").map(String.init)
            let host = ["kizuna-\(b.id.prefix(50))", "local"]
            let forged = Self.response([
                (["bo-\(b.id.prefix(8))"] + labels + ["local"], 33, [0, 0, 0, 0, 0, 1] + Self.name(host)),
                (host, 1, [127, 0, 0, 2]),
            ])
            let spoofer = try LoopbackUDP(port: 5353)
            try spoofer.sendToGroup(forged)
            let added = try LANTests.eventually(within: 10) { try LANTests.addresses(of: b.id, seenBy: a).contains("127.0.0.2:1") }
            let listed = try LANTests.addresses(of: b.id, seenBy: a)
            #expect(added, "\(listed)")
            // bo's own address is still there, and a send reaches bo (the forged ones fail first).
            #expect(listed.contains(real), "\(listed)")
            let source = "\(work)/still-bo.bin"
            try writeRandomFile(source, bytes: 64 << 10)
            let sent = try a.cli(["send", source, "--to", b.id])
            #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: source, andPath: "\(b.receiveDirectory)/still-bo.bin"))
        }

        @Test func aFloodOfQueriesIsAnsweredAtMostOnceASecond() throws {
            let (host, type, instance, work) = try host()
            defer {
                _ = host.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            let listener = try LoopbackUDP(port: 5353, joinGroup: true)
            // Room for the 2000 queries it hears itself, beside the answers.
            var room: Int32 = 16 << 20
            setsockopt(listener.fd, SOL_SOCKET, SO_RCVBUFFORCE, &room, socklen_t(MemoryLayout<Int32>.size))
            let started = Date()
            for _ in 0..<2000 { try listener.sendToGroup(Self.query(id: 0, type: type)) }
            // Every answer to them that goes out until 3 s after the last was sent (the host
            // may have answered another host less than a second before the first).
            var answers = 0
            let deadline = Date(timeIntervalSinceNow: 3)
            while let packet = listener.receive(within: deadline.timeIntervalSinceNow) {
                if packet[2] & 0x80 != 0, packet[7] == 1, packet.indices.contains(where: { packet[$0...].starts(with: Array(instance.utf8)) }) { answers += 1 }
            }
            let seconds = Date().timeIntervalSince(started)
            #expect(answers >= 1 && Double(answers) <= seconds.rounded(.up) + 1, "\(answers) answers to 2000 queries in \(seconds) s")
            // And it still answers, at once, a resolver that asks.
            let asker = try LoopbackUDP(port: 0)
            try asker.sendToGroup(Self.query(id: 9, type: type))
            #expect(asker.receive(within: 5) != nil, "no answer after the flood")
        }

        @Test func responsesFromAnotherPortAreIgnoredAndCounted() throws {
            let (host, type, _, work) = try host()
            defer {
                _ = host.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            let before = try host.figure("mdns-discovery", "violations")
            let spoofer = try LoopbackUDP(port: 0)
            try spoofer.sendToGroup(DiscoveryTests.sampleResponse(service: type, txt: ["id=spoofed-peer", "services=file-transfer"]))
            let counted = try LANTests.eventually(within: 10) { try host.figure("mdns-discovery", "violations") > before }
            #expect(counted)
            // Handled in order: counted, so it was dropped, not learned.
            #expect(try !host.cli(["peers"]).stdout.contains("spoofed-peer"))
        }
    }
}

/// A UDP socket on loopback, to play another mDNS speaker or a plain resolver.
final class LoopbackUDP {
    let fd: Int32

    /// Bound to 127.0.0.1:`port` (0: any), sharing the port with the hosts' sockets; with
    /// `joinGroup`, it also hears the mDNS group on loopback.
    init(port: UInt16, joinGroup: Bool = false) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        // A socket that hears the group binds every address (a group packet is addressed to the group).
        address.sin_addr = in_addr(s_addr: joinGroup ? 0 : UInt32(0x7F00_0001).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw HostFailure("cannot bind UDP port \(port) on loopback: \(String(cString: strerror(errno)))") }
        var interface = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &interface, socklen_t(MemoryLayout<in_addr>.size))
        if joinGroup {
            var request = ip_mreq(imr_multiaddr: in_addr(s_addr: UInt32(0xE000_00FB).bigEndian), imr_interface: interface)
            guard setsockopt(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, &request, socklen_t(MemoryLayout<ip_mreq>.size)) == 0 else {
                throw HostFailure("cannot join the mDNS group on loopback: \(String(cString: strerror(errno)))")
            }
            var all: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_ALL, &all, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit { close(fd) }

    func sendToGroup(_ packet: [UInt8]) throws {
        var destination = sockaddr_in()
        destination.sin_family = sa_family_t(AF_INET)
        destination.sin_port = UInt16(5353).bigEndian
        destination.sin_addr = in_addr(s_addr: UInt32(0xE000_00FB).bigEndian)
        let sent = packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        guard sent == packet.count else { throw HostFailure("cannot send to the mDNS group on loopback") }
    }

    /// Waits until no packet has come for `seconds` (reading what comes meanwhile), at
    /// most `limit` seconds; whether it was so.
    func quiet(for seconds: Double, within limit: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: limit)
        while Date() < deadline {
            if receive(within: seconds) == nil { return true }
        }
        return false
    }

    /// The next packet within `seconds`, or nil.
    func receive(within seconds: Double) -> [UInt8]? {
        guard seconds > 0 else { return nil }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(seconds * 1000)) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 9000)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? Array(buffer[..<count]) : nil
    }
}
