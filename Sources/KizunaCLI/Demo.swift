import ArgumentParser
import Foundation
import KizunaHost
import KizunaSDK

/// Kizuna's main job, shown end to end: two hosts on this machine, each a real `kizuna run`
/// process with the built-in plugins and an identity of its own, find each other over mDNS
/// on loopback, pair (both codes shown and compared), send a file over TLS and verify it,
/// stream for a few seconds, and shut down, driven through the CLI.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run two hosts on this machine that discover each other, transfer a file, stream, and shut down.")

    @Option(name: .long, help: "The built-in plugins' manifests.")
    var pluginsDir = "manifests"

    @Option(name: .customLong("file-mib"), help: "Size of the file to send, in MiB.")
    var fileMiB = 64

    @Option(name: .long, help: "Seconds to stream.")
    var streamSeconds = 3

    func run() throws {
        let manifests = URL(fileURLWithPath: pluginsDir).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: manifests + "/tcp-transport.toml") else {
            throw CommandFailure("no built-in manifests in \(manifests); run from the repository's root or pass --plugins-dir")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("kizuna-demo-\(getpid())").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let tag = String(getpid())
        let aiko = try DemoHost(name: "aiko", work: work, manifests: manifests)
        let bo = try DemoHost(name: "bo", work: work, manifests: manifests)
        defer {
            aiko.stop()
            bo.stop()
        }

        step("1. discovery: each host announces itself over mDNS and browses for the other")
        try aiko.waitForPeer(bo.id)
        try bo.waitForPeer(aiko.id)
        step("   both hosts see each other")
        try aiko.cli(["peers"])

        step("2. pairing: aiko asks bo to pair; both show a code derived from both keys, and bo's user accepts once they match")
        let asking = try aiko.start(["pair", bo.id], waitingFor: "code:")
        let waiting = try JSONDecoder().decode([PairingRequest].self, from: Data(try bo.output(["pair", "--pending", "--json"]).utf8))
        guard let request = waiting.first(where: { $0.peer.rawValue == aiko.id }) else { throw CommandFailure("bo got no pairing request from aiko") }
        let shown = try aiko.code()
        step("   aiko shows \(shown), bo shows \(request.code)")
        guard shown == request.code else { throw CommandFailure("the codes differ: someone is in the middle; not pairing") }
        try bo.cli(["pair", "accept", request.id])
        asking.waitUntilExit()
        guard asking.terminationStatus == 0 else { throw CommandFailure("the pairing failed") }
        step("   paired: each host trusts the other, so bo takes aiko's files and streams without asking")

        step("3. file transfer: aiko sends a \(fileMiB) MiB file to bo, inside TLS 1.3")
        let source = "\(work)/photos-\(tag).bin"
        try writeRandomFile(source, bytes: fileMiB << 20)
        try aiko.cli(["send", source, "--to", bo.id])
        let received = "\(bo.receiveDirectory)/photos-\(tag).bin"
        guard FileManager.default.contentsEqual(atPath: source, andPath: received) else {
            throw CommandFailure("the received file differs from the one sent")
        }
        step("   verified: \(received) is byte for byte the file aiko sent")

        step("4. streaming: aiko streams \(streamSeconds) seconds of frames (30 per second) to bo, who watches")
        let clip = "\(work)/clip.bin"
        try writeRandomFile(clip, bytes: 30 * streamSeconds * 4096)
        let watched = "\(work)/watched.bin"
        let watcher = try bo.start(["watch", "--output", watched], waitingFor: "waiting for a stream")
        try aiko.cli(["stream", "--to", bo.id, "--fps", "30", "--frame-bytes", "4096", clip])
        watcher.waitUntilExit()
        guard watcher.terminationStatus == 0 else { throw CommandFailure("kizuna watch failed") }
        step(FileManager.default.contentsEqual(atPath: clip, andPath: watched)
            ? "   bo's viewer got every frame in order"
            : "   bo's viewer dropped some frames (it was slower than the stream)")

        step("5. shutdown: both hosts stop; discovery says goodbye")
        aiko.stop()
        try bo.waitForPeerLost(aiko.id)
        bo.stop()
        step("done")
    }
}

func step(_ line: String) { writeLine("demo: \(line)") }

