// The built-in streaming: a live stream of frames from one host to another over whatever
// transport is loaded. The sender is paced by the transport (backpressure); on the
// receiving host every viewer reads through its own bounded window of recent frames, so a
// slow viewer misses the oldest frames (and is told how many) instead of growing memory
// or slowing the stream for everyone.
//
// The protocol, over one connection for the service `streaming`: a JSON control message
// (type byte 1) `{"type":"start","id":…}`, then frames (type byte 2, an 8-byte big-endian
// sequence number, the payload), then `{"type":"end","frames":N}`.
//
// What a peer can make the receiver hold is bounded: a frame larger than the setting
// `max-frame-bytes` ends the stream, the window holds at most `window-frames` frames
// (so at most their product in bytes), frames are kept only while someone watches, and
// the window is released once the last viewer has gone.
import Foundation
import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

final class BuiltinStreaming: StreamingPlugin {
    private let started = WatchChannel<Started?>(nil)
    private let window = Window()

    final class Started: Sendable {
        let context: PluginContext
        let transport: any TransportPlugin
        let options: Options
        let counter = Atomic<Int>(0)
        let active = Atomic<Int>(0)
        /// Inbound streams refused by the accept policy.
        let refused = Atomic<UInt64>(0)
        /// Inbound streams closed because the peer broke the protocol or its limits.
        let violations = Atomic<UInt64>(0)
        init(context: PluginContext, transport: any TransportPlugin, options: Options) {
            self.context = context
            self.transport = transport
            self.options = options
        }
    }

    struct Options: Sendable {
        var maxFrameBytes = 256 << 10
        var windowFrames = 256
        var accept = AcceptPolicy.trusted

        /// trusted: take streams from paired peers only; auto: from anyone; refuse: from no one.
        enum AcceptPolicy: String, Sendable { case trusted, auto, refuse }

        static let schema = SettingsSchema(plugin: "streaming", ["max-frame-bytes": .integer, "window-frames": .integer, "accept": .string])

        init(_ settings: PluginSettings) throws(StreamError) {
            if let refusal = Self.schema.refusal(of: settings) { throw StreamError(refusal) }
            if let text = settings.string("accept") {
                guard let policy = AcceptPolicy(rawValue: text) else {
                    throw StreamError("setting 'accept' is '\(text)'; use trusted (streams from paired peers only), auto (from anyone) or refuse")
                }
                accept = policy
            }
            if let bytes = settings.integer("max-frame-bytes") {
                guard (1...(64 << 20)).contains(bytes) else { throw StreamError("setting 'max-frame-bytes' is \(bytes); give 1 to 67108864") }
                maxFrameBytes = Int(bytes)
            }
            if let frames = settings.integer("window-frames") {
                guard (1...65536).contains(frames) else { throw StreamError("setting 'window-frames' is \(frames); give 1 to 65536") }
                windowFrames = Int(frames)
            }
        }
    }

    /// The frames viewers read through: a broadcast ring of the latest frames, made when
    /// the first viewer comes and dropped (with every frame it holds) when the last goes.
    final class Window: Sendable {
        private let state = Mutex<(capacity: Int, channel: BroadcastChannel<StreamDelivery>?)>((256, nil))

        func configure(capacity: Int) { state.withLock { $0.capacity = capacity } }

        func subscribe() -> BroadcastReceiver<StreamDelivery> {
            state.withLock { state in
                if state.channel == nil { state.channel = BroadcastChannel(capacity: state.capacity) }
                return state.channel!.subscribe()
            }
        }

        /// Hands `delivery` to the viewers; keeps nothing when there are none.
        func send(_ delivery: StreamDelivery) {
            let channel = state.withLock { state -> BroadcastChannel<StreamDelivery>? in
                guard let channel = state.channel else { return nil }
                if channel.receiverCount == 0 {
                    state.channel = nil
                    return nil
                }
                return channel
            }
            channel?.send(delivery)
        }

        var viewers: Int { state.withLock { $0.channel?.receiverCount ?? 0 } }

        func finish() { state.withLock { $0.channel?.finish() } }
    }

    func watch() -> BroadcastReceiver<StreamDelivery> { window.subscribe() }

