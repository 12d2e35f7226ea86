import Glibc
import Synchronization

/// A UDP socket of mDNS, for IPv4 (group 224.0.0.251) or IPv6 (ff02::fb): bound to the
/// mDNS port on every address, it joins the group on each interface discovery runs on,
/// tells for each packet the interface it came in on (`IP_PKTINFO`, `IPV6_RECVPKTINFO`),
/// sends to the group on one interface at a time, hears its own packets back (multicast
/// loop, which is how hosts on one machine find each other), and shares the port with
/// other responders.
final class MulticastSocket: Sendable {
    static let group4: UInt32 = 0xE000_00FB  // 224.0.0.251
    static let group6 = IPv6Address(bytes: [0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFB])
    let fd: Int32
    let port: UInt16
    let family: AddressFamily
    /// Held while choosing the interface a multicast goes out on and sending it.
    private let sending = Mutex(())

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A packet received, with where it came from and the interface it came in on.
    struct Datagram {
        var bytes: [UInt8]
        var source: IPAddress
        var sourcePort: UInt16
        var interfaceIndex: UInt32
    }

    init(port: UInt16, family: AddressFamily) throws(Failure) {
        let fd = socket(family == .v4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot open a UDP socket for \(family): \(String(cString: strerror(errno)))") }
        func option<T>(_ level: Int32, _ name: Int32, _ value: T, _ what: String) throws(Failure) {
            guard Self.set(fd, level, name, value) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Failure(description: "cannot set \(what) on the \(family) mDNS socket: \(reason)")
            }
        }
        try option(SOL_SOCKET, SO_REUSEADDR, Int32(1), "SO_REUSEADDR")
        try option(SOL_SOCKET, SO_REUSEPORT, Int32(1), "SO_REUSEPORT")
        // Every responder on the machine hears every mDNS packet: room for bursts.
        try option(SOL_SOCKET, SO_RCVBUF, Int32(1 << 20), "SO_RCVBUF")
        let bound: Int32
        if family == .v4 {
            try option(Int32(IPPROTO_IP), IP_PKTINFO, Int32(1), "IP_PKTINFO")
            try option(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, UInt8(1), "IP_MULTICAST_LOOP")
            try option(Int32(IPPROTO_IP), IP_MULTICAST_TTL, UInt8(255), "IP_MULTICAST_TTL")
            // Only the groups this socket joined, not every group any socket on the machine joined.
            try option(Int32(IPPROTO_IP), IP_MULTICAST_ALL, Int32(0), "IP_MULTICAST_ALL")
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr = in_addr(s_addr: INADDR_ANY)
            bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        } else {
            try option(Int32(IPPROTO_IPV6), IPV6_V6ONLY, Int32(1), "IPV6_V6ONLY")
            try option(Int32(IPPROTO_IPV6), IPV6_RECVPKTINFO, Int32(1), "IPV6_RECVPKTINFO")
            try option(Int32(IPPROTO_IPV6), IPV6_MULTICAST_LOOP, UInt32(1), "IPV6_MULTICAST_LOOP")
            try option(Int32(IPPROTO_IPV6), IPV6_MULTICAST_HOPS, Int32(255), "IPV6_MULTICAST_HOPS")
            try option(Int32(IPPROTO_IPV6), IPV6_MULTICAST_ALL, Int32(0), "IPV6_MULTICAST_ALL")
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot bind UDP port \(port) for \(family): \(reason); another program may hold it without SO_REUSEPORT")
        }
        self.fd = fd
        self.port = port
        self.family = family
    }

    deinit { close(fd) }

