import Foundation
import Glibc
import KizunaHost
import KizunaSDK
import Synchronization
import Testing

/// Identity, pairing and trust between real host processes: who a peer is comes from its
/// key, nothing from an unpaired peer lands silently, and a program in the middle gets
/// nowhere.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(4))) struct TrustTests {
        /// Two hosts with the built-in plugins and the default policy (`trusted`).
        struct Network {
            let work: String
            let a: BuiltinHost
            let b: BuiltinHost

            init() throws {
                work = Fixtures.temporaryDirectory()
                let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
                a = try BuiltinHost(name: "aiko", work: work, plugins: plugins, arguments: ["--accept", "trusted"])
                b = try BuiltinHost(name: "bo", work: work, plugins: plugins, arguments: ["--accept", "trusted"])
                try a.waitFor("peer found: \(b.id)")
                try b.waitFor("peer found: \(a.id)")
            }

            func stop() {
                _ = a.kill()
                _ = b.kill()
                try? FileManager.default.removeItem(atPath: work)
            }

            /// aiko sends `file` to bo, who holds it; the transfer id bo shows.
            func sendHeld(_ file: String) throws -> (sending: BackgroundCLI, id: String) {
                let sending = try BackgroundCLI(["send", file, "--to", b.id, "--socket", a.socket], limit: 60)
                let offered = try b.waitFor("offered by \(a.id)").last ?? ""
                let id = try #require(offered.firstMatch(of: /transfer (\S+) offered/).map { String($0.1) })
                return (sending, id)
            }

            /// aiko asks bo to pair; the code aiko shows and bo's request, once both are there.
            func requestPairing() throws -> (asking: BackgroundCLI, code: String, request: PairingRequest) {
                let asking = try BackgroundCLI(["pair", b.id, "--socket", a.socket], limit: 60)
                let line = asking.waitForLine(containing: "code: ").last ?? ""
                let code = try #require(line.firstMatch(of: /code: (\d{3} \d{3})/).map { String($0.1) }, "\(line)")
                try b.waitFor("pairing")
                let waiting = try JSONDecoder().decode([PairingRequest].self, from: Data(try b.cli(["pair", "--pending", "--json"]).stdout.utf8))
                let request = try #require(waiting.first { $0.peer.rawValue == a.id })
                return (asking, code, request)
            }

            func trusted(by host: BuiltinHost) throws -> [TrustedPeer] {
                let decoder = JSONDecoder()
                decoder.dateDecodingStrategy = .iso8601
                return try decoder.decode([TrustedPeer].self, from: Data(try host.cli(["trust", "list", "--json"]).stdout.utf8))
            }
        }

        @Test func pairingMakesBothHostsTrustEachOtherAfterTheSameCode() throws {
            let network = try Network()
            defer { network.stop() }
            let (a, b) = (network.a, network.b)
            let file = "\(network.work)/letter.bin"
            try writeRandomFile(file, bytes: 300_000)
            let received = "\(b.receiveDirectory)/letter.bin"

            // Not paired: the offer is held, marked as from a peer that is not paired.
            let (held, heldID) = try network.sendHeld(file)
            #expect(try b.cli(["plugins", "call", "file-transfer", "pending"]).stdout.contains("(not paired)"))
            #expect(try b.cli(["plugins", "call", "file-transfer", "refuse", heldID]).stdout.contains("true"))
            #expect(held.process.waitUntilExitOrKill() != 0)
            #expect(!FileManager.default.fileExists(atPath: received))

            // Not paired: a stream is refused, and the sender is told why.
            let clip = "\(network.work)/clip.bin"
            try writeRandomFile(clip, bytes: 40_000)
            let stream = try a.cli(["stream", "--to", b.id, clip])
            #expect(stream.status != 0)
            #expect(stream.stderr.contains("refused the stream: the peer is not paired with this host"), "\(stream.stderr)")

            // A refused pairing trusts no one.
            let refused = try network.requestPairing()
            #expect(try b.cli(["pair", "refuse", refused.request.id]).status == 0)
            #expect(refused.asking.process.waitUntilExitOrKill() != 0)
            #expect(try network.trusted(by: a).isEmpty && network.trusted(by: b).isEmpty)

            // The real flow: the same code on both sides, accepted on bo.
            let (asking, code, request) = try network.requestPairing()
            #expect(code == request.code)
            #expect(request.name == "aiko")
            #expect(try b.cli(["pair", "accept", request.id]).status == 0)
            #expect(asking.process.waitUntilExitOrKill() == 0)
            #expect(try network.trusted(by: a).map(\.id.rawValue) == [b.id])
            #expect(try network.trusted(by: b).map(\.id.rawValue) == [a.id])
            for host in [a, b] {
                let mode = try FileManager.default.attributesOfItem(atPath: "\(host.stateDirectory)/trust.json")[.posixPermissions] as? Int
                #expect(mode == 0o600)
            }
            #expect(try a.cli(["peers"]).stdout.contains("bo    yes"))
            // An answer to no request is an error that lists what waits.
            let stray = try b.cli(["pair", "accept", "p00000000"])
            #expect(stray.status != 0 && stray.stderr.contains("no pairing request 'p00000000' waits"))

            // Paired: accepted without asking.
            let sent = try a.cli(["send", file, "--to", b.id])
            #expect(sent.status == 0, "\(sent.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: received))
            try FileManager.default.removeItem(atPath: received)
            let streamed = try a.cli(["stream", "--to", b.id, clip])
            #expect(streamed.status == 0, "\(streamed.stderr)")

            // No longer trusted: held again.
            #expect(try b.cli(["trust", "remove", "aiko"]).status == 0)
            #expect(try network.trusted(by: b).isEmpty)
            let (again, againID) = try network.sendHeld(file)
            #expect(try b.cli(["plugins", "call", "file-transfer", "refuse", againID]).stdout.contains("true"))
            #expect(again.process.waitUntilExitOrKill() != 0)
            #expect(!FileManager.default.fileExists(atPath: received))
        }

        @Test func aThirdPartyWithAKeyOfItsOwnCannotLandAFileOrAStream() throws {
            let network = try Network()
            defer { network.stop() }
            let peers = try JSONDecoder().decode([Peer].self, from: Data(try network.a.cli(["peers", "--json"]).stdout.utf8))
            let port = try #require(peers.first { $0.id.rawValue == network.b.id }?.addresses.first?.port)
            let relay = try TLSRelay(to: port)
            defer { relay.stop() }
            let mallory = relay.identity.peerID.rawValue
            func connect(_ service: String) throws -> RawTransportClient {
                let client = try RawTransportClient(port: relay.port)
                client.sendJSON(["kizuna": 2, "id": mallory, "name": "aiko", "service": service])
                let reply = client.receiveJSON()
                #expect(reply?["error"] == nil, "\(String(describing: reply))")
                return client
            }

            // An offer is held for bo's user, not accepted: the sender is told it waits, and
            // no answer comes.
            let offer = try connect("file-transfer")
            offer.setReceiveTimeout(seconds: 3)
            offer.sendJSON(["type": "offer", "id": "o1", "name": "x", "files": [["path": "planted.txt", "size": 4, "modified": 0]], "total": 4], typeByte: 1)
            try network.b.waitFor("offered by \(mallory)")
            #expect(offer.receiveJSON(typeByte: true)?["type"] as? String == "waiting")
            #expect(offer.receiveJSON(typeByte: true) == nil)
            #expect(try network.b.cli(["plugins", "call", "file-transfer", "pending"]).stdout.contains("x from \(relay.identity.peerID.short) (not paired)"))

            // A stream is refused and closed; nothing reaches a viewer.
            let stream = try connect("streaming")
            stream.sendJSON(["type": "start", "id": "s1"], typeByte: 1)
            for sequence in 0..<4 { stream.send([2] + withUnsafeBytes(of: UInt64(sequence).bigEndian, Array.init) + [1, 2, 3]) }
            let said = stream.receive().map { String(decoding: $0.dropFirst(), as: UTF8.self) } ?? ""
            #expect(said.contains("\"type\":\"refused\"") && said.contains("not paired with this host"), "\(said)")
            #expect(stream.receive() == nil)
            #expect(try network.b.cli(["plugins", "call", "streaming", "refused-streams"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1")
            #expect(try network.b.cli(["plugins", "call", "streaming", "active-streams"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0")

            // A pairing request from it waits for bo's user like any other, and is refused.
            let pairing = try connect("pairing")
            pairing.sendJSON(["type": "pair", "version": 1, "name": "aiko"])
            #expect(pairing.receiveJSON()?["type"] as? String == "waiting")
            let waiting = try JSONDecoder().decode([PairingRequest].self, from: Data(try network.b.cli(["pair", "--pending", "--json"]).stdout.utf8))
            let request = try #require(waiting.first { $0.peer.rawValue == mallory })
            // Its code differs from the one aiko and bo would share: a user comparing sees it.
            #expect(request.code != PairingService.code(PeerID(network.a.id), PeerID(network.b.id)))
            #expect(try network.b.cli(["pair", "refuse", request.id]).status == 0)
            #expect(pairing.receiveJSON()?["type"] as? String == "refused")

            withExtendedLifetime(offer) {}
            #expect(!FileManager.default.fileExists(atPath: "\(network.b.receiveDirectory)/planted.txt"))
            #expect(try network.trusted(by: network.b).isEmpty)
            #expect(network.b.process.process.isRunning)
        }

        @Test func aManInTheMiddleIsRefusedByBothSides() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins)
            defer { _ = b.kill() }
            let status = try JSONDecoder().decode([ListedPlugin].self, from: Data(try b.cli(["plugins", "list", "--json"]).stdout.utf8))
            #expect(status.contains { $0.name == "tcp-transport" })
            let port = try b.transportPort()
            // The relay presents its own certificate to aiko and to bo.
            let relay = try TLSRelay(to: port, listenTLS: true)
            defer { relay.stop() }

            // aiko's discovery says bo (bo's real id) is at the relay: a forged announcement.
            let a = try BuiltinHost(name: "aiko", work: work, plugins: try Self.forgedDiscovery(in: work, from: plugins, saying: PeerID(b.id), isAt: relay.port))
            defer { _ = a.kill() }

            let file = "\(work)/secret.bin"
            try writeRandomFile(file, bytes: 100_000)
            let sent = try a.cli(["send", file, "--to", b.id])
            #expect(sent.status != 0)
            #expect(sent.stderr.contains("claims to be host \(a.id) but proved the key of host \(relay.identity.peerID)"), "\(sent.stderr)")
            try b.waitFor("claims to be host \(a.id) but proved the key of host \(relay.identity.peerID)")
            #expect(relay.carried >= 1)
            let paired = try a.cli(["pair", b.id])
            #expect(paired.status != 0)
            #expect(!FileManager.default.fileExists(atPath: "\(b.receiveDirectory)/secret.bin"))
            #expect(try JSONSerialization.jsonObject(with: Data(try a.cli(["trust", "list", "--json"]).stdout.utf8)) as? [Any] != nil)
            #expect(try a.cli(["trust", "list"]).stdout.contains("trusts no peer yet"))
        }

        @Test func aHostThatAnswersWithAnotherKeyCannotPassForThePeer() throws {
            // The relay ends TLS on both sides and answers aiko itself in bo's name, so only
            // aiko's own check of the key stands between them.
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let impostor = try BuiltinHost(name: "impostor", work: work, plugins: plugins)
            defer { _ = impostor.kill() }
            let port = try impostor.transportPort()
            let victim = try BuiltinHost.identity(of: "\(work)/victim-state")

            let a = try BuiltinHost(name: "aiko", work: work, plugins: try Self.forgedDiscovery(in: work, from: plugins, saying: victim, isAt: port))
            defer { _ = a.kill() }
            let file = "\(work)/secret.bin"
            try writeRandomFile(file, bytes: 10_000)
            let sent = try a.cli(["send", file, "--to", victim.rawValue])
            #expect(sent.status != 0)
            #expect(sent.stderr.contains("could not prove it is \(victim.short)"), "\(sent.stderr)")
            #expect(!FileManager.default.fileExists(atPath: "\(impostor.receiveDirectory)/secret.bin"))
        }

        /// A plugins folder with the built-in transport and file transfer, and a discovery
        /// plugin that says `peer` is at 127.0.0.1:`port` (a forged announcement).
        static func forgedDiscovery(in work: String, from plugins: String, saying peer: PeerID, isAt port: Int) throws -> String {
            let folder = "\(work)/forged-plugins"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for name in ["tcp-transport", "file-transfer"] {
                try FileManager.default.copyItem(atPath: "\(plugins)/\(name).toml", toPath: "\(folder)/\(name).toml")
            }
            Fixtures.writeManifest(in: folder, name: "forged", kind: .discovery, library: "libFixtureDiscovery.so", extra: "[settings]\npeers = [\"\(peer)@127.0.0.1:\(port)\"]")
            return folder
        }

        @Test func theIdentityLastsAndADamagedOneIsRefusedNotReplaced() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let state = "\(work)/state"
            let first = try BuiltinHost.identity(of: state)
            #expect(try BuiltinHost.identity(of: state) == first)
            #expect(first.rawValue.count == 64 && PeerID(typed: first.rawValue.lowercased().replacingOccurrences(of: "-", with: "")) == first)
            #expect(try BuiltinHost.identity(of: "\(work)/other") != first)
            let key = "\(state)/identity/key.pem"
            #expect(try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int == 0o600)
            #expect(try FileManager.default.attributesOfItem(atPath: state)[.posixPermissions] as? Int == 0o700)

            // A key others can read is refused, by `run` and `id` alike, with the fix.
            chmod(key, 0o644)
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let loose = try CLI.run(["run", "--plugins-dir", plugins, "--socket", "\(work)/h.sock", "--state-dir", state])
            #expect(loose.status != 0)
            #expect(loose.stderr.contains("can be read or written by others (mode 644); make it owner-only with `chmod 600 \(key)`"), "\(loose.stderr)")
            chmod(key, 0o600)
            #expect(try BuiltinHost.identity(of: state) == first)

            // A damaged key is an error, and stays as it was (no new identity made silently).
            let original = try Data(contentsOf: URL(fileURLWithPath: key))
            try Data("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n".utf8).write(to: URL(fileURLWithPath: key))
            chmod(key, 0o600)
            let damaged = try CLI.run(["id", "--state-dir", state])
            #expect(damaged.status != 0)
            #expect(damaged.stderr.contains("\(key) is not a P-256 private key"), "\(damaged.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: key)) != original)
            // Without its key, a certificate is not turned into a new identity either.
            try FileManager.default.removeItem(atPath: key)
            let keyless = try CLI.run(["id", "--state-dir", state])
            #expect(keyless.status != 0 && keyless.stderr.contains("its key \(key) is missing"), "\(keyless.stderr)")
            try original.write(to: URL(fileURLWithPath: key))
            chmod(key, 0o600)
            #expect(try BuiltinHost.identity(of: state) == first)

            // A trust store that is not one stops the host with the file's name.
            try Data("{\"version\": 1, \"peers\": [{\"id\": 7}]}".utf8).write(to: URL(fileURLWithPath: "\(state)/trust.json"))
            chmod("\(state)/trust.json", 0o600)
            let badTrust = try CLI.run(["run", "--plugins-dir", plugins, "--socket", "\(work)/h.sock", "--state-dir", state])
            #expect(badTrust.status != 0)
            #expect(badTrust.stderr.contains("the trust store \(state)/trust.json is not one"), "\(badTrust.stderr)")
            try FileManager.default.removeItem(atPath: "\(state)/trust.json")

            // Two hosts cannot share one state directory (they would share an identity).
            let host = try BuiltinHost(name: "one", work: work, plugins: plugins)
            defer { _ = host.kill() }
            let second = try CLI.run(["run", "--plugins-dir", plugins, "--socket", "\(work)/two.sock", "--state-dir", host.stateDirectory])
            #expect(second.status != 0)
            #expect(second.stderr.contains("another Kizuna host is running with the state directory \(host.stateDirectory)"), "\(second.stderr)")
        }

        @Test func aCaptureOfTheLoopbackDuringASendHoldsNoneOfTheFile() throws {
            let network = try Network()
            defer { network.stop() }
            let file = "\(network.work)/private.bin"
            try writeRandomFile(file, bytes: 2 << 20)
            let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))

            // The detector works: the file's first 256 KiB sent in the clear are seen.
            let control = try LoopbackCapture()
            defer { control.stop() }  // also when a step below fails
            let peers = try JSONDecoder().decode([Peer].self, from: Data(try network.a.cli(["peers", "--json"]).stdout.utf8))
            let port = try #require(peers.first { $0.id.rawValue == network.b.id }?.addresses.first?.port)
            let clear = try RawTransportClient(port: port)
            clear.sendRaw(Array(contents.prefix(256 << 10)))
            _ = clear.receive()
            #expect(LoopbackCapture.matches(of: contents, in: control.stop()) > 0)

            // The real send (paired first, so bo takes it): not one 32-byte block of it.
            let (asking, _, request) = try network.requestPairing()
            #expect(try network.b.cli(["pair", "accept", request.id]).status == 0)
            #expect(asking.process.waitUntilExitOrKill() == 0)
            let capture = try LoopbackCapture()
            defer { capture.stop() }
            let sent = try network.a.cli(["send", file, "--to", network.b.id])
            let captured = capture.stop()
            #expect(sent.status == 0, "\(sent.stderr)")
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: "\(network.b.receiveDirectory)/private.bin"))
            #expect(captured.count > contents.count, "the capture saw \(captured.count) bytes for a \(contents.count)-byte send")
            #expect(LoopbackCapture.matches(of: contents, in: captured) == 0)
        }
    }
}

