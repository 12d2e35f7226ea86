import Glibc

/// An IPv6 address, as two halves in network order.
struct IPv6Address: Hashable, Sendable, CustomStringConvertible {
    var high: UInt64
    var low: UInt64

    init(bytes: some Collection<UInt8>) {
        let all = Array(bytes)
        high = all[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
        low = all[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
    }

    init(_ address: in6_addr) { self.init(bytes: withUnsafeBytes(of: address) { Array($0) }) }

    var bytes: [UInt8] { (0..<8).map { UInt8((high >> (56 - 8 * $0)) & 0xFF) } + (0..<8).map { UInt8((low >> (56 - 8 * $0)) & 0xFF) } }

    var in6: in6_addr {
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        return address
    }

    /// fe80::/10, reachable only with the interface named.
    var isLinkLocal: Bool { high >> 54 == 0x3FA }

    var description: String {
        var address = in6
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return "?" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An address of either family.
enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    case v6(IPv6Address)

    var description: String {
        switch self {
        case .v4(let address): dottedQuad(address)
        case .v6(let address): address.description
        }
    }
}

/// The address families mDNS runs over, each with its own socket and group.
enum AddressFamily: Hashable, Sendable, CustomStringConvertible {
    case v4, v6
    var description: String { self == .v4 ? "IPv4" : "IPv6" }
}

/// An interface that discovery can run on: its name, index and addresses (the first IPv4
/// one, and every IPv6 one).
struct NetworkInterface: Hashable, Sendable, CustomStringConvertible {
    var name: String
    var index: UInt32
    /// Host byte order, as are `netmask` and every IPv4 address in this plugin.
    var ipv4: (address: UInt32, netmask: UInt32)?
    var ipv6: [(address: IPv6Address, prefixLength: Int)] = []
    var isLoopback: Bool

    var description: String { "\(name) (\(([ipv4.map { dottedQuad($0.address) }].compactMap { $0 } + ipv6.map(\.address.description)).joined(separator: ", ")))" }

    /// The families it can carry mDNS in (loopback: IPv4 only).
    var families: [AddressFamily] { (ipv4 == nil ? [] : [.v4]) + (ipv6.isEmpty || isLoopback ? [] : [.v6]) }

    /// Whether `source` is on this interface's link: in its IPv4 subnet (any 127/8 address
    /// on loopback), link-local IPv6, or in one of its IPv6 prefixes.
    func isOnLink(_ source: IPAddress) -> Bool {
        switch source {
        case .v4(let address):
            guard let ipv4 else { return false }
            return isLoopback ? address >> 24 == 127 : address & ipv4.netmask == ipv4.address & ipv4.netmask
        case .v6(let address):
            return address.isLinkLocal || ipv6.contains { Self.samePrefix(address, $0.address, length: $0.prefixLength) }
        }
    }

    private static func samePrefix(_ a: IPv6Address, _ b: IPv6Address, length: Int) -> Bool {
        let length = max(0, min(128, length))
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? ~0 : ~0 << (64 - bits) }
        return a.high & mask(length) == b.high & mask(length) && a.low & mask(length - 64) == b.low & mask(length - 64)
    }

    static func == (a: NetworkInterface, b: NetworkInterface) -> Bool {
        a.name == b.name && a.index == b.index && a.isLoopback == b.isLoopback && a.ipv4?.address == b.ipv4?.address && a.ipv4?.netmask == b.ipv4?.netmask
            && a.ipv6.map(\.address) == b.ipv6.map(\.address) && a.ipv6.map(\.prefixLength) == b.ipv6.map(\.prefixLength)
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(index)
    }

    /// Whether it has `address`, of either family.
    func has(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let value): ipv4?.address == value
        case .v6(let value): ipv6.contains { $0.address == value }
        }
    }
}

/// Which interfaces the `interface` setting chooses.
enum InterfaceChoice: Sendable, Equatable, CustomStringConvertible {
    /// Every interface that is up, multicast-capable and not loopback; loopback when
    /// there is none.
    case automatic
    /// These names or IP addresses, in any mix.
    case listed([String])

