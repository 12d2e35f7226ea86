import Glibc

/// The machine's interfaces, for `kizuna run --interface`.
enum NetworkAddresses {
    /// `name` itself if it is an IP address, else the first IPv4 address of the interface
    /// of that name (or its first IPv6 one that is not link-local, if it has no IPv4).
    static func address(of name: String) throws(CommandFailure) -> String {
        var parsed4 = in_addr()
        var parsed6 = in6_addr()
        if inet_pton(AF_INET, name, &parsed4) == 1 || inet_pton(AF_INET6, name, &parsed6) == 1 { return name }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { throw CommandFailure("cannot list the network interfaces: \(String(cString: strerror(errno)))") }
        defer { freeifaddrs(list) }
        var names: [String] = []
        var ipv6: String?
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let address = entry.pointee.ifa_addr else { continue }
            let interface = String(cString: entry.pointee.ifa_name)
            if !names.contains(interface) { names.append(interface) }
            guard interface == name else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            if address.pointee.sa_family == sa_family_t(AF_INET) {
                var value = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                guard inet_ntop(AF_INET, &value, &text, socklen_t(text.count)) != nil else { continue }
                return string(text)
            }
            if address.pointee.sa_family == sa_family_t(AF_INET6), ipv6 == nil {
                var value = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                let isLinkLocal = withUnsafeBytes(of: value) { $0[0] == 0xFE && $0[1] & 0xC0 == 0x80 }
                if !isLinkLocal, inet_ntop(AF_INET6, &value, &text, socklen_t(text.count)) != nil { ipv6 = string(text) }
            }
        }
        if let ipv6 { return ipv6 }
        throw CommandFailure(
            "--interface \(name): no interface of that name has an IP address to listen on; give one of \(names.joined(separator: ", ")) or an IP address")
    }

    private static func string(_ text: [CChar]) -> String { String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
}
