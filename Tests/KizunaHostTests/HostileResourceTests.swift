import Foundation
import Glibc
import KizunaHost
import KizunaSDK
import Testing

/// Peers (and plugins) that try to make the host hold what it cannot give: memory,
/// descriptors, threads, disk. Each against real host processes; each ends with a real
/// transfer between two hosts, verified byte for byte.
extension ProcessSuites.HostilePeerTests {
    @Test func whatPeersMakeTheTransportHoldStaysWithinItsCap() throws {
        let cap = 8 << 20
        let network = try Network(transport: "max-held-bytes = \(cap)\nmax-connections-per-address = 1024\nmax-connections = 1024")
        defer { network.stop() }
        // 20 connections, each announcing a 1 MiB message and sending 900 KiB of it, then
        // holding still: 18 MiB if the transport kept them all.
        let part = 900 << 10
        var clients: [RawTransportClient] = []
        for _ in 0..<20 {
            let client = try network.connect()
            client.sendRaw([0x00, 0x10, 0x00, 0x00] + [UInt8](repeating: 2, count: part))
            clients.append(client)
        }
        // Nine fit under the cap; the others are closed as they would pass it.
        let fit = cap / part
        #expect(eventually { try network.b.figure("tcp-transport", "violations") >= 20 - fit }, "the connections over the cap were not closed")
        // (Each holds its message's 4-byte length too.)
        #expect(eventually { try network.b.figure("tcp-transport", "held-bytes") == fit * (part + 4) }, "\((try? network.b.figure("tcp-transport", "held-bytes")) ?? -1)")
        #expect(try network.b.figure("tcp-transport", "peak-held-bytes") <= cap)
        #expect(try network.b.status().violations["tcp-transport"] ?? 0 >= 20 - fit)
        try network.b.waitFor("setting 'max-held-bytes'")
        // Once they leave, everything they held is given back.
        clients.removeAll()
        #expect(eventually { try network.b.figure("tcp-transport", "held-bytes") == 0 })
        try network.expectServes()
        #expect(try network.b.figure("tcp-transport", "peak-held-bytes") <= cap)
    }