    func run(context: PluginContext) async throws {
        guard let transport = context.transport else { throw StreamError("no transport was given; the manifest must require one") }
        let running = Started(context: context, transport: transport, options: try Options(context.settings))
        window.configure(capacity: running.options.windowFrames)
        activeStreaming.withLock { $0 = (running, window) }
        defer { activeStreaming.withLock { if $0?.0.context === context { $0 = nil } } }
        started.send(running)
        let server = try context.runtime.spawn(name: "streaming inbound") { [window] in
            for await connection in context.inbound {
                _ = try? context.runtime.spawn(name: "stream from \(connection.peer)") {
                    await Self.receive(from: connection, running: running, window: window)
                }
            }
        }
        context.ready()
        await context.shutdown.wait()
        server.cancel()
        started.finish()
    }

    func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: Peer) async throws -> String {
        guard let running = await runningState() else { throw StreamError("the streaming plugin is not running") }
        if !peer.services.isEmpty, !peer.services.contains("streaming") {
            throw StreamError("peer \(peer.id) (\(peer.name)) does not offer streaming; it offers \(peer.services.joined(separator: ", "))")
        }
        let context = running.context
        let connection = try await running.transport.connect(to: peer, service: "streaming")
        let id = "\(context.host.id.rawValue.prefix(8))-s\(running.counter.add(1, ordering: .relaxed).newValue)"
        context.events.publish(.streamStarted(id: id, peer: peer.id))
        // The receiver says nothing unless it refuses the stream; then it says why and closes.
        let answer = Task { try? await connection.receive() }
        func refusal() async -> String? {
            guard let message = await answer.value, let control = StreamWire.parseControl(message), control["type"] == "refused" else { return nil }
            return escapedForDisplay(control["reason"] ?? "no reason given")
        }
        var count: UInt64 = 0
        do {
            try await connection.send(StreamWire.control(["type": "start", "id": id]))
            for try await frame in frames {
                try await connection.send(StreamWire.frame(frame))
                count += 1
            }
            try await connection.send(StreamWire.control(["type": "end", "frames": "\(count)"]))
        } catch {
            await connection.close()
            context.events.publish(.streamEnded(id: id, peer: peer.id))
            if let reason = await refusal() { throw StreamError("peer \(peer.id.short) refused the stream: \(reason)") }
            throw StreamError("stream \(id) to \(peer.id) failed after \(count) frames: \(error)")
        }
        // Wait (two seconds at most) for the receiver to close, so a refusal that came after
        // the last frame is still reported.
        let closer = Task {
            try? await Task.sleep(for: .seconds(2))
            await connection.close()
        }
        let reason = await refusal()
        closer.cancel()
        await connection.close()
        context.events.publish(.streamEnded(id: id, peer: peer.id))
        if let reason { throw StreamError("peer \(peer.id.short) refused the stream: \(reason)") }
        return id
    }

    private func runningState() async -> Started? {
        for await value in started.subscribe() {
            if let value { return value }
        }
        return nil
    }

    private static func receive(from connection: any Connection, running: Started, window: Window) async {
        let context = running.context
        let refusal: String? =
            switch running.options.accept {
            case .auto: nil
            case .trusted: context.trust.isTrusted(connection.peer) ? nil : "the peer is not paired with this host (`kizuna pair \(connection.peer.short)`)"
            case .refuse: "this host refuses streams (setting accept = refuse)"
            }
        if let refusal {
            running.refused.add(1, ordering: .relaxed)
            context.logger.warning("refused an inbound stream", metadata: ["peer": "\(connection.peer)", "reason": "\(refusal)"])
            try? await connection.send(StreamWire.control(["type": "refused", "reason": refusal]))
            await connection.close()
            return
        }
        /// Ends the stream for breaking the protocol: logged, counted, and told to the sender.
        func violation(_ reason: String) async {
            running.violations.add(1, ordering: .relaxed)
            context.logger.warning("closed an inbound stream that broke the protocol", metadata: ["peer": "\(connection.peer)", "reason": "\(reason)"])
            try? await connection.send(StreamWire.control(["type": "refused", "reason": reason]))
        }
        guard let first = try? await connection.receive(), let start = StreamWire.parseControl(first), start["type"] == "start",
            let id = start["id"], StreamWire.isValidID(id)
        else {
            await violation("the stream did not open with a valid 'start' message")
            await connection.close()
            return
        }
        running.active.add(1, ordering: .relaxed)
        context.events.publish(.streamStarted(id: id, peer: connection.peer))
        window.send(.started(id: id, peer: connection.peer))
        var sequence = SequenceTracker()
        while let message = try? await connection.receive() {
            if let frame = StreamWire.parseFrame(message) {
                guard frame.payload.count <= running.options.maxFrameBytes else {
                    await violation("a frame of \(frame.payload.count) bytes is over this host's limit of \(running.options.maxFrameBytes) (setting 'max-frame-bytes' of its streaming plugin)")
                    break
                }
                sequence.record(frame.sequence)
                window.send(.frame(id: id, frame))
            } else if StreamWire.parseControl(message)?["type"] == "end" {
                break
            } else {
                await violation("a message of \(message.count) bytes is neither a frame nor 'end'")
                break
            }
        }
        window.send(.ended(id: id, framesDropped: sequence.skipped))
        context.events.publish(.streamEnded(id: id, peer: connection.peer))
        running.active.subtract(1, ordering: .relaxed)
        await connection.close()
    }
}