/// Every packet on the machine's interfaces while it runs (loopback among them), through an
/// AF_PACKET socket (the tests run as root), concatenated.
final class LoopbackCapture: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private var running = true
    private var stopped: [UInt8]?
    private let done = DispatchSemaphore(value: 0)

    init() throws {
        let everyProtocol = UInt16(0x0003)  // ETH_P_ALL
        fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(everyProtocol.bigEndian))
        guard fd >= 0 else { throw HostFailure("cannot open an AF_PACKET socket (the test needs root): \(String(cString: strerror(errno)))") }
        var size: Int32 = 64 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 1 << 17)
            while lock.withLock({ running }) {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count > 0 { lock.withLock { bytes += buffer[..<count] } }
            }
            done.signal()
        }.start()
    }

    /// Stops (the first call) and returns what was captured.
    @discardableResult
    func stop() -> [UInt8] {
        if let stopped { return stopped }
        lock.withLock { running = false }
        done.wait()
        close(fd)
        stopped = lock.withLock { bytes }
        return stopped!
    }

    /// How many 32-byte blocks of `contents` (at multiples of 32) appear anywhere in `captured`.
    static func matches(of contents: [UInt8], in captured: [UInt8]) -> Int {
        struct Block: Hashable { var a, b, c, d: UInt64 }
        func block(_ bytes: [UInt8], at offset: Int) -> Block {
            bytes.withUnsafeBytes { raw in
                Block(
                    a: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self), b: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self),
                    c: raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self), d: raw.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self))
            }
        }
        let blocks = Set(stride(from: 0, to: contents.count - 31, by: 32).map { block(contents, at: $0) })
        var found = 0
        var offset = 0
        while offset + 32 <= captured.count {
            if blocks.contains(block(captured, at: offset)) {
                found += 1
                offset += 32
            } else {
                offset += 1
            }
        }
        return found
    }
}
