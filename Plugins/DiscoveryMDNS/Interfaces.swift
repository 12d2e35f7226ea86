import Glibc

/// An IPv4 interface that discovery can run on: its name, index and primary address.
struct NetworkInterface: Hashable, Sendable, CustomStringConvertible {
    var name: String
    var index: UInt32
    /// Host byte order, as are `netmask` and every address in this plugin.
    var address: UInt32
    var netmask: UInt32
    var isLoopback: Bool

    var description: String { "\(name) (\(dottedQuad(address)))" }

    /// Whether `source` is on this interface's link: in its subnet (any 127/8 address on
    /// loopback).
    func isOnLink(_ source: UInt32) -> Bool {
        isLoopback ? source >> 24 == 127 : source & netmask == address & netmask
    }
}

/// Which interfaces the `interface` setting chooses.
enum InterfaceChoice: Sendable, Equatable, CustomStringConvertible {
    /// Every interface that is up, multicast-capable and not loopback; loopback when
    /// there is none.
    case automatic
    /// These names or IPv4 addresses, in any mix.
    case listed([String])

    /// `auto`, a name or an address, or several of them in a list or separated by commas.
    init(parsing values: [String]) throws(DiscoveryError) {
        let entries = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
        guard !entries.isEmpty else {
            throw DiscoveryError("setting 'interface' is empty; give \"auto\", an interface name such as eth0 or lo, or an IPv4 address")
        }
        if entries == ["auto"] {
            self = .automatic
            return
        }
        for entry in entries {
            guard ipv4Address(entry) != nil || isInterfaceName(entry) else {
                throw DiscoveryError(
                    "setting 'interface' has '\(entry)', which is neither an interface name (such as eth0 or lo) nor an IPv4 address; give \"auto\", names or addresses")
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
                let address = ipv4Address(entry)
                let matches = all.filter { $0.name == entry || $0.address == address }
                if matches.isEmpty { missing.append(entry) }
                for match in matches where !chosen.contains(match) { chosen.append(match) }
            }
            return (chosen, missing)
        }
    }
}

/// The IPv4 interfaces that are up and can carry multicast (loopback always can), with
/// the first address of each.
func currentInterfaces() -> [NetworkInterface] {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0, let first = list else { return [] }
    defer { freeifaddrs(list) }
    var found: [NetworkInterface] = []
    for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
        let flags = Int32(bitPattern: entry.pointee.ifa_flags)
        guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
            flags & Int32(IFF_UP) != 0
        else { continue }
        let isLoopback = flags & Int32(IFF_LOOPBACK) != 0
        guard isLoopback || flags & Int32(IFF_MULTICAST) != 0 else { continue }
        let name = String(cString: entry.pointee.ifa_name)
        guard !found.contains(where: { $0.name == name }) else { continue }
        let value = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
        let mask = entry.pointee.ifa_netmask.map { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) } }
        found.append(NetworkInterface(name: name, index: if_nametoindex(entry.pointee.ifa_name), address: value, netmask: mask ?? 0xFFFF_FFFF, isLoopback: isLoopback))
    }
    return found
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