    private static func set<T>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) -> Int32 {
        withUnsafeBytes(of: value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
    }

    private static func request4(_ interface: NetworkInterface) -> ip_mreqn {
        ip_mreqn(
            imr_multiaddr: in_addr(s_addr: group4.bigEndian), imr_address: in_addr(s_addr: (interface.ipv4?.address ?? 0).bigEndian),
            imr_ifindex: Int32(interface.index))
    }

    private static func request6(_ interface: NetworkInterface) -> ipv6_mreq {
        ipv6_mreq(ipv6mr_multiaddr: group6.in6, ipv6mr_interface: interface.index)
    }

    /// Joins the group on `interface`.
    func join(_ interface: NetworkInterface) throws(Failure) {
        let status =
            family == .v4
            ? Self.set(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, Self.request4(interface))
            : Self.set(fd, Int32(IPPROTO_IPV6), IPV6_ADD_MEMBERSHIP, Self.request6(interface))
        // EADDRINUSE: joined already.
        guard status == 0 || errno == EADDRINUSE else {
            throw Failure(description: "cannot join the \(family) mDNS group on \(interface): \(String(cString: strerror(errno)))")
        }
    }

    /// Leaves the group on `interface` (nothing if the interface has gone).
    func leave(_ interface: NetworkInterface) {
        if family == .v4 {
            _ = Self.set(fd, Int32(IPPROTO_IP), IP_DROP_MEMBERSHIP, Self.request4(interface))
        } else {
            _ = Self.set(fd, Int32(IPPROTO_IPV6), IPV6_DROP_MEMBERSHIP, Self.request6(interface))
        }
    }

    /// Sends `packet` to the group on `interface` only.
    @discardableResult
    func send(_ packet: [UInt8], on interface: NetworkInterface) -> Bool {
        sending.withLock { _ in
            let chosen =
                family == .v4
                ? Self.set(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, Self.request4(interface))
                : Self.set(fd, Int32(IPPROTO_IPV6), IPV6_MULTICAST_IF, Int32(interface.index))
            guard chosen == 0 else { return false }
            return send(packet, to: family == .v4 ? .v4(Self.group4) : .v6(Self.group6), port: port, scope: interface.index)
        }
    }

    /// Sends `packet` to one address and port (a unicast answer); `scope` is the interface
    /// a link-local IPv6 address is on.
    @discardableResult
    func send(_ packet: [UInt8], to address: IPAddress, port: UInt16, scope: UInt32) -> Bool {
        packet.withUnsafeBytes { bytes -> Int in
            switch address {
            case .v4(let value):
                var destination = sockaddr_in()
                destination.sin_family = sa_family_t(AF_INET)
                destination.sin_port = port.bigEndian
                destination.sin_addr = in_addr(s_addr: value.bigEndian)
                return withUnsafePointer(to: &destination) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            case .v6(let value):
                var destination = sockaddr_in6()
                destination.sin6_family = sa_family_t(AF_INET6)
                destination.sin6_port = port.bigEndian
                destination.sin6_addr = value.in6
                destination.sin6_scope_id = scope
                return withUnsafePointer(to: &destination) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
                }
            }
        } == packet.count
    }

    /// The next packet on any of `sockets`, or nil if none came within
    /// `timeoutMilliseconds` (or one came without the interface it arrived on, which the
    /// kernel always gives).
    static func receive(from sockets: [MulticastSocket], timeoutMilliseconds: Int32) -> (MulticastSocket, Datagram)? {
        var pollers = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        guard poll(&pollers, nfds_t(pollers.count), max(0, timeoutMilliseconds)) > 0 else { return nil }
        guard let ready = pollers.firstIndex(where: { $0.revents & Int16(POLLIN) != 0 }) else { return nil }
        return sockets[ready].receive().map { (sockets[ready], $0) }
    }

    private func receive() -> Datagram? {
        var buffer = [UInt8](repeating: 0, count: 9000)
        var source = sockaddr_storage()
        // Room for a cmsghdr and its packet info, and more the kernel might add.
        var control = [UInt64](repeating: 0, count: 16)
        let (count, controlLength) = buffer.withUnsafeMutableBytes { bytes in
            control.withUnsafeMutableBytes { controlBytes in
                withUnsafeMutablePointer(to: &source) { sourcePointer in
                    var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var header = msghdr(
                            msg_name: UnsafeMutableRawPointer(sourcePointer), msg_namelen: socklen_t(MemoryLayout<sockaddr_storage>.size),
                            msg_iov: vectorPointer, msg_iovlen: 1, msg_control: controlBytes.baseAddress, msg_controllen: controlBytes.count, msg_flags: 0)
                        let count = recvmsg(fd, &header, Int32(MSG_DONTWAIT))
                        return (count, Int(header.msg_controllen))
                    }
                }
            }
        }
        guard count >= 0 else { return nil }
        let bytes = Array(buffer[..<count])
        return control.withUnsafeBytes { raw -> Datagram? in
            let controlBytes = UnsafeRawBufferPointer(rebasing: raw.prefix(controlLength))
            switch family {
            case .v4:
                guard let info: in_pktinfo = Self.controlMessage(in: controlBytes, level: Int32(IPPROTO_IP), type: IP_PKTINFO) else { return nil }
                let address = withUnsafeBytes(of: source) { $0.loadUnaligned(as: sockaddr_in.self) }
                return Datagram(
                    bytes: bytes, source: .v4(UInt32(bigEndian: address.sin_addr.s_addr)), sourcePort: UInt16(bigEndian: address.sin_port),
                    interfaceIndex: UInt32(bitPattern: info.ipi_ifindex))
            case .v6:
                // in6_pktinfo: the 16-byte destination address, then the interface index.
                guard let info: (in6_addr, UInt32) = Self.controlMessage(in: controlBytes, level: Int32(IPPROTO_IPV6), type: IPV6_PKTINFO) else { return nil }
                let address = withUnsafeBytes(of: source) { $0.loadUnaligned(as: sockaddr_in6.self) }
                return Datagram(bytes: bytes, source: .v6(IPv6Address(address.sin6_addr)), sourcePort: UInt16(bigEndian: address.sin6_port), interfaceIndex: info.1)
            }
        }
    }

    /// The control message of `level` and `type` in `control`, as a `T` (a cmsghdr is a
    /// size_t length and two ints, each message aligned to a size_t).
    private static func controlMessage<T>(in control: UnsafeRawBufferPointer, level wanted: Int32, type wantedType: Int32) -> T? {
        let headerSize = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
        var offset = 0
        while offset + headerSize <= control.count {
            let length = control.loadUnaligned(fromByteOffset: offset, as: Int.self)
            let level = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
            let type = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
            guard length >= headerSize, offset + length <= control.count else { return nil }
            if level == wanted, type == wantedType, length - headerSize >= MemoryLayout<T>.size {
                return control.loadUnaligned(fromByteOffset: offset + headerSize, as: T.self)
            }
            offset += (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
        }
        return nil
    }
}