/// Fills a file with random bytes.
func writeRandomFile(_ path: String, bytes: Int) throws {
    guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
        throw CommandFailure("cannot write \(path)")
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

/// One `kizuna run` process of the demo, its output shown line by line with its name.
final class DemoHost: @unchecked Sendable {
    let name: String
    let id: String
    let socket: String
    let receiveDirectory: String
    private let process = Process()
    private let lines = LineLog()
    /// The output of the last command started with ``start(_:waitingFor:)``.
    private var commandLines = LineLog()

    init(name: String, work: String, manifests: String) throws {
        self.name = name
        let state = "\(work)/\(name)-state"
        socket = "\(work)/\(name).sock"
        receiveDirectory = "\(work)/\(name)-received"
        id = try DeviceIdentity.loadOrCreate(in: state).peerID.rawValue
        process.executableURL = URL(fileURLWithPath: CommandLine.executablePath)
        process.arguments = [
            "run", "--plugins-dir", manifests, "--interface", "lo", "--socket", socket, "--receive-dir", receiveDirectory, "--name", name, "--state-dir", state,
        ]
        lines.attach(process, prefix: "[\(name)] ")
        try process.run()
        guard lines.wait(for: "host running", within: 30) else { throw CommandFailure("host \(name) did not start") }
    }

    /// Runs a `kizuna` command against this host and waits for it.
    func cli(_ arguments: [String]) throws {
        let command = try start(arguments, waitingFor: nil)
        command.waitUntilExit()
        guard command.terminationStatus == 0 else { throw CommandFailure("`kizuna \(arguments.joined(separator: " "))` failed") }
    }

    /// Runs a `kizuna` command against this host and returns what it printed.
    func output(_ arguments: [String]) throws -> String {
        let command = Process()
        command.executableURL = URL(fileURLWithPath: CommandLine.executablePath)
        command.arguments = arguments + ["--socket", socket]
        let pipe = Pipe()
        command.standardOutput = pipe
        try command.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        command.waitUntilExit()
        guard command.terminationStatus == 0 else { throw CommandFailure("`kizuna \(arguments.joined(separator: " "))` failed") }
        return String(decoding: data, as: UTF8.self)
    }

    /// The code the last `kizuna pair` this host started printed.
    func code() throws -> String {
        guard let line = commandLines.last(containing: "code: ") else { throw CommandFailure("\(name) printed no pairing code") }
        return String(line.split(separator: "code: ").last ?? "")
    }

    /// Starts a `kizuna` command against this host, waiting for `line` in its output.
    func start(_ arguments: [String], waitingFor line: String?) throws -> Process {
        let command = Process()
        command.executableURL = URL(fileURLWithPath: CommandLine.executablePath)
        command.arguments = arguments + ["--socket", socket]
        let log = LineLog()
        commandLines = log
        log.attach(command, prefix: "[\(name)] $ kizuna \(arguments[0]): ")
        try command.run()
        if let line, !log.wait(for: line, within: 30) { throw CommandFailure("`kizuna \(arguments[0])` did not get going") }
        return command
    }

    func waitForPeer(_ peer: String) throws {
        guard lines.wait(for: "peer found: \(peer)", within: 30) else { throw CommandFailure("\(name) did not find \(peer) within 30 s") }
    }

    func waitForPeerLost(_ peer: String) throws {
        guard lines.wait(for: "peer lost: \(peer)", within: 30) else { throw CommandFailure("\(name) did not see \(peer) leave within 30 s") }
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

/// A child's output, echoed with a prefix and kept to wait on.
final class LineLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var seen: [String] = []
    /// Output not yet ended by a newline (touched only by the pipe's handler).
    private var pending = Data()

    func attach(_ process: Process, prefix: String) {
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [self] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            pending += data
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending = pending[(newline + 1)...]
                // Progress bars redraw with \r; show only their last state.
                writeLine(prefix + (line.split(separator: "\r").last.map(String.init) ?? ""))
                condition.withLock {
                    seen.append(line)
                    condition.broadcast()
                }
            }
        }
    }

    /// The last line seen that contains `text`.
    func last(containing text: String) -> String? { condition.withLock { seen.last { $0.contains(text) } } }

    /// Waits until a line containing `text` has been seen.
    func wait(for text: String, within seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        return condition.withLock {
            while !seen.contains(where: { $0.contains(text) }) {
                if !condition.wait(until: deadline) { return false }
            }
            return true
        }
    }
}

extension CommandLine {
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]
    }
}
