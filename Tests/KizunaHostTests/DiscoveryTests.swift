import Foundation
import Glibc
import KizunaHost
import KizunaSDK
import Testing

/// The mDNS discovery plugin against an independent implementation (python-zeroconf, which
/// the tests install for themselves if need be), against garbage, and the transport swapped under running hosts.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(3))) struct DiscoveryTests {
        static let zeroconf = "\(BuiltinHost.repository)/Tests/Fixtures/zeroconf"

        /// A Python helper from Tests/Fixtures/zeroconf, its output read line by line.
        final class Python: @unchecked Sendable {
            let process = Process()
            let input = Pipe()
            let output = Pipe()
            private var buffer = Data()

            /// In `namespace` (a network namespace) if given, on the interface of `address`
            /// (default 127.0.0.1; an IPv6 address makes the helper IPv6 only).
            init(_ script: String, _ arguments: [String], namespace: String? = nil, address: String? = nil) throws {
                let command = ["/usr/bin/env", "python3", "\(zeroconf)/\(script)"] + arguments
                if let namespace {
                    process.executableURL = URL(fileURLWithPath: NetworkNamespaces.ipTool)
                    process.arguments = ["netns", "exec", namespace] + command
                } else {
                    process.executableURL = URL(fileURLWithPath: command[0])
                    process.arguments = Array(command.dropFirst())
                }
                process.environment = TestPython.environment.merging(address.map { ["KIZUNA_ZC_ADDRESS": $0] } ?? [:]) { $1 }
                process.standardInput = input
                process.standardOutput = output
                try process.run()
                let process = process
                // SIGKILL: the test process may block SIGTERM, and a child inherits that mask.
                DispatchQueue.global().asyncAfter(deadline: .now() + 60) { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            }

            /// Ends the helper at once (it holds the test run's stderr while it lives).
            func stop() {
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
            }

            /// The next JSON line whose key `key` is set, or nil if the script ends first.
            func next(_ key: String, where matches: ([String: Any]) -> Bool = { _ in true }) -> [String: Any]? {
                while true {
                    while let newline = buffer.firstIndex(of: 0x0A) {
                        let line = buffer[buffer.startIndex..<newline]
                        buffer.removeSubrange(buffer.startIndex...newline)
                        if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], object[key] != nil, matches(object) {
                            return object
                        }
                    }
                    let chunk = output.fileHandleForReading.availableData
                    if chunk.isEmpty { return nil }
                    buffer += chunk
                }
            }
        }

        /// python-zeroconf, installed by the tests themselves when the machine lacks it.
        static func requireZeroconf() throws { try TestPython.requireZeroconf() }

        @Test func zeroconfSeesAKizunaHostAndItsGoodbye() throws {
            try Self.requireZeroconf()
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: "_kizuna._tcp")
            let browser = try Python("browse.py", ["40"])
            defer { browser.stop() }
            _ = browser.next("browsing")
            let host = try BuiltinHost(name: "kizuna-interop", work: work, plugins: plugins)
            let added = try #require(browser.next("added") { ($0["properties"] as? [String: String])?["id"] == host.id })
            let name = try #require(added["added"] as? String)
            let properties = try #require(added["properties"] as? [String: String])
            #expect(name.hasSuffix("._kizuna._tcp.local."))
            #expect(properties["name"] == "kizuna-interop")
            #expect(properties["version"] == SDKInfo.version)
            #expect(properties["services"]?.split(separator: ",").contains("file-transfer") == true)
            #expect((added["addresses"] as? [String]) == ["127.0.0.1"])
            #expect((added["port"] as? Int ?? 0) > 0)

            #expect(host.kill() == 0)
            #expect(browser.next("removed") { $0["removed"] as? String == name } != nil)
        }

        @Test func kizunaSeesAServiceRegisteredWithZeroconf() throws {
            try Self.requireZeroconf()
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: "_kizuna._tcp")
            let host = try BuiltinHost(name: "kizuna-browser", work: work, plugins: plugins)
            defer { _ = host.kill() }
            let id = "py-\(UUID().uuidString.prefix(8).lowercased())"
            let registrar = try Python("register.py", ["python-\(id)", id, "4242"])
            defer { registrar.stop() }
            #expect(registrar.next("registered") != nil)
            try host.waitFor("peer found: \(id) (python-\(id)) at 127.0.0.1:4242")
            let peers = try JSONDecoder().decode([Peer].self, from: Data(try host.cli(["peers", "--json"]).stdout.utf8))
            #expect(peers.first { $0.id.rawValue == id }?.services == ["file-transfer"])
            try registrar.input.fileHandleForWriting.close()  // withdraw: zeroconf sends its goodbye
            try host.waitFor("peer lost: \(id)")
        }

        @Test func garbagePacketsAreDroppedAndCountedAndDiscoveryGoesOn() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let a = try BuiltinHost(name: "aiko", work: work, plugins: plugins)
            defer { _ = a.kill() }
            let header: [UInt8] = [0, 0, 0x84, 0]
            let garbage: [[UInt8]] = [
                [0xFF],  // shorter than a header
                header + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],  // counts no packet could hold
                [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1],  // a name pointing at itself
                header + [0, 0, 0, 1, 0, 0, 0, 0, 4, 0x5F, 0x6B, 0x7A],  // a record cut off in its name
                header + [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 120, 0, 9, 1, 2, 3, 4],  // an A record of 9 bytes
                header + [0, 0, 0, 1, 0, 0, 0, 0, 0x80, 0, 1, 0, 1],  // a reserved label type
                (0..<300).map { _ in UInt8.random(in: 0...255) },
            ]
            // The host reports running once the plugin is ready (its socket bound): one batch,
            // then wait (with a deadline) until it is counted.
            for packet in garbage { try sendMulticast(packet) }
            var counted = 0
            let deadline = Date(timeIntervalSinceNow: 20)
            while counted < garbage.count, Date() < deadline {
                usleep(20_000)
                counted = Int(try a.cli(["plugins", "call", "mdns-discovery", "malformed-packets"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            }
            #expect(counted >= garbage.count)

            // A valid response (PTR, SRV, TXT and A with compressed names), then 1500 copies
            // with bytes flipped, cut short or grown: whatever parses is learned, the rest is
            // counted, and nothing crashes.
            let valid = Self.sampleResponse()
            var generator = SystemRandomNumberGenerator()
            for round in 0..<1500 {
                var packet = valid
                for _ in 0..<(1 + round % 4) { packet[Int.random(in: 0..<packet.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
                if round % 5 == 0 { packet = Array(packet.prefix(Int.random(in: 0..<packet.count, using: &generator))) }
                if round % 7 == 0 { packet += (0..<Int.random(in: 1...40, using: &generator)).map { _ in UInt8.random(in: 0...255) } }
                try sendMulticast(packet)
                if round % 100 == 99 { usleep(5_000) }  // let the receiver keep up: the point is the parser, not the socket buffer
            }        // Still running, still finding peers.
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins)
            defer { _ = b.kill() }
            try a.waitFor("peer found: \(b.id)")
            #expect(try a.cli(["plugins", "info", "mdns-discovery"]).stdout.contains("running"))
        }

        @Test func controlCharactersInAnAnnouncedNameNeverReachATerminal() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let type = BuiltinHost.serviceType()
            let a = try BuiltinHost(name: "aiko", work: work, plugins: try BuiltinHost.pluginsDirectory(in: work, serviceType: type))
            defer { _ = a.kill() }
            let labels = type.split(separator: ".").map(String.init)
            let packet = Self.sampleResponse(service: labels, txt: ["id=esc-peer", "name=evil\u{1B}[2J\u{1B}]0;owned\u{07}\nforged line"])
            var listed = ""
            let deadline = Date(timeIntervalSinceNow: 20)
            while !listed.contains("esc-peer"), Date() < deadline {
                try sendMulticast(packet)
                usleep(200_000)
                listed = try a.cli(["peers"]).stdout
            }
            #expect(listed.contains("esc-peer"), "\(listed)")
            #expect(!listed.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 }, "\(listed.debugDescription)")
            #expect(listed.contains("evil\\u{1b}[2J"), "\(listed.debugDescription)")
        }

        /// An mDNS response for `fuzz.SERVICE.local`, with name compression.
        static func sampleResponse(service labels: [String] = ["_kztest", "_tcp"], txt entries: [String] = ["id=fuzz", "services=file-transfer"]) -> [UInt8] {
            var packet: [UInt8] = [0, 0, 0x84, 0, 0, 0, 0, 4, 0, 0, 0, 0]
            func name(_ labels: [String]) -> [UInt8] { labels.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0] }
            func record(_ owner: [UInt8], type: UInt16, _ data: [UInt8]) -> [UInt8] {
                owner + [UInt8(type >> 8), UInt8(type & 0xFF), 0x80, 1, 0, 0, 0x11, 0x94, UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
            }
            let serviceOffset = packet.count
            let service = name(labels + ["local"])
            let instance: [UInt8] = [4] + Array("fuzz".utf8) + [0xC0, UInt8(serviceOffset)]
            packet += record(service, type: 12, instance)
            let instanceOffset = packet.count - instance.count
            let pointerToInstance: [UInt8] = [0xC0, UInt8(instanceOffset)]
            let host = name(["fuzzhost", "local"])
            packet += record(pointerToInstance, type: 33, [0, 0, 0, 0, 0x10, 0x92] + host)
            let txt = entries.flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) }
            packet += record(pointerToInstance, type: 16, txt)
            packet += record(host, type: 1, [127, 0, 0, 1])
            return packet
        }

        /// Sends `packet` to the mDNS group on loopback only, from the mDNS port (responders
        /// take responses from no other, RFC 6762, 11.).
        func sendMulticast(_ packet: [UInt8]) throws { try LoopbackUDP(port: 5353).sendToGroup(packet) }

        /// Swapping the transport: a different library file is loaded in place of the running
        /// one while the host process, and the file-transfer plugin's library, stay as they are.
        @Test func theTransportIsSwappedWithoutRebuildingAnythingElse() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let transport = "\(plugins)/libKizunaTransportTCP.so"
            try FileManager.default.copyItem(atPath: "\(Fixtures.buildDirectory)/libKizunaTransportTCP.so", toPath: transport)
            let (a, b) = try BuiltinHost.pair(work: work, plugins: plugins)
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let fileTransferBefore = try a.cli(["plugins", "info", "file-transfer", "--json"]).stdout
            let transportBefore = try JSONDecoder().decode(ListedPlugin.self, from: Data(try a.cli(["plugins", "info", "tcp-transport", "--json"]).stdout.utf8))
            #expect(transportBefore.library == transport)

            // The second build: another file with other bytes (the same code with a trailer the
            // loader ignores), put in place the way an installer would, by rename.
            var bytes = try Data(contentsOf: URL(fileURLWithPath: transport))
            bytes.append(Data(repeating: 0x4B, count: 4096))
            try bytes.write(to: URL(fileURLWithPath: transport + ".new"))
            #expect(rename(transport + ".new", transport) == 0)
            let reloaded = try a.cli(["plugins", "reload", "tcp-transport"])
            #expect(reloaded.status == 0, "\(reloaded.stderr)")
            let transportAfter = try JSONDecoder().decode(ListedPlugin.self, from: Data(try a.cli(["plugins", "info", "tcp-transport", "--json"]).stdout.utf8))
            #expect(transportAfter.library == transportBefore.library)
            #expect(transportAfter.image != transportBefore.image && transportAfter.sha256 != transportBefore.sha256)
            #expect(transportAfter.image?.contains("/images/\(transportAfter.sha256 ?? "-")/") == true)
            #expect(transportAfter.state == "running")
            let fileTransferAfter = try JSONDecoder().decode(ListedPlugin.self, from: Data(try a.cli(["plugins", "info", "file-transfer", "--json"]).stdout.utf8))
            let before = try JSONDecoder().decode(ListedPlugin.self, from: Data(fileTransferBefore.utf8))
            #expect(fileTransferAfter.library == before.library && fileTransferAfter.image == before.image)
            #expect(fileTransferAfter.sha256 == before.sha256)
            #expect(fileTransferAfter.state == "running")
            #expect(a.process.process.isRunning)

            // Discovery was restarted with the transport and announces its new port: transfers
            // work both ways over the new build.
            try b.waitFor("peer found: \(a.id)")
            let file = "\(work)/after-swap.bin"
            try writeRandomFile(file, bytes: 2 << 20)
            let toB = try a.cli(["send", file, "--to", b.id])
            #expect(toB.status == 0, "\(toB.stderr)")
            let toA = try b.cli(["send", file, "--to", a.id])
            #expect(toA.status == 0, "\(toA.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: "\(a.receiveDirectory)/after-swap.bin"))
        }
    }
}