    /// `auto`, a name or an address, or several of them in a list or separated by commas.
    init(parsing values: [String]) throws(DiscoveryError) {
        let entries = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !entries.isEmpty else {
            throw DiscoveryError("setting 'interface' is empty; give \"auto\", an interface name such as eth0 or lo, or an IP address")
        }
        if entries == ["auto"] {
            self = .automatic
            return
        }
        for entry in entries {
            guard ipv4Address(entry) != nil || ipv6Address(entry) != nil || isInterfaceName(entry) else {
                throw DiscoveryError(
                    "setting 'interface' has '\(entry)', which is neither an interface name (such as eth0 or lo) nor an IP address; give \"auto\", names or addresses")
            }
            if entry == "auto" { throw DiscoveryError("setting 'interface' lists 'auto' with other entries; give \"auto\" alone, or names and addresses") }
        }
        self = .listed(entries)
    }

    var description: String {
        switch self {
        case .automatic: "auto"
        case .listed(let entries): entries.joined(separator: ", ")
        }
    }

    /// The interfaces chosen among `all`, and the listed entries that match none of them.
    func select(from all: [NetworkInterface]) -> (chosen: [NetworkInterface], missing: [String]) {
        switch self {
        case .automatic:
            let outward = all.filter { !$0.isLoopback }
            return (outward.isEmpty ? all.filter(\.isLoopback) : outward, [])
        case .listed(let entries):
            var chosen: [NetworkInterface] = []
            var missing: [String] = []
            for entry in entries {
                let address = ipv4Address(entry).map(IPAddress.v4) ?? ipv6Address(entry).map(IPAddress.v6)
                let matches = all.filter { $0.name == entry || address.map($0.has) == true }
                if matches.isEmpty { missing.append(entry) }
                for match in matches where !chosen.contains(match) { chosen.append(match) }
            }
            return (chosen, missing)
        }
    }
}

/// The interfaces that are up and can carry multicast (loopback always can), with their
/// IPv4 and IPv6 addresses.
func currentInterfaces() -> [NetworkInterface] {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return [] }
    defer { freeifaddrs(list) }
    var found: [NetworkInterface] = []
    for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
        let flags = Int32(bitPattern: entry.pointee.ifa_flags)
        guard let address = entry.pointee.ifa_addr, flags & Int32(IFF_UP) != 0 else { continue }
        let family = Int32(address.pointee.sa_family)
        guard family == AF_INET || family == AF_INET6 else { continue }
        let isLoopback = flags & Int32(IFF_LOOPBACK) != 0
        guard isLoopback || flags & Int32(IFF_MULTICAST) != 0 else { continue }
        let name = String(cString: entry.pointee.ifa_name)
        var interface = found.first { $0.name == name } ?? NetworkInterface(name: name, index: if_nametoindex(entry.pointee.ifa_name), isLoopback: isLoopback)
        if family == AF_INET {
            guard interface.ipv4 == nil else { continue }
            let value = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
            let mask = entry.pointee.ifa_netmask.map { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) } }
            interface.ipv4 = (value, mask ?? 0xFFFF_FFFF)
        } else {
            let value = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { IPv6Address($0.pointee.sin6_addr) }
            let mask = entry.pointee.ifa_netmask.map { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { IPv6Address($0.pointee.sin6_addr) } }
            let length = mask.map { $0.high.nonzeroBitCount + $0.low.nonzeroBitCount } ?? 128
            interface.ipv6.append((value, length))
        }
        if let index = found.firstIndex(where: { $0.name == name }) { found[index] = interface } else { found.append(interface) }
    }
    return found
}

/// The IPv6 address in `text`, or nil.
func ipv6Address(_ text: String) -> IPv6Address? {
    var address = in6_addr()
    guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
    return IPv6Address(address)
}

/// The IPv4 address in `text` in host byte order, or nil.
func ipv4Address(_ text: String) -> UInt32? {
    var address = in_addr()
    guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
    return UInt32(bigEndian: address.s_addr)
}

/// A name Linux could give an interface: 1 to 15 bytes, none of them '/', ':' or white space.
private func isInterfaceName(_ text: String) -> Bool {
    (1...15).contains(text.utf8.count) && !text.utf8.contains { $0 <= 0x20 || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || $0 >= 0x7F }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}

/// `127.0.0.1` for 0x7F000001.
func dottedQuad(_ address: UInt32) -> String {
    "\(address >> 24).\((address >> 16) & 0xFF).\((address >> 8) & 0xFF).\(address & 0xFF)"
}
