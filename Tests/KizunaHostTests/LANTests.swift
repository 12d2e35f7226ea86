import Foundation
import Glibc
import KizunaSDK
import Testing

/// Hosts on a network of their own (network namespaces on a bridge, see
/// ``NetworkNamespaces``) with the built-in manifests as they ship: discovery on every
/// interface, the transport on every address, nothing edited.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(3))) struct LANTests {
        /// The built-in manifests, unedited, or with `edits` (old → new) made.
        static func manifests(in work: String, edits: [String: String] = [:]) throws -> String {
            let directory = "\(work)/plugins"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for file in try FileManager.default.contentsOfDirectory(atPath: "\(BuiltinHost.repository)/manifests") where file.hasSuffix(".toml") {
                var text = try String(contentsOfFile: "\(BuiltinHost.repository)/manifests/\(file)", encoding: .utf8)
                for (old, new) in edits where text.contains(old) { text = text.replacingOccurrences(of: old, with: new) }
                try text.write(toFile: "\(directory)/\(file)", atomically: true, encoding: .utf8)
            }
            return directory
        }

        /// `host`'s peers, as `kizuna peers --json` lists them.
        static func peers(of host: BuiltinHost) throws -> [Peer] {
            let printed = try host.cli(["peers", "--json"])
            guard printed.status == 0 else { throw HostFailure("kizuna peers failed on \(host.name): \(printed.stderr)") }
            return try JSONDecoder().decode([Peer].self, from: Data(printed.stdout.utf8))
        }

        /// Asks `condition` every 100 ms until it holds or `seconds` pass; whether it held.
        static func eventually(within seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while Date() < deadline {
                if try condition() { return true }
                usleep(100_000)
            }
            return try condition()
        }

        /// Asks `condition` every 200 ms for `seconds`; whether it held every time (for
        /// what must stay true, such as a peer staying listed).
        static func always(for seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while Date() < deadline {
                guard try condition() else { return false }
                usleep(200_000)
            }
            return true
        }

        static func addresses(of peer: String, seenBy host: BuiltinHost) throws -> [String] {
            try peers(of: host).first { $0.id.rawValue == peer }?.addresses.map { "\($0.host):\($0.port)" } ?? []
        }

        /// Three hosts on `network` with the manifests as shipped: each says it runs on eth0
        /// over `family`, lists the other two first at `address(index)`, and a file goes
        /// from one to another.
        static func threeHostsFindEachOtherAndSendAFile(on network: NetworkNamespaces, family: String, address: (Int) -> String) throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = "\(BuiltinHost.repository)/manifests"
            let hosts = try ["aiko", "bo", "chie"].enumerated().map { index, name in
                try BuiltinHost(name: name, work: work, plugins: plugins, namespace: network.hosts[index])
            }
            defer { for host in hosts { _ = host.kill() } }
            for (index, host) in hosts.enumerated() {
                #expect(host.startup.contains { $0.contains("discovery runs on eth0 (\(address(index))") && $0.hasSuffix("over \(family)") }, "\(host.startup)")
            }
            for (index, host) in hosts.enumerated() {
                let others = hosts.enumerated().filter { $0.offset != index }
                let found = try Self.eventually(within: 20) {
                    try others.allSatisfy { other in try Self.addresses(of: other.element.id, seenBy: host).first?.hasPrefix("\(address(other.offset)):") == true }
                }
                let listed = try Self.peers(of: host)
                #expect(found, "\(host.name) lists \(listed)")
            }
            let source = "\(work)/photo.bin"
            try writeRandomFile(source, bytes: 3 << 20)
            let sent = try hosts[0].cli(["send", source, "--to", hosts[2].id])
            #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: source, andPath: "\(hosts[2].receiveDirectory)/photo.bin"))
        }

        @Test func threeHostsWithTheManifestsAsShippedFindEachOtherAndSendAFile() throws {
            let network = try NetworkNamespaces(count: 3)
            defer { network.remove() }
            try Self.threeHostsFindEachOtherAndSendAFile(on: network, family: "IPv4", address: network.address(of:))
        }

        @Test func threeHostsOnIPv6OnlyFindEachOtherAndSendAFile() throws {
            let network = try NetworkNamespaces(count: 3, ipv4: false, ipv6: true)
            defer { network.remove() }
            // First at the ULA address, fd77::N (link-local ones follow).
            try Self.threeHostsFindEachOtherAndSendAFile(on: network, family: "IPv6") { "fd77::\($0 + 1)" }
        }

        @Test func runInterfaceKeepsAHostToOneInterface() throws {
            let network = try NetworkNamespaces(count: 1)
            defer { network.remove() }
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = "\(BuiltinHost.repository)/manifests"
            let host = try BuiltinHost(name: "aiko", work: work, plugins: plugins, arguments: ["--interface", "lo"], namespace: network.hosts[0])
            defer { _ = host.kill() }
            #expect(host.startup.contains { $0.contains("discovery runs on lo (127.0.0.1") && $0.hasSuffix("over IPv4") }, "\(host.startup)")
            #expect(!host.startup.contains { $0.contains("discovery runs on eth0") }, "\(host.startup)")
            #expect(try host.transportPort() > 0)  // it listens on 127.0.0.1

            let unknown = try CLI.run(["run", "--interface", "nosuch0", "--plugins-dir", plugins, "--state-dir", "\(work)/other"])
            #expect(unknown.status != 0)
            #expect(unknown.stderr.contains("--interface nosuch0: no interface of that name has an IP address to listen on; give one of"), "\(unknown.stderr)")
        }

        @Test func avahiAndKizunaSeeEachOtherOverIPv4AndIPv6AndNeitherSeesAConflict() throws {
            let network = try NetworkNamespaces(count: 2, ipv4: true, ipv6: true)
            defer { network.remove() }
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let avahi = try Avahi(work: work)
            defer { avahi.stopAll() }
            // One Avahi beside Kizuna in its namespace, one on the other host.
            try avahi.daemon(in: network.hosts[0], hostName: "avahi-one")
            try avahi.daemon(in: network.hosts[1], hostName: "avahi-two")
            let host = try BuiltinHost(name: "aiko", work: work, plugins: "\(BuiltinHost.repository)/manifests", namespace: network.hosts[0])
            defer { _ = host.kill() }
            let instance = "aiko-\(host.id.prefix(8))"

            // Avahi on the other host browses Kizuna's service and resolves it over both families.
            var browsed = ""
            let seen = try Self.eventually(within: 20) {
                browsed = try avahi.run(in: network.hosts[1], of: "avahi-two", "avahi-browse", ["-rtp", "_kizuna._tcp"])
                return browsed.contains("=;eth0;IPv4;\(instance);_kizuna._tcp;local;") && browsed.contains("=;eth0;IPv6;\(instance);_kizuna._tcp;local;")
            }
            #expect(seen, "\(browsed)")
            #expect(browsed.contains(";10.77.0.1;") && browsed.contains("\"id=\(host.id)\""), "\(browsed)")
            // Its host name has AAAA records (and the NSEC that says there is nothing else).
            let resolved = try avahi.run(in: network.hosts[1], of: "avahi-two", "avahi-resolve", ["-6", "-n", "kizuna-\(host.id.prefix(50)).local"])
            #expect(resolved.contains("fd77::1") || resolved.contains("fe80::"), "\(resolved)")

            // A service Avahi publishes is a peer Kizuna lists, at both addresses.
            try avahi.background(in: network.hosts[1], of: "avahi-two", "avahi-publish", ["-s", "avahi-service", "_kizuna._tcp", "4242", "id=avahi-peer", "services=file-transfer"], log: "publish")
            let found = try Self.eventually(within: 20) {
                let listed = try Self.addresses(of: "avahi-peer", seenBy: host)
                return listed.contains("10.77.0.2:4242") && listed.contains("fd77::2:4242")
            }
            let listed = try Self.addresses(of: "avahi-peer", seenBy: host)
            #expect(found, "\(listed); \(avahi.log("publish"))")

            // Nobody's names collided: not Kizuna's, not either Avahi's.
            for name in ["avahi-one", "avahi-two", "publish"] {
                #expect(!avahi.log(name).lowercased().contains("conflict"), "\(name): \(avahi.log(name))")
            }
            let stopped = host.kill()
            #expect(stopped == 0)
            // Everything the host printed after its start, up to its exit.
            let printed = host.startup + host.process.waitForLine(containing: "taking a new name")
            #expect(!printed.contains { $0.contains("taking a new name") || $0.contains("two instances announce") }, "\(printed)")
        }

        @Test func zeroconfAndKizunaSeeEachOtherOverIPv6Only() throws {
            try TestPython.requireZeroconf()
            let network = try NetworkNamespaces(count: 2, ipv4: false, ipv6: true)
            defer { network.remove() }
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let browser = try DiscoveryTests.Python("browse.py", ["40"], namespace: network.hosts[1], address: "fd77::2")
            defer { browser.stop() }
            _ = browser.next("browsing")
            let host = try BuiltinHost(name: "aiko", work: work, plugins: "\(BuiltinHost.repository)/manifests", namespace: network.hosts[0])
            defer { _ = host.kill() }
            // python-zeroconf resolves Kizuna's service to its IPv6 addresses.
            let added = try #require(browser.next("added") { ($0["properties"] as? [String: String])?["id"] == host.id })
            let addresses = added["addresses"] as? [String] ?? []
            #expect(addresses.contains("fd77::1"), "\(added)")

            // And Kizuna lists a service python-zeroconf registers, at its IPv6 address.
            let registrar = try DiscoveryTests.Python("register.py", ["python-v6", "py-v6-peer", "4242"], namespace: network.hosts[1], address: "fd77::2")
            defer { registrar.stop() }
            #expect(registrar.next("registered") != nil)
            let found = try Self.eventually(within: 20) { try Self.addresses(of: "py-v6-peer", seenBy: host).contains("fd77::2:4242") }
            let listed = try Self.addresses(of: "py-v6-peer", seenBy: host)
            #expect(found, "\(listed)")
        }

        @Test func anAddressChangedUnderARunningHostIsFollowedByItsPeers() throws {
            let network = try NetworkNamespaces(count: 2)
            defer { network.remove() }
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = "\(BuiltinHost.repository)/manifests"
            let a = try BuiltinHost(name: "aiko", work: work, plugins: plugins, namespace: network.hosts[0])
            defer { _ = a.kill() }
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins, namespace: network.hosts[1])
            defer { _ = b.kill() }
            #expect(try Self.eventually(within: 20) { try Self.addresses(of: b.id, seenBy: a).first?.hasPrefix("10.77.0.2:") == true })

            // bo is renumbered: aiko lists it at its new address within seconds, and can still send to it.
            try network.ip(in: 1, ["addr", "del", "10.77.0.2/24", "dev", "eth0"])
            try network.ip(in: 1, ["addr", "add", "10.77.0.12/24", "dev", "eth0"])
            let followed = try Self.eventually(within: 15) { try Self.addresses(of: b.id, seenBy: a).first?.hasPrefix("10.77.0.12:") == true }
            let listed = try Self.addresses(of: b.id, seenBy: a)
            #expect(followed, "aiko lists bo at \(listed)")
            let source = "\(work)/after.bin"
            try writeRandomFile(source, bytes: 1 << 20)
            let sent = try a.cli(["send", source, "--to", b.id])
            #expect(sent.status == 0, "\(sent.stdout)\(sent.stderr)")
        }

        @Test func aPeerKilledWithoutAGoodbyeIsDroppedWithinItsTTLAndNoLongerAskedFor() throws {
            let network = try NetworkNamespaces(count: 2)
            defer { network.remove() }
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            // A short TTL for the hosts' records, so the test takes seconds, not two minutes.
            let plugins = try Self.manifests(in: work, edits: ["host-ttl-seconds = 120": "host-ttl-seconds = 6"])
            let a = try BuiltinHost(name: "aiko", work: work, plugins: plugins, namespace: network.hosts[0])
            defer { _ = a.kill() }
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins, namespace: network.hosts[1])
            #expect(try Self.eventually(within: 20) { try Self.addresses(of: b.id, seenBy: a).isEmpty == false })
            // For more than two TTLs bo stays listed: aiko refreshes its records before they expire.
            try a.waitFor("peer found: \(b.id)")
            let stayed = try Self.always(for: 14) { try Self.addresses(of: b.id, seenBy: a).isEmpty == false }
            #expect(stayed, "aiko dropped bo while it was running")

            let killed = Date()
            _ = b.kill(SIGKILL)
            try a.waitFor("peer lost: \(b.id)")
            let after = Date().timeIntervalSince(killed)
            #expect(after < 8, "bo was dropped \(after) s after it was killed, with a 6 s TTL")

            // Then aiko asks nothing more about bo: a listener on the link hears no query naming it.
            let heard = try MDNSListener.packets(in: network.hosts[0], address: network.address(of: 0), seconds: 10)
            let label = Array("bo-\(b.id.prefix(8))".utf8)
            let naming = heard.filter { packet in packet.count > 12 && packet[2] & 0x80 == 0 && packet.indices.contains { packet[$0...].starts(with: label) } }
            #expect(naming.isEmpty, "\(naming.count) of \(heard.count) queries in 10 s still name bo")
        }

        @Test func twoHostsWithOneIdentityEndUpWithDistinctNamesAndAThirdKeepsTheFirst() throws {
            let network = try NetworkNamespaces(count: 3)
            defer { network.remove() }
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = "\(BuiltinHost.repository)/manifests"
            let watcher = try BuiltinHost(name: "chie", work: work, plugins: plugins, namespace: network.hosts[2])
            defer { _ = watcher.kill() }
            let first = try BuiltinHost(name: "aiko", work: work, plugins: plugins, namespace: network.hosts[0])
            defer { _ = first.kill() }
            #expect(try Self.eventually(within: 20) { try Self.addresses(of: first.id, seenBy: watcher).first?.hasPrefix("10.77.0.1:") == true })

            // A copy of aiko's state: the same key, id and name, on another host.
            let copy = "\(work)/copy"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: first.stateDirectory, toPath: "\(copy)/aiko-state")
            try? FileManager.default.removeItem(atPath: "\(copy)/aiko-state/lock")
            let second = try BuiltinHost(name: "aiko", work: copy, plugins: plugins, namespace: network.hosts[1])
            defer { _ = second.kill() }
            #expect(second.id == first.id)
            // The newcomer finds its names taken when it probes, and takes others.
            try second.waitFor("taking a new name")
            // The watcher reports the duplicate id and keeps the host it heard first.
            try watcher.waitFor("two instances announce the peer id")
            let kept = try Self.always(for: 6) { try Self.addresses(of: first.id, seenBy: watcher).first?.hasPrefix("10.77.0.1:") == true }
            #expect(kept, "the watcher moved aiko's address to the copy's")
        }
    }
}

/// Everything sent to the mDNS group on a namespace's link for a while, heard by a plain
/// socket joined to the group there (python, which the tests already use).
enum MDNSListener {
    /// `address`: that of the interface to listen on.
    static func packets(in namespace: String, address: String, seconds: Double) throws -> [[UInt8]] {
        let script = """
            import socket, struct, sys, time, binascii
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(('', 5353))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack('4s4s', socket.inet_aton('224.0.0.251'), socket.inet_aton(sys.argv[2])))
            end = time.time() + float(sys.argv[1])
            while True:
                left = end - time.time()
                if left <= 0: break
                s.settimeout(left)
                try:
                    data, _ = s.recvfrom(9000)
                except socket.timeout:
                    break
                print(binascii.hexlify(data).decode(), flush=True)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NetworkNamespaces.ipTool)
        process.arguments = ["netns", "exec", namespace, "python3", "-c", script, String(seconds), address]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw HostFailure("the mDNS listener in \(namespace) failed (status \(process.terminationStatus))") }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            stride(from: 0, to: line.count - 1, by: 2).map { offset in
                let start = line.index(line.startIndex, offsetBy: offset)
                return UInt8(line[start...line.index(after: start)], radix: 16) ?? 0
            }
        }
    }
}
