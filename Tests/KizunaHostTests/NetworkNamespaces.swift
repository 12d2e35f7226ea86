import Foundation
import Glibc
import Synchronization

/// A small network of its own: `count` network namespaces, each with an `eth0` on one
/// bridge (in a namespace of its own too) and an IPv4 address in 10.77.0.0/24, made with
/// `ip` and removed by `remove()`. Nothing in it can reach the machine's own network, so
/// hosts in it may use their built-in settings (every interface) as they would on a LAN.
/// It needs root, as CI and the tests run; without it the test fails, saying so.
final class NetworkNamespaces: @unchecked Sendable {
    /// `ip` from iproute2, installed on first use where the machine lacks it
    /// (``DebianPackages``): the tests set up what they use.
    static let ipTool: String = {
        let candidates = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        func found() -> String? { candidates.first { FileManager.default.isExecutableFile(atPath: $0) } }
        if let path = found() { return path }
        DebianPackages.install(["iproute2"])
        return found() ?? "/usr/sbin/ip"
    }()
    private static let counter = Mutex(0)

    let prefix: String
    let bridge: String
    /// The hosts' namespaces, in order.
    let hosts: [String]

    /// Each host gets 10.77.0.N/24 with `ipv4` and fd77::N/64 with `ipv6` (besides the
    /// link-local address IPv6 gives every interface; duplicate address detection off,
    /// so the addresses are usable at once).
    init(count: Int, ipv4: Bool = true, ipv6: Bool = false) throws {
        Self.removeLeftovers()
        let serial = Self.counter.withLock {
            $0 += 1
            return $0
        }
        prefix = "kzt\(getpid())-\(serial)"
        bridge = "\(prefix)-br"
        let prefix = prefix
        hosts = (1...count).map { "\(prefix)-h\($0)" }
        do {
            try Self.ip(["netns", "add", bridge])
            // No multicast snooping: the bridge floods the mDNS groups to every port, as a
            // small switch does.
            try Self.ip(["-n", bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
            try Self.ip(["-n", bridge, "link", "set", "br0", "up"])
            for (index, host) in hosts.enumerated() {
                try Self.ip(["netns", "add", host])
                try Self.ip(["-n", bridge, "link", "add", "p\(index + 1)", "type", "veth", "peer", "name", "eth0", "netns", host])
                try Self.ip(["-n", bridge, "link", "set", "p\(index + 1)", "master", "br0", "up"])
                try Self.ip(["-n", host, "link", "set", "lo", "up"])
                if ipv6 {
                    try Self.ip(["netns", "exec", host, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.eth0.accept_dad=0"])
                    try Self.ip(["-n", host, "addr", "add", "fd77::\(index + 1)/64", "dev", "eth0", "nodad"])
                } else {
                    try Self.ip(["netns", "exec", host, "sysctl", "-q", "-w", "net.ipv6.conf.eth0.disable_ipv6=1"])
                }
                if ipv4 { try Self.ip(["-n", host, "addr", "add", "10.77.0.\(index + 1)/24", "dev", "eth0"]) }
                try Self.ip(["-n", host, "link", "set", "eth0", "up"])
            }
        } catch {
            remove()
            throw error
        }
    }

    /// 10.77.0.N for the host at `index` (from 0).
    func address(of index: Int) -> String { "10.77.0.\(index + 1)" }

    /// Runs `ip ARGUMENTS` in the namespace of the host at `index`.
    func ip(in index: Int, _ arguments: [String]) throws { try Self.ip(["-n", hosts[index]] + arguments) }

    func remove() {
        for namespace in hosts + [bridge] { try? Self.ip(["netns", "delete", namespace]) }
    }

    /// Namespaces that runs killed before they could remove them left behind.
    private static func removeLeftovers() {
        guard let listed = try? run(["netns", "list"]) else { return }
        for line in listed.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix("kzt"), let pid = Int32(name.dropFirst(3).prefix { $0.isNumber }), kill(pid, 0) != 0, errno == ESRCH else { continue }
            _ = try? run(["netns", "delete", name])
        }
    }

    static func ip(_ arguments: [String]) throws { _ = try run(arguments) }

    @discardableResult
    private static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ipTool)
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do {
            try process.run()
        } catch {
            throw HostFailure("cannot run \(ipTool) (iproute2) to make network namespaces: \(error); install iproute2 and run the tests as root")
        }
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HostFailure(
                "ip \(arguments.joined(separator: " ")) failed: \(String(decoding: stderr, as: UTF8.self)); these tests make network namespaces and need root")
        }
        return String(decoding: stdout, as: UTF8.self)
    }
}