/// Counts the frames a sender skipped, from the sequence numbers it sent. The numbers come
/// from the peer: no arithmetic on them may trap, whatever they are.
struct SequenceTracker {
    private var expected: UInt64 = 0
    private(set) var skipped: UInt64 = 0

    mutating func record(_ sequence: UInt64) {
        if sequence > expected {
            let (sum, overflow) = skipped.addingReportingOverflow(sequence - expected)
            skipped = overflow ? .max : sum
        }
        expected = sequence &+ 1
    }
}

enum StreamWire {
    static func control(_ fields: [String: String]) -> [UInt8] {
        [1] + ((try? JSONEncoder().encode(fields)).map(Array.init) ?? [])
    }

    /// A stream id as the built-in sender makes them: 1 to 64 letters, digits, `-`, `_`, `.`.
    static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
        }
    }

    static func parseControl(_ message: [UInt8]) -> [String: String]? {
        guard message.first == 1 else { return nil }
        return try? JSONDecoder().decode([String: String].self, from: Data(message[1...]))
    }

    static func frame(_ frame: Frame) -> [UInt8] {
        var message = [UInt8]()
        message.reserveCapacity(9 + frame.payload.count)
        message.append(2)
        withUnsafeBytes(of: frame.sequence.bigEndian) { message.append(contentsOf: $0) }
        message.append(contentsOf: frame.payload)
        return message
    }

    static func parseFrame(_ message: [UInt8]) -> Frame? {
        guard message.count >= 9, message[0] == 2 else { return nil }
        let sequence = message[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Frame(sequence: sequence, payload: Array(message[9...]))
    }
}

struct StreamError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The running instance, for the actions.
let activeStreaming = Mutex<(BuiltinStreaming.Started, BuiltinStreaming.Window)?>(nil)

/// `active-streams`: incoming streams being received now.
@_cdecl("kizuna_streams_active") public func kizunaStreamsActive() -> Int64 {
    Int64(activeStreaming.withLock { $0?.0.active.load(ordering: .relaxed) } ?? 0)
}

/// `violations`: inbound streams closed because the peer broke the protocol or its limits.
@_cdecl("kizuna_streams_violations") public func kizunaStreamsViolations() -> UInt64 {
    activeStreaming.withLock { $0?.0.violations.load(ordering: .relaxed) } ?? 0
}

/// `refused-streams`: inbound streams refused by the accept policy since the plugin started.
@_cdecl("kizuna_streams_refused") public func kizunaStreamsRefused() -> UInt64 {
    activeStreaming.withLock { $0?.0.refused.load(ordering: .relaxed) } ?? 0
}

/// `viewers`: viewers watching incoming streams now.
@_cdecl("kizuna_streams_viewers") public func kizunaStreamsViewers() -> Int64 {
    Int64(activeStreaming.withLock { $0?.1.viewers } ?? 0)
}

@_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { BuiltinStreaming() } }
