import Foundation
import Glibc
import KizunaHost
import KizunaSDK

/// Real `kizuna run` processes with the built-in plugins from manifests/, each pair on an
/// mDNS service type of its own so tests (and other hosts on the machine) never see
/// each other's hosts.
final class BuiltinHost: @unchecked Sendable {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    let name: String
    /// The peer id, derived from the key in `stateDirectory` (`kizuna id`).
    let id: String
    let stateDirectory: String
    let socket: String
    let receiveDirectory: String
    let pluginsDirectory: String
    let process: BackgroundCLI
    /// What it printed up to "host running".
    let startup: [String]

    /// The built-in manifests, copied into `work/plugins` with `serviceType` for discovery
    /// and, unless `onLoopback` is false (a test in a network namespace of its own), the
    /// transport on 127.0.0.1, which keeps discovery on loopback too: tests send nothing
    /// on the machine's real interfaces.
    static func pluginsDirectory(in work: String, serviceType: String, onLoopback: Bool = true) throws -> String {
        let directory = "\(work)/plugins"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for file in try FileManager.default.contentsOfDirectory(atPath: "\(repository)/manifests") where file.hasSuffix(".toml") {
            var text = try String(contentsOfFile: "\(repository)/manifests/\(file)", encoding: .utf8)
                .replacingOccurrences(of: "service-type = \"_kizuna._tcp\"", with: "service-type = \"\(serviceType)\"")
            if onLoopback { text = try onlyOnLoopback(text, file: file) }
            try text.write(toFile: "\(directory)/\(file)", atomically: true, encoding: .utf8)
        }
        return directory
    }

    /// `manifest` (the built-in `file`) with the transport listening on 127.0.0.1.
    static func onlyOnLoopback(_ manifest: String, file: String) throws -> String {
        guard file == "tcp-transport.toml" else { return manifest }
        let loopback = manifest.replacingOccurrences(of: "listen-host = \"::\"", with: "listen-host = \"127.0.0.1\"")
        guard loopback != manifest else { throw HostFailure("the built-in tcp-transport.toml has no listen-host = \"::\" line to keep tests on loopback") }
        return loopback
    }

    /// Two hosts, aiko and bo, with the plugins in `plugins`, once each has found the other.
    static func pair(work: String, plugins: String) throws -> (a: BuiltinHost, b: BuiltinHost) {
        let a = try BuiltinHost(name: "aiko", work: work, plugins: plugins)
        let b = try BuiltinHost(name: "bo", work: work, plugins: plugins)
        try a.waitFor("peer found: \(b.id)")
        try b.waitFor("peer found: \(a.id)")
        return (a, b)
    }

    /// A fresh service type such as `_kz1a2b3c4d._tcp`.
    static func serviceType() -> String { "_kz\(UUID().uuidString.prefix(8).lowercased())._tcp" }

    /// Starts `kizuna run` as `name`, with its own state directory under `work` (a host
    /// started again with the same name and work keeps its identity). It accepts
    /// everything from anyone (`--accept auto`) unless `arguments` say otherwise, and logs
    /// at info level (`-v`), which some tests read.
    init(name: String, work: String, plugins: String, arguments: [String] = [], namespace: String? = nil) throws {
        self.name = name
        stateDirectory = "\(work)/\(name)-state"
        id = try Self.identity(of: stateDirectory).rawValue
        socket = "\(work)/\(name).sock"
        receiveDirectory = "\(work)/\(name)-received"
        pluginsDirectory = plugins
        process = try BackgroundCLI(
            [
                "run", "--plugins-dir", plugins, "--socket", socket, "--receive-dir", receiveDirectory, "--accept", "auto",
                "--name", name, "--state-dir", stateDirectory, "-v",
            ] + arguments, limit: 100, namespace: namespace)
        let lines = process.waitForLine(containing: "host running")
        guard lines.last?.contains("host running") == true else {
            throw HostFailure("host \(name) did not start:\n\(lines.joined(separator: "\n"))")
        }
        startup = lines
    }

