/// A bounded multi-producer channel with backpressure: ``send(_:)`` waits while the buffer
/// is full, so a fast producer is slowed to the pace of its consumer.
///
/// Once the buffer is full, waiting senders are let in again when it has drained to half,
/// all at once, instead of one per received element: a full channel then costs one
/// wake-up per half buffer, not one per element.
///
/// Elements are delivered in order, each to exactly one receiver. ``finish()`` closes the
/// channel: sends fail from then on, and receivers get what is buffered, then `nil`.
/// The channel is an `AsyncSequence`, so `filter`, `map` and the rest compose with it.
///
/// ```swift
/// let channel = BoundedChannel<Int>(capacity: 1024)
/// try await channel.send(1)
/// channel.finish()
/// for await value in channel.filter({ $0 > 0 }) { print(value) }
/// ```
public final class BoundedChannel<Element: Sendable>: Sendable {
    @usableFromInline let state: LockedValue<State>
    /// How many elements the buffer holds before senders wait.
    public let capacity: Int

    @usableFromInline
    final class Sender: @unchecked Sendable {
        @usableFromInline var element: Element?
        @usableFromInline var continuation: UnsafeContinuation<Void, any Error>?
        @usableFromInline var isCancelled = false
        init(element: Element) { self.element = element }
    }

    @usableFromInline
    final class Receiver: @unchecked Sendable {
        @usableFromInline var continuation: UnsafeContinuation<Element?, Never>?
        @usableFromInline var isCancelled = false
        init() {}
    }

    @usableFromInline
    enum SendOutcome {
        case buffered, handedTo(UnsafeContinuation<Element?, Never>), closed, cancelled, wait
    }

    @usableFromInline
    struct State: @unchecked Sendable {
        @usableFromInline var buffer: RingBuffer<Element>
        @usableFromInline var senders = RingBuffer<Sender>()
        @usableFromInline var receivers = RingBuffer<Receiver>()
        @usableFromInline var isFinished = false

        init(capacity: Int) { buffer = RingBuffer(minimumCapacity: Swift.min(capacity, 4096)) }
    }

    /// Creates a channel whose buffer holds `capacity` elements (at least 1).
    public init(capacity: Int) {
        precondition(capacity >= 1, "BoundedChannel capacity must be at least 1, got \(capacity)")
        self.capacity = capacity
        state = LockedValue(State(capacity: capacity))
    }

    /// Elements buffered right now.
    public var count: Int { state.withLock { $0.buffer.count } }

    /// True once ``finish()`` has been called.
    public var isFinished: Bool { state.withLock { $0.isFinished } }

    /// Sends `element`, waiting while the buffer is full.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/closed`` if the channel is
    ///   finished; `CancellationError` if the task is cancelled while waiting (the element
    ///   is then not sent).
    @inlinable
    public func send(_ element: Element) async throws {
        switch state.withLock({ Self.offer(element, to: &$0, capacity: capacity) }) {
        case .buffered, .cancelled: return
        case .handedTo(let receiver): receiver.resume(returning: element)
        case .closed: throw Self.closedError()
        case .wait: try await sendWaiting(element)
        }
    }

    /// Sends `element` if there is room now; never waits.
    /// - Returns: false if the buffer is full or the channel is finished.
    @inlinable
    public func trySend(_ element: Element) -> Bool {
        switch state.withLock({ Self.offer(element, to: &$0, capacity: capacity) }) {
        case .buffered: return true
        case .handedTo(let receiver):
            receiver.resume(returning: element)
            return true
        case .closed, .wait, .cancelled: return false
        }
    }

    /// Hands `element` to a waiting receiver or buffers it, if either is possible.
    @inlinable
    static func offer(_ element: Element, to state: inout State, capacity: Int) -> SendOutcome {
        if state.isFinished { return .closed }
        while let receiver = state.receivers.popFirst() {
            guard let continuation = receiver.continuation else { continue }
            receiver.continuation = nil
            return .handedTo(continuation)
        }
        if state.buffer.count < capacity {
            state.buffer.append(element)
            return .buffered
        }
        return .wait
    }

