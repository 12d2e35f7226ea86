import KizunaSDK

extension Conformance {
    /// Two hosts with the subject; the first streams `frames` to the second, whose viewer
    /// was subscribed before.
    static func stream(_ environment: CheckEnvironment, frames: [Frame], read: Bool) async throws -> (delivered: [Frame], lagged: Int) {
        let (sender, receiver, peer, _, _) = try await transferPair(environment)
        guard case .streaming(let source) = sender.object, case .streaming(let sink) = receiver.object else { throw CheckFailure("not a streaming plugin") }
        let viewer = sink.watch()
        var delivered: [Frame] = []
        var lagged = 0
        let collect = { (message: BroadcastMessage<StreamDelivery>) -> Bool in
            switch message {
            case .lagged(let count): lagged += count
            case .element(.frame(_, let frame)): delivered.append(frame)
            case .element(.ended): return false
            case .element(.started): break
            }
            return true
        }
        let feed = FramesOf(frames)
        if read {
            let sending = try environment.runtime.spawn(name: "stream") { try await source.stream(feed, to: peer) }
            while let message = await viewer.receive(), collect(message) {}
            _ = try await sending.value
        } else {
            _ = try await source.stream(feed, to: peer)
            while let message = await viewer.receive(), collect(message) {}
        }
        return (delivered, lagged)
    }

    static func frames(_ count: Int, bytes: Int) -> [Frame] {
        (0..<count).map { index in Frame(sequence: UInt64(index), payload: [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: bytes)) }
    }

    static let streamingChecks: [ConformanceCheck] = [
        ConformanceCheck("streaming.frame-order", "a viewer that keeps up gets every frame, in order", kinds: [.streaming]) { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let sent = frames(200, bytes: 1024)
            let (delivered, lagged) = try await stream(environment, frames: sent, read: true)
            try require(lagged == 0, "a viewer reading as fast as it could missed \(lagged) frames")
            try require(delivered.count == sent.count, "\(delivered.count) of \(sent.count) frames arrived")
            try require(delivered.map(\.payload) == sent.map(\.payload), "frames arrived out of order or changed")
            return .passed()
        },
        ConformanceCheck("streaming.slow-consumer", "a viewer that reads nothing misses old frames instead of holding them all", kinds: [.streaming]) { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            let (delivered, lagged) = try await stream(environment, frames: frames(3000, bytes: 16384), read: false)
            try require(lagged > 0, "a viewer that read nothing until the end was given all \(delivered.count) frames: the plugin buffers without bound for slow viewers")
            return .passed("the slow viewer missed \(lagged) frames and got the latest \(delivered.count)")
        },
    ]
}

/// Frames as the throwing sequence ``StreamingPlugin/stream(_:to:)`` takes.
struct FramesOf: AsyncSequence, Sendable {
    typealias Element = Frame
    typealias Failure = any Error
    let frames: [Frame]
    init(_ frames: [Frame]) { self.frames = frames }
    func makeAsyncIterator() -> Iterator { Iterator(frames: frames) }
    struct Iterator: AsyncIteratorProtocol {
        let frames: [Frame]
        var index = 0
        mutating func next() async throws -> Frame? {
            guard index < frames.count else { return nil }
            defer { index += 1 }
            return frames[index]
        }
    }
}