    /// The port its TCP transport listens on, as the transport logged it at start.
    func transportPort() throws -> Int {
        for line in startup {
            if let match = line.firstMatch(of: /address=127\.0\.0\.1:(\d+)/), let port = Int(match.1) { return port }
        }
        throw HostFailure("host \(name) logged no transport address:\n\(startup.joined(separator: "\n"))")
    }

    /// The peer id kept in `stateDirectory` (made there if it is new), as `kizuna id` prints it.
    static func identity(of stateDirectory: String) throws -> PeerID {
        let printed = try CLI.run(["id", "--state-dir", stateDirectory, "--json"])
        guard printed.status == 0, let report = try? JSONDecoder().decode(IdentityReport.self, from: Data(printed.stdout.utf8)) else {
            throw HostFailure("kizuna id failed: \(printed.stderr)")
        }
        return report.id
    }

    /// Waits for the host to print a line containing `text`; the lines read.
    @discardableResult
    func waitFor(_ text: String) throws -> [String] {
        let lines = process.waitForLine(containing: text)
        guard lines.last?.contains(text) == true else { throw HostFailure("host \(name) never printed '\(text)':\n\(lines.joined(separator: "\n"))") }
        return lines
    }

    /// `kizuna status --json`, decoded.
    func status() throws -> HostStatus {
        let printed = try cli(["status", "--json"])
        guard printed.status == 0, let status = try? JSONDecoder().decode(HostStatus.self, from: Data(printed.stdout.utf8)) else {
            throw HostFailure("kizuna status failed: \(printed.stderr)")
        }
        return status
    }

    /// The integer a plugin action returns (`kizuna plugins call PLUGIN ACTION`).
    func figure(_ plugin: String, _ action: String) throws -> Int {
        let printed = try cli(["plugins", "call", plugin, action])
        guard printed.status == 0, let value = Int(printed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HostFailure("kizuna plugins call \(plugin) \(action) failed: \(printed.stderr)\(printed.stdout)")
        }
        return value
    }

    /// Runs `kizuna ARGUMENTS --socket` against this host.
    func cli(_ arguments: [String]) throws -> CLI.Outcome { try CLI.run(arguments + ["--socket", socket]) }

    func kill(_ signal: Int32 = SIGTERM) -> Int32 {
        Glibc.kill(process.process.processIdentifier, signal)
        process.process.waitUntilExit()
        return process.process.terminationStatus
    }
}

struct HostFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes `bytes` pseudo-random bytes (a fixed seed per call site is not needed: the
/// comparison is with the file itself).
func writeRandomFile(_ path: String, bytes: Int) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
        throw HostFailure("cannot write \(path)")
    }
    var generator = SystemRandomNumberGenerator()
    var remaining = bytes
    while remaining > 0 {
        let count = min(remaining, 1 << 20)
        let words = (0..<(count + 7) / 8).map { _ in generator.next() as UInt64 }
        handle.write(words.withUnsafeBytes { Data($0.prefix(count)) })
        remaining -= count
    }
    try handle.close()
}

/// A blocking TCP client that speaks the TCP transport's framing, to play a hostile peer.
final class RawTransportClient {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HostFailure("cannot connect to 127.0.0.1:\(port)") }
        setReceiveTimeout(seconds: 20)
    }

    /// How long a receive waits before it gives up (returns nil).
    func setReceiveTimeout(seconds: Double) {
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ message: [UInt8]) {
        let length = UInt32(message.count)
        let bytes = [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + message
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Writes `bytes` as they are, with no length in front.
    func sendRaw(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func sendJSON(_ object: [String: Any], typeByte: UInt8? = nil) {
        let json = try! JSONSerialization.data(withJSONObject: object)
        send((typeByte.map { [$0] } ?? []) + Array(json))
    }

    /// The next message, or nil once the peer closed (or 20 s passed).
    func receive() -> [UInt8]? {
        guard let header = read(4) else { return nil }
        return read(header.reduce(0) { $0 << 8 | Int($1) })
    }

    func receiveJSON(typeByte: Bool = false) -> [String: Any]? {
        guard let message = receive() else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(message.dropFirst(typeByte ? 1 : 0))) as? [String: Any]
    }

    private func read(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            guard got > 0 else { return nil }
            done += got
        }
        return bytes
    }
}