    @Test func theControlSocketAnswersAgainOnceDescriptorsAreFree() throws {
        let network = try Network(transport: "max-connections = 4096\nmax-connections-per-address = 4096\nhandshake-timeout-ms = 600000")
        defer { network.stop() }
        // bo may open 40 descriptors more than it has; 100 connections take them all.
        let pid = network.b.process.process.processIdentifier
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
        try #require(Process.run("/usr/bin/prlimit", ["--pid", "\(pid)", "--nofile=\(open + 40):\(open + 40)"]) == 0)
        var clients = try (0..<100).map { _ in try RawTransportClient(port: network.port) }
        #expect(eventually { ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0) >= open + 38 }, "bo never ran out")
        // A request sent while bo has none left (it waits in the socket's backlog) is
        // answered once the connections go.
        let request = try UnixLineClient(path: network.b.socket)
        request.send(#"{"command":"status"}"#)
        clients.removeAll()
        let answer = request.receiveLine()
        #expect(answer?.contains(#""ok":true"#) == true, "\(answer ?? "no answer")")
        #expect(try network.b.cli(["status"]).status == 0)
        try network.expectServes()
    }

    @Test func aPluginThatTakesEveryBlockingThreadStarvesNothingElse() throws {
        let network = try Network()
        defer { network.stop() }
        let manifest = Fixtures.writeManifest(
            in: network.work, name: "hog", kind: .discovery, library: Fixtures.library("FixtureHogsBlockingPool"), extra: "[settings]\njobs = 520")
        #expect(try network.b.cli(["plugins", "load", manifest]).status == 0)
        #expect(try network.b.cli(["plugins", "info", "hog"]).stdout.contains("running"))
        // The pool's 512 threads are busy and 8 jobs wait; the control socket, the
        // transport and file transfer serve as before.
        #expect(try network.b.cli(["status"]).status == 0)
        #expect(try network.b.cli(["plugins", "list"]).status == 0)
        try network.expectServes()
        #expect(try network.b.cli(["plugins", "unload", "hog"]).status == 0)
        try network.expectServes()
    }

    @Test func offersAreJudgedByWhatTheyStillNeedAndWhatIsPromisedAlready() throws {
        // The receive directory on a 4 MiB file system of its own.
        let network = try Network()
        defer { network.stop() }
        let disk = network.b.receiveDirectory
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        try #require(Process.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", disk]) == 0, "cannot mount a tmpfs (the test needs root)")
        defer { _ = Process.run("/bin/umount", ["-l", disk]) }
        var generator = SystemRandomNumberGenerator()
        let content = (0..<(3 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let entry: [String: Any] = ["path": "big.bin", "size": content.count, "modified": 7]
        let chunk = 256 << 10

        // 2.75 MiB of a 3 MiB file arrive, then the sender goes: the partial file stays.
        do {
            let (client, answer) = try network.offer([entry])
            #expect(answer?["accept"] as? Bool == true)
            client.sendJSON(["type": "file", "index": 0], typeByte: 1)
            #expect(client.receiveJSON(typeByte: true)?["type"] as? String == "start")
            for offset in stride(from: 0, to: 11 * chunk, by: chunk) { client.send([2] + content[offset..<offset + chunk]) }
        }
        #expect(eventually { (try? network.b.figure("file-transfer", "partial-bytes")) == 11 * chunk })
        // Now less than the whole file is free, but more than what is missing of it.
        try Data(count: 3 << 18).write(to: URL(fileURLWithPath: "\(disk)/filler.bin"))
        let (client, answer) = try network.offer([entry])
        #expect(answer?["accept"] as? Bool == true, "\(String(describing: answer))")
        client.sendJSON(["type": "file", "index": 0], typeByte: 1)
        let start = client.receiveJSON(typeByte: true)
        #expect(start?["offset"] as? Int == 11 * chunk)
        client.send([2] + content[(11 * chunk)...])
        client.sendJSON(["type": "end", "sha256": sha256Hex(content)], typeByte: 1)
        #expect(client.receiveJSON(typeByte: true)?["ok"] as? Bool == true)
        client.sendJSON(["type": "done"], typeByte: 1)
        #expect(eventually { (try? Data(contentsOf: URL(fileURLWithPath: "\(disk)/big.bin"))) == Data(content) })

        // Two offers that each fit alone but not together: the second is refused while
        // the first, accepted, still has its bytes to write.
        try FileManager.default.removeItem(atPath: "\(disk)/big.bin")
        try FileManager.default.removeItem(atPath: "\(disk)/filler.bin")
        let (first, firstAnswer) = try network.offer([["path": "one.bin", "size": 5 << 19, "modified": 0]])
        #expect(firstAnswer?["accept"] as? Bool == true)
        let (_, second) = try network.offer([["path": "two.bin", "size": 5 << 19, "modified": 0]])
        #expect(second?["accept"] as? Bool == false)
        #expect((second?["reason"] as? String)?.contains("promised to other transfers") == true, "\(String(describing: second))")
        withExtendedLifetime(first) {}
    }
}

/// Polls `condition` every 50 ms until it holds, for `seconds` at most; whether it held.
func eventually(within seconds: Double = 20, _ condition: () throws -> Bool) -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    repeat {
        if (try? condition()) == true { return true }
        usleep(50_000)
    } while Date() < deadline
    return false
}

/// A client of a host's control socket that writes a line and reads one, with no help
/// from the CLI (so a test knows when it connected).
final class UnixLineClient {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw HostFailure("cannot connect to \(path): \(String(cString: strerror(errno)))")
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// The next line, or nil if the socket closed or 30 s passed.
    func receiveLine() -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1 {
            if byte == 0x0A { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }
}
