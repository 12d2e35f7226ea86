import Glibc
import KizunaSDK

extension Conformance {
    static let discoveryChecks: [ConformanceCheck] = [
        ConformanceCheck("discovery.announces-and-withdraws", "another host finds this one, and sees it leave when it stops", kinds: [.discovery]) { environment in
            let a = environment.host("a"), b = environment.host("b")
            let seen = b.events.subscribe()
            try environment.startSubject(on: b)
            try environment.startSubject(on: a)
            let id = a.identity.id
            guard await waitForEvent(on: seen, within: .seconds(20), { if case .peerFound(let peer) = $0 { peer.id == id } else { false } }) else {
                throw CheckFailure("a second host running this plugin did not find the first within 20 s")
            }
            await a.stopAll()
            guard await waitForEvent(on: seen, within: .seconds(20), { $0 == .peerLost(id) }) else {
                throw CheckFailure("the second host still lists the first 20 s after it stopped: no withdrawal (goodbye) was sent")
            }
            return .passed()
        },
        ConformanceCheck("discovery.tolerates-garbage", "garbage on its UDP port is dropped; the plugin keeps running and finding peers", kinds: [.discovery]) { environment in
            guard let port = environment.subject.settings.integer("port"), let interface = environment.subject.settings.string("interface") else {
                return .notApplicable("no 'interface' and 'port' settings say where it listens")
            }
            let a = environment.host("a")
            let seen = a.events.subscribe()
            let plugin = try environment.startSubject(on: a)
            try await probe(plugin)
            let header: [UInt8] = [0, 0, 0x84, 0]
            let garbage: [[UInt8]] = [
                [0xFF], header + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1], randomBytes(1200),
            ]
            for _ in 0..<20 {
                for packet in garbage { sendDatagram(packet, interface: interface, port: UInt16(truncatingIfNeeded: port)) }
            }
            let b = environment.host("b")
            try environment.startSubject(on: b)
            let id = b.identity.id
            guard await waitForEvent(on: seen, within: .seconds(20), { if case .peerFound(let peer) = $0 { peer.id == id } else { false } }) else {
                throw CheckFailure("after 80 garbage packets the plugin did not find a new peer within 20 s")
            }
            if let ended = await plugin.runEnded(within: .zero) { throw CheckFailure("run ended after the garbage: \(describe(ended))") }
            return .passed()
        },
    ]

    /// Sends `packet` to the mDNS group (or to `interface` itself when it is not loopback
    /// multicast-capable) on `port`, only through `interface`.
    static func sendDatagram(_ packet: [UInt8], interface: String, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = in_addr()
        guard inet_pton(AF_INET, interface, &address) == 1 else { return }
        setsockopt(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, &address, socklen_t(MemoryLayout<in_addr>.size))
        var destination = sockaddr_in()
        destination.sin_family = sa_family_t(AF_INET)
        destination.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, "224.0.0.251", &destination.sin_addr)
        _ = packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }
}
