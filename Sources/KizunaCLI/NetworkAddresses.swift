import Glibc

/// The machine's interfaces, for `kizuna run --interface`.
enum NetworkAddresses {
    /// `name` itself if it is an IPv4 address, else the first IPv4 address of the
    /// interface of that name.
    static func ipv4(of name: String) throws(CommandFailure) -> String {
        var parsed = in_addr()
        if inet_pton(AF_INET, name, &parsed) == 1 { return name }
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { throw CommandFailure("cannot list the network interfaces: \(String(cString: strerror(errno)))") }
        defer { freeifaddrs(list) }
        var names: [String] = []
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            let interface = String(cString: entry.pointee.ifa_name)
            guard interface == name else {
                if !names.contains(interface) { names.append(interface) }
                continue
            }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            var value = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            guard inet_ntop(AF_INET, &value, &text, socklen_t(text.count)) != nil else { continue }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        throw CommandFailure(
            "--interface \(name): no interface of that name has an IPv4 address; give one of \(names.joined(separator: ", ")) or an IPv4 address")
    }
}
