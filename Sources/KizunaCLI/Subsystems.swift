import ArgumentParser
import Foundation
import KizunaHost
import KizunaSDK

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the peers a running host has found.")
    @OptionGroup var socket: SocketOption
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false

    func run() throws {
        let response = try socket.send(ControlRequest(.peers))
        let peers = response.peers ?? []
        if json { return print(try encodeJSON(peers)) }
        let trusted = Set((response.trusted ?? []).map(\.id))
        printTable(
            ["ID", "NAME", "TRUSTED", "ADDRESSES", "SERVICES"],
            peers.map {
                [$0.id.short, $0.name, trusted.contains($0.id) ? "yes" : "no", $0.addresses.map(\.description).joined(separator: ","), $0.services.joined(separator: ",")]
            })
    }
}

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a file or a folder to a peer, with a progress bar; Ctrl-C cancels the transfer on both hosts.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "The file or folder to send.") var path: String
    @Option(name: .long, help: "The peer: its id, its name, or a unique prefix of its id (`kizuna peers` lists them).") var to: String
    @Flag(name: .long, help: "No progress bar; just the result.") var quiet = false
    @Flag(name: .long, help: "Print one JSON object per line for scripts: progress as it goes, then the result.") var json = false

    func run() throws {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: absolute) else { throw CommandFailure("\(path) does not exist") }
        let bar = ProgressBar(enabled: !quiet && !json)
        var last: TransferProgress?
        var toldWaiting = false
        try socket.client.follow(ControlRequest(.send, absolute, arguments: [to])) { response in
            guard response.ok else {
                bar.finish()
                throw CommandFailure(response.error ?? "the transfer failed")
            }
            if let progress = response.progress {
                last = progress
                if json, response.result == nil { writeLine(try encodeJSON(SendProgressJSON("progress", progress), pretty: false)) }
                if progress.awaitingAnswer, !toldWaiting, !quiet, !json {
                    // Said once, on its own line, whether or not stderr is a terminal.
                    toldWaiting = true
                    printError("waiting for \(peerName(progress.peer)) to accept \(progress.name) (\(ByteCount(progress.bytesTotal)))…")
                }
                bar.show(progress)
            }
            return response.result == nil
        }
        bar.finish()
        guard let done = last else { throw CommandFailure("the host ended the transfer without a result") }
        if json { return writeLine(try encodeJSON(SendProgressJSON("sent", done), pretty: false)) }
        let resumed = done.resumedFrom > 0 ? ", resumed from \(ByteCount(done.resumedFrom)) (\(done.resumedFrom) bytes) already there" : ""
        let skipped = done.skippedFiles > 0 ? "; \(done.skippedFiles) file(s) not sent: the peer keeps its own files of those names" : ""
        print("sent \(done.name) to \(peerName(done.peer)): \(ByteCount(done.bytesTotal)) (\(done.bytesTotal) bytes), verified by the peer\(resumed)\(skipped) (transfer \(done.id))")
    }

    /// "bo (3f9a…)" if the host knows the peer's name, else its short id.
    private func peerName(_ id: PeerID) -> String {
        let peer = (try? socket.send(ControlRequest(.peers)).peers)?.first { $0.id == id }
        return peer.map { "\($0.name) (\(id.short))" } ?? id.short
    }
}

/// A one-line progress bar on stderr, redrawn at most ten times a second: percent, bytes,
/// rate and time left.
final class ProgressBar {
    private let enabled: Bool
    private var lastDraw = Date.distantPast
    /// When bytes started moving (not while the offer waited), and how many were there.
    private var moving: (since: Date, from: Int64)?

    init(enabled: Bool) { self.enabled = enabled && isatty(2) == 1 }

    func show(_ progress: TransferProgress) {
        guard enabled, !progress.awaitingAnswer else { return }
        if moving == nil { moving = (Date(), progress.bytesDone) }
        guard Date().timeIntervalSince(lastDraw) > 0.1 || progress.bytesDone == progress.bytesTotal else { return }
        lastDraw = Date()
        FileHandle.standardError.write(Data(("\r" + Self.line(progress, since: moving!.since, from: moving!.from) + "\u{1B}[K").utf8))
    }

