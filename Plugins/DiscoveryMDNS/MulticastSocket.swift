import Glibc

/// A UDP socket joined to the mDNS group on one IPv4 interface. It sends only there
/// (`IP_MULTICAST_IF`), hears its own packets back (`IP_MULTICAST_LOOP`, which is how
/// hosts on one machine find each other), and shares the port with other responders.
final class MulticastSocket: Sendable {
    static let groupAddress = "224.0.0.251"
    let fd: Int32
    let port: UInt16
    private let group: in_addr

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// - Parameters:
    ///   - interface: the IPv4 address of the interface to use, such as `127.0.0.1`.
    init(interface: String, port: UInt16) throws(Failure) {
        var interfaceAddress = in_addr()
        guard inet_pton(AF_INET, interface, &interfaceAddress) == 1 else {
            throw Failure(description: "'\(interface)' is not an IPv4 address; set 'interface' to the address of the interface to announce on, such as 127.0.0.1")
        }
        var groupAddress = in_addr()
        _ = inet_pton(AF_INET, Self.groupAddress, &groupAddress)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot open a UDP socket: \(String(cString: strerror(errno)))") }
        func option<T: BitwiseCopyable>(_ level: Int32, _ name: Int32, _ value: T, _ what: String) throws(Failure) {
            let status = withUnsafeBytes(of: value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
            guard status == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw Failure(description: "cannot set \(what) on the mDNS socket: \(reason)")
            }
        }
        try option(SOL_SOCKET, SO_REUSEADDR, Int32(1), "SO_REUSEADDR")
        try option(SOL_SOCKET, SO_REUSEPORT, Int32(1), "SO_REUSEPORT")
        // Every responder on the machine hears every mDNS packet: room for bursts.
        try option(SOL_SOCKET, SO_RCVBUF, Int32(1 << 20), "SO_RCVBUF")
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
        try option(Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, ip_mreq(imr_multiaddr: groupAddress, imr_interface: interfaceAddress), "IP_ADD_MEMBERSHIP on \(interface)")
        try option(Int32(IPPROTO_IP), IP_MULTICAST_IF, interfaceAddress, "IP_MULTICAST_IF \(interface)")
        try option(Int32(IPPROTO_IP), IP_MULTICAST_LOOP, UInt8(1), "IP_MULTICAST_LOOP")
        try option(Int32(IPPROTO_IP), IP_MULTICAST_TTL, UInt8(255), "IP_MULTICAST_TTL")
        // Only the groups this socket joined, not every group any socket on the machine joined.
        try option(Int32(IPPROTO_IP), IP_MULTICAST_ALL, Int32(0), "IP_MULTICAST_ALL")
        self.fd = fd
        self.port = port
        group = groupAddress
    }

    deinit { close(fd) }

    /// Sends `packet` to the group.
    @discardableResult
    func send(_ packet: [UInt8]) -> Bool {
        var destination = sockaddr_in()
        destination.sin_family = sa_family_t(AF_INET)
        destination.sin_port = port.bigEndian
        destination.sin_addr = group
        return packet.withUnsafeBytes { bytes in
            withUnsafePointer(to: &destination) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        } == packet.count
    }

    /// The next packet and its sender's address, or nil if none came within `timeoutMilliseconds`.
    func receive(timeoutMilliseconds: Int32) -> (packet: [UInt8], source: UInt32)? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, timeoutMilliseconds) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 9000)
        var source = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = buffer.withUnsafeMutableBytes { bytes in
            withUnsafeMutablePointer(to: &source) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &length) }
            }
        }
        guard count >= 0 else { return nil }
        return (Array(buffer[..<count]), UInt32(bigEndian: source.sin_addr.s_addr))
    }
}

/// `127.0.0.1` for 0x7F000001.
func dottedQuad(_ address: UInt32) -> String {
    "\(address >> 24).\((address >> 16) & 0xFF).\((address >> 8) & 0xFF).\(address & 0xFF)"
}
