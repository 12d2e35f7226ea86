import Glibc
import Synchronization

/// The UDP socket of mDNS on IPv4: bound to the mDNS port on every address, it joins the
/// group on each interface discovery runs on, tells for each packet the interface it came
/// in on (`IP_PKTINFO`), sends to the group on one interface at a time, hears its own
/// packets back (`IP_MULTICAST_LOOP`, which is how hosts on one machine find each other),
/// and shares the port with other responders.
final class MulticastSocket: Sendable {
    static let group: UInt32 = 0xE000_00FB  // 224.0.0.251
    let fd: Int32
    let port: UInt16
    /// Held while choosing the interface a multicast goes out on and sending it.
    private let sending = Mutex(())

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A packet received, with where it came from and the interface it came in on.
    struct Datagram {
        var bytes: [UInt8]
        var source: UInt32
        var sourcePort: UInt16
        var interfaceIndex: UInt32
        /// The address it was sent to: the group, or this host's own (a unicast).
        var destination: UInt32
    }

    init(port: UInt16) throws(Failure) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot open a UDP socket: \(String(cString: strerror(errno)))") }
        func option<T: BitwiseCopyable>(_ level: Int32, _ name: Int32, _ value: T, _ what: String) throws(Failure) {
            guard Self.set(fd, level, name, value) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Failure(description: "cannot set \(what) on the mDNS socket: \(reason)")
            }
        }
        try option(SOL_SOCKET, SO_REUSEADDR, Int32(1), "SO_REUSEADDR")
        try option(SOL_SOCKET, SO_REUSEPORT, Int32(1), "SO_REUSEPORT")
        // Every responder on the machine hears every mDNS packet: room for bursts.
        try option(SOL_SOCKET, SO_RCVBUF, Int32(1 << 20), "SO_RCVBUF")
        try option(Int32(IPPROTO_IP), IP_PKTINFO, Int32(1), "IP_PKTINFO")
        try option(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, UInt8(1), "IP_MULTICAST_LOOP")
        try option(Int32(IPPROTO_IP), IP_MULTICAST_TTL, UInt8(255), "IP_MULTICAST_TTL")
        // Only the groups this socket joined, not every group any socket on the machine joined.
        try option(Int32(IPPROTO_IP), IP_MULTICAST_ALL, Int32(0), "IP_MULTICAST_ALL")
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr = in_addr(s_addr: INADDR_ANY)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot bind UDP port \(port): \(reason); another program may hold it without SO_REUSEPORT")
        }
        self.fd = fd
        self.port = port
    }

    deinit { close(fd) }

    private static func set<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T) -> Int32 {
        withUnsafeBytes(of: value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
    }

    private static func request(_ interface: NetworkInterface) -> ip_mreqn {
        ip_mreqn(imr_multiaddr: in_addr(s_addr: group.bigEndian), imr_address: in_addr(s_addr: interface.address.bigEndian), imr_ifindex: Int32(interface.index))
    }

    /// Joins the group on `interface`.
    func join(_ interface: NetworkInterface) throws(Failure) {
        // EADDRINUSE: joined already.
        guard Self.set(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, Self.request(interface)) == 0 || errno == EADDRINUSE else {
            throw Failure(description: "cannot join the mDNS group on \(interface): \(String(cString: strerror(errno)))")
        }
    }

    /// Leaves the group on `interface` (nothing if the interface has gone).
    func leave(_ interface: NetworkInterface) { _ = Self.set(fd, Int32(IPPROTO_IP), IP_DROP_MEMBERSHIP, Self.request(interface)) }

    /// Sends `packet` to the group on `interface` only.
    @discardableResult
    func send(_ packet: [UInt8], on interface: NetworkInterface) -> Bool {
        sending.withLock { _ in
            guard Self.set(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, Self.request(interface)) == 0 else { return false }
            return send(packet, to: Self.group, port: port)
        }
    }

    /// Sends `packet` to one address and port (a unicast answer).
    @discardableResult
    func send(_ packet: [UInt8], to address: UInt32, port: UInt16) -> Bool {
        var destination = sockaddr_in()
        destination.sin_family = sa_family_t(AF_INET)
        destination.sin_port = port.bigEndian
        destination.sin_addr = in_addr(s_addr: address.bigEndian)
        return packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        } == packet.count
    }

    /// The next packet, or nil if none came within `timeoutMilliseconds` (or one came
    /// without the interface it arrived on, which the kernel always gives).
    func receive(timeoutMilliseconds: Int32) -> Datagram? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, max(0, timeoutMilliseconds)) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 9000)
        var source = sockaddr_in()
        // Room for one cmsghdr and its in_pktinfo, and more the kernel might add.
        var control = [UInt64](repeating: 0, count: 16)
        let (count, controlLength) = buffer.withUnsafeMutableBytes { bytes in
            control.withUnsafeMutableBytes { controlBytes in
                withUnsafeMutablePointer(to: &source) { sourcePointer in
                    var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
                    return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                        var header = msghdr(
                            msg_name: UnsafeMutableRawPointer(sourcePointer), msg_namelen: socklen_t(MemoryLayout<sockaddr_in>.size),
                            msg_iov: vectorPointer, msg_iovlen: 1, msg_control: controlBytes.baseAddress, msg_controllen: controlBytes.count, msg_flags: 0)
                        let count = recvmsg(fd, &header, 0)
                        return (count, Int(header.msg_controllen))
                    }
                }
            }
        }
        guard count >= 0 else { return nil }
        guard let info = control.withUnsafeBytes({ Self.packetInfo(in: UnsafeRawBufferPointer(rebasing: $0.prefix(controlLength))) }) else { return nil }
        return Datagram(
            bytes: Array(buffer[..<count]), source: UInt32(bigEndian: source.sin_addr.s_addr), sourcePort: UInt16(bigEndian: source.sin_port),
            interfaceIndex: UInt32(bitPattern: info.ipi_ifindex), destination: UInt32(bigEndian: info.ipi_addr.s_addr))
    }

    /// The `IP_PKTINFO` message among the control messages in `control` (a cmsghdr is a
    /// size_t length and two ints, each message aligned to a size_t).
    private static func packetInfo(in control: UnsafeRawBufferPointer) -> in_pktinfo? {
        let headerSize = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
        var offset = 0
        while offset + headerSize <= control.count {
            let length = control.loadUnaligned(fromByteOffset: offset, as: Int.self)
            let level = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
            let type = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
            guard length >= headerSize, offset + length <= control.count else { return nil }
            if level == Int32(IPPROTO_IP), type == IP_PKTINFO, length - headerSize >= MemoryLayout<in_pktinfo>.size {
                return control.loadUnaligned(fromByteOffset: offset + headerSize, as: in_pktinfo.self)
            }
            offset += (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
        }
        return nil
    }
}