    /// "[#####.....] 42% 215 MiB of 512 MiB, 180 MiB/s, 2 s left".
    static func line(_ progress: TransferProgress, since: Date, from: Int64, now: Date = Date()) -> String {
        let width = 30
        let filled = Int(progress.fraction * Double(width))
        let seconds = now.timeIntervalSince(since)
        let moved = progress.bytesDone - from
        var line = "[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(Int(progress.fraction * 100))% \(ByteCount(progress.bytesDone)) of \(ByteCount(progress.bytesTotal))"
        if seconds >= 0.5, moved > 0 {
            let rate = Double(moved) / seconds
            line += ", \(ByteCount(Int64(rate)))/s"
            if progress.bytesDone < progress.bytesTotal { line += ", \(humanDuration(Double(progress.bytesTotal - progress.bytesDone) / rate)) left" }
        }
        return line
    }

    func finish() {
        if enabled, moving != nil { FileHandle.standardError.write(Data("\n".utf8)) }
        moving = nil
    }
}

struct Stream: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stream a file or stdin to a peer as live frames.")
    @OptionGroup var socket: SocketOption
    @Option(name: .long, help: "The peer: its id, its name, or a unique prefix of its id.") var to: String
    @Option(name: .long, help: "Bytes per frame.") var frameBytes = 16384
    @Option(name: .long, help: "Frames per second (default: as fast as the peer takes them).") var fps: Double?
    @Argument(help: "The file to stream (default: stdin).") var file: String?

    func validate() throws {
        guard (1...(8 << 20)).contains(frameBytes) else { throw ValidationError("--frame-bytes must be from 1 to 8388608") }
        if let fps, fps <= 0 { throw ValidationError("--fps must be more than 0") }
    }

    func run() throws {
        let input: FileHandle
        if let file {
            guard let handle = FileHandle(forReadingAtPath: file) else { throw CommandFailure("cannot read \(file)") }
            input = handle
        } else {
            input = .standardInput
        }
        let session = try socket.client.open(ControlRequest(.stream, to))
        let interval = fps.map { 1 / $0 }
        var next = Date()
        while true {
            let chunk = input.readData(ofLength: frameBytes)
            if chunk.isEmpty { break }
            if let interval {
                Thread.sleep(until: next)
                next += interval
            }
            guard session.writeChunk(Array(chunk)) else { break }
        }
        session.writeChunk([])
        guard let response = session.decode(ControlResponse.self) else { throw CommandFailure("the host closed the stream without a result") }
        guard response.ok, let stream = response.stream else { throw CommandFailure(response.error ?? "the stream failed") }
        printError("streamed \(stream.frames) frames to \(stream.peer) (stream \(stream.id))")
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait for the next incoming stream and write it to stdout or a file; frames a slow reader cannot keep up with are dropped.")
    @OptionGroup var socket: SocketOption
    @Option(name: .shortAndLong, help: "Write the stream here instead of stdout.") var output: String?

    func run() throws {
        let sink: FileHandle
        if let output {
            guard FileManager.default.createFile(atPath: output, contents: nil), let handle = FileHandle(forWritingAtPath: output) else {
                throw CommandFailure("cannot write \(output)")
            }
            sink = handle
        } else {
            sink = .standardOutput
        }
        let session = try socket.client.open(ControlRequest(.watch))
        printError("waiting for a stream…")
        guard let started = session.decode(ControlResponse.self), started.ok, let stream = started.stream else {
            throw CommandFailure("the host stopped before a stream started")
        }
        printError("watching stream \(stream.id) from \(stream.peer)")
        while let chunk = session.readChunk(), !chunk.isEmpty { sink.write(Data(chunk)) }
        guard let end = session.decode(ControlResponse.self), end.ok, let report = end.stream else {
            throw CommandFailure("the stream was cut off")
        }
        printError("stream \(report.id) ended: \(report.frames) frames, \(report.dropped) dropped")
    }
}