    @usableFromInline
    func sendWaiting(_ element: Element) async throws {
        let sender = Sender(element: element)
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                let outcome = state.withLock { state -> SendOutcome in
                    if sender.isCancelled { return .cancelled }
                    let outcome = Self.offer(element, to: &state, capacity: capacity)
                    if case .wait = outcome {
                        sender.continuation = continuation
                        state.senders.append(sender)
                    }
                    return outcome
                }
                switch outcome {
                case .wait: break
                case .buffered: continuation.resume()
                case .closed: continuation.resume(throwing: Self.closedError())
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .handedTo(let receiver):
                    receiver.resume(returning: element)
                    continuation.resume()
                }
            }
        } onCancel: {
            let continuation = state.withLock { state -> UnsafeContinuation<Void, any Error>? in
                sender.isCancelled = true
                guard let continuation = sender.continuation else { return nil }
                sender.continuation = nil
                sender.element = nil
                _ = state.senders.removeFirst { $0 === sender }
                return continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Receives the next element, waiting while the channel is empty.
    /// - Returns: the element, or `nil` once the channel is finished and drained, or when
    ///   the task is cancelled while waiting.
    @inlinable
    public func receive() async -> Element? {
        var batch = RingBuffer<Element>(minimumCapacity: 1)
        await receiveBatch(into: &batch, limit: 1)
        return batch.popFirst()
    }

    /// Once the buffer has drained to half, moves waiting senders' elements into it while
    /// there is room; returns their continuations.
    @inlinable
    static func admitWaitingSenders(_ state: inout State, capacity: Int) -> [UnsafeContinuation<Void, any Error>] {
        guard !state.senders.isEmpty, state.buffer.count <= capacity / 2 else { return [] }
        var admitted: [UnsafeContinuation<Void, any Error>] = []
        while state.buffer.count < capacity, let sender = state.senders.popFirst() {
            guard let continuation = sender.continuation, let element = sender.element else { continue }
            sender.continuation = nil
            sender.element = nil
            state.buffer.append(element)
            admitted.append(continuation)
        }
        return admitted
    }

    /// Moves up to `limit` buffered elements into `batch` under one lock, waiting only
    /// while the channel is empty. Leaves `batch` empty once the channel is finished.
    @inlinable
    func receiveBatch(into batch: inout RingBuffer<Element>, limit: Int) async {
        let admitted = state.withLock { state -> [UnsafeContinuation<Void, any Error>] in
            var admitted: [UnsafeContinuation<Void, any Error>] = []
            while batch.count < limit, let element = state.buffer.popFirst() {
                batch.append(element)
                if !state.senders.isEmpty { admitted += Self.admitWaitingSenders(&state, capacity: capacity) }
            }
            return admitted
        }
        for sender in admitted { sender.resume() }
        if batch.isEmpty, let element = await receiveWaiting() { batch.append(element) }
    }

    @usableFromInline
    func receiveWaiting() async -> Element? {
        let receiver = Receiver()
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Element?, Never>) in
                let (element, admitted, wait) = state.withLock { state -> (Element?, [UnsafeContinuation<Void, any Error>], Bool) in
                    if receiver.isCancelled { return (nil, [], false) }
                    if let element = state.buffer.popFirst() {
                        return (element, Self.admitWaitingSenders(&state, capacity: capacity), false)
                    }
                    if state.isFinished { return (nil, [], false) }
                    receiver.continuation = continuation
                    state.receivers.append(receiver)
                    return (nil, [], true)
                }
                guard !wait else { return }
                for sender in admitted { sender.resume() }
                continuation.resume(returning: element)
            }
        } onCancel: {
            let continuation = state.withLock { state -> UnsafeContinuation<Element?, Never>? in
                receiver.isCancelled = true
                guard let continuation = receiver.continuation else { return nil }
                receiver.continuation = nil
                _ = state.receivers.removeFirst { $0 === receiver }
                return continuation
            }
            continuation?.resume(returning: nil)
        }
    }

    /// Closes the channel. Waiting senders fail with ``RuntimeError/Code/closed``; receivers
    /// get the buffered elements, then `nil`. Calling it again does nothing.
    public func finish() {
        let (senders, receivers) = state.withLock { state in
            state.isFinished = true
            return (
                state.senders.removeAll().compactMap { sender -> UnsafeContinuation<Void, any Error>? in
                    defer { sender.continuation = nil }
                    return sender.continuation
                },
                state.receivers.removeAll().compactMap { receiver -> UnsafeContinuation<Element?, Never>? in
                    defer { receiver.continuation = nil }
                    return receiver.continuation
                }
            )
        }
        for sender in senders { sender.resume(throwing: Self.closedError()) }
        for receiver in receivers { receiver.resume(returning: nil) }
    }

    @usableFromInline
    static func closedError() -> RuntimeError {
        RuntimeError(.closed, "the channel is finished and takes no more elements; stop sending once finish() has been called")
    }
}

extension BoundedChannel: ChannelSequence {
    public typealias Failure = Never

    @inlinable
    public func makeAsyncIterator() -> Iterator { Iterator(channel: self) }

    /// Receives elements until the channel is finished and drained.
    ///
    /// It takes what is buffered in batches of up to 64 under one lock, so elements in its
    /// hands have left the channel: up to 64 more than `capacity` may be in flight.
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let channel: BoundedChannel
        @usableFromInline var batch = RingBuffer<Element>(minimumCapacity: 64)

        @inlinable
        init(channel: BoundedChannel) { self.channel = channel }

        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Element? {
            if let element = batch.popFirst() { return element }
            await channel.receiveBatch(into: &batch, limit: 64)
            return batch.popFirst()
        }

        @inlinable
        public mutating func next() async -> Element? { await next(isolation: nil) }
    }
}
