/// A broadcast channel with tokio's semantics: a bounded ring of the latest elements,
/// publishing never waits, every receiver gets every element — unless it falls more
/// than `capacity` behind, in which case it is told how many it missed and resumes at
/// the oldest element still retained.
///
/// ```swift
/// let events = BroadcastChannel<PeerEvent>(capacity: 256)
/// let receiver = events.subscribe()
/// events.send(.found(peer))
/// for await message in receiver {
///     switch message {
///     case .element(let event): handle(event)
///     case .lagged(let missed): log("missed \(missed) events")
///     }
/// }
/// ```
public final class BroadcastChannel<Element: Sendable>: Sendable {
    @usableFromInline let state: LockedValue<State>
    /// How many of the latest elements are retained for slow receivers.
    public let capacity: Int

    @usableFromInline
    struct State: @unchecked Sendable {
        @usableFromInline var ring: ContiguousArray<Element?>
        @usableFromInline let mask: UInt64
        /// The sequence number the next element gets.
        @usableFromInline var tail: UInt64 = 0
        @usableFromInline var receiverCount = 0
        @usableFromInline var waiting: [ObjectIdentifier: BroadcastReceiver<Element>] = [:]
        @usableFromInline var isFinished = false

        init(size: Int) {
            ring = ContiguousArray(repeating: nil, count: size)
            mask = UInt64(size - 1)
        }

        @inlinable var oldestRetained: UInt64 { tail > mask ? tail - mask - 1 : 0 }
    }

    /// Creates a channel retaining the latest `capacity` elements (rounded up to a power of two).
    public init(capacity: Int) {
        precondition(capacity >= 1 && capacity <= 1 << 32, "BroadcastChannel capacity must be 1...2^32, got \(capacity)")
        var size = 1
        while size < capacity { size <<= 1 }
        self.capacity = size
        state = LockedValue(State(size: size))
    }

    /// Receivers subscribed right now.
    public var receiverCount: Int { state.withLock { $0.receiverCount } }

    /// Publishes `element` to every receiver; never waits. The oldest retained element is
    /// overwritten when the ring is full.
    /// - Returns: the number of receivers subscribed, or 0 if the channel is finished.
    @inlinable @discardableResult
    public func send(_ element: Element) -> Int {
        let (receivers, hasWaiting) = state.withLock { state -> (Int, Bool) in
            guard !state.isFinished else { return (0, false) }
            state.ring[Int(state.tail & state.mask)] = element
            state.tail &+= 1
            return (state.receiverCount, !state.waiting.isEmpty)
        }
        if hasWaiting { wakeWaiting() }
        return receivers
    }

    /// Wakes every receiver waiting for a send.
    @usableFromInline
    func wakeWaiting() {
        let woken = state.withLock { state -> [BroadcastReceiver<Element>] in
            defer { state.waiting.removeAll(keepingCapacity: true) }
            return Array(state.waiting.values)
        }
        for receiver in woken { receiver.wake() }
    }

    /// A new receiver that gets every element sent from now on.
    public func subscribe() -> BroadcastReceiver<Element> {
        state.withLock { state in
            state.receiverCount += 1
            return BroadcastReceiver(channel: self, position: state.tail)
        }
    }

    /// Ends the channel: receivers get what they have not read yet, then `nil`.
    public func finish() {
        let woken = state.withLock { state -> [BroadcastReceiver<Element>] in
            state.isFinished = true
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for receiver in woken { receiver.wake() }
    }

    /// Moves up to `limit` messages for a receiver at `position` into `batch`.
    /// - Returns: false when the channel is finished and nothing is left.
    @inlinable
    func take(from position: inout UInt64, limit: Int, into batch: inout [BroadcastMessage<Element>]) -> Bool {
        state.withLock { state in
            let oldest = state.oldestRetained
            if position < oldest {
                batch.append(.lagged(missed: Int(oldest - position)))
                position = oldest
            }
            while position < state.tail && batch.count < limit {
                batch.append(.element(state.ring[Int(position & state.mask)]!))
                position += 1
            }
            return !batch.isEmpty || !state.isFinished
        }
    }

    /// Registers `receiver` to be woken by the next send, unless something is already
    /// there for `position` (or the channel is finished).
    /// - Returns: false if the receiver should not wait.
    func register(_ receiver: BroadcastReceiver<Element>, at position: UInt64) -> Bool {
        state.withLock { state in
            if position < state.tail || state.isFinished { return false }
            state.waiting[ObjectIdentifier(receiver)] = receiver
            return true
        }
    }

    func unsubscribe(_ receiver: BroadcastReceiver<Element>) {
        state.withLock { state in
            state.receiverCount -= 1
            state.waiting.removeValue(forKey: ObjectIdentifier(receiver))
        }
    }

    func cancelWait(_ receiver: BroadcastReceiver<Element>) -> Bool {
        state.withLock { $0.waiting.removeValue(forKey: ObjectIdentifier(receiver)) != nil }
    }
}

/// What a broadcast receiver gets: an element, or word that it fell behind.
public enum BroadcastMessage<Element: Sendable>: Sendable {
    /// The next element.
    case element(Element)
    /// The receiver fell more than the channel's capacity behind: `missed` elements were
    /// overwritten before it read them. The next message is the oldest retained element.
    case lagged(missed: Int)

    /// The element, or nil for a lag notice.
    public var element: Element? {
        if case .element(let element) = self { return element }
        return nil
    }
}

extension BroadcastMessage: Equatable where Element: Equatable {}

/// One subscriber of a ``BroadcastChannel``. Read it from one task at a time.
///
/// It takes messages from the channel in batches, which is why iterating is cheap.
/// Dropping the receiver unsubscribes it.
public final class BroadcastReceiver<Element: Sendable>: ChannelSequence, @unchecked Sendable {
    public typealias Failure = Never

    @usableFromInline let channel: BroadcastChannel<Element>
    // Read and written only by the task reading this receiver.
    @usableFromInline var position: UInt64
    @usableFromInline var batch: [BroadcastMessage<Element>] = []
    @usableFromInline var batchIndex = 0
    private let wakeLock = LockedValue(WakeState())

    private struct WakeState: @unchecked Sendable {
        var continuation: UnsafeContinuation<Void, Never>?
        var woken = false
    }

    @inlinable static var batchLimit: Int { 64 }

    init(channel: BroadcastChannel<Element>, position: UInt64) {
        self.channel = channel
        self.position = position
        batch.reserveCapacity(Self.batchLimit)
    }

    deinit { channel.unsubscribe(self) }

    /// Receives the next message, waiting while there is none.
    /// - Returns: `nil` once the channel is finished and everything has been read, or when
    ///   the task is cancelled while waiting.
    @inlinable
    public func receive() async -> BroadcastMessage<Element>? {
        while true {
            if let message = nextBuffered() { return message }
            guard channel.take(from: &position, limit: Self.batchLimit, into: &batch) else { return nil }
            if !batch.isEmpty { continue }
            if Task.isCancelled { return nil }
            await waitForSend()
        }
    }

    /// Receives the next message if one is ready; never waits.
    @inlinable
    public func tryReceive() -> BroadcastMessage<Element>? {
        if let message = nextBuffered() { return message }
        _ = channel.take(from: &position, limit: Self.batchLimit, into: &batch)
        return nextBuffered()
    }

    @inlinable
    func nextBuffered() -> BroadcastMessage<Element>? {
        if batchIndex < batch.count {
            defer { batchIndex += 1 }
            return batch[batchIndex]
        }
        if !batch.isEmpty {
            batch.removeAll(keepingCapacity: true)
            batchIndex = 0
        }
        return nil
    }

    @usableFromInline
    func waitForSend() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                wakeLock.withLock { state in
                    state.continuation = continuation
                    state.woken = false
                }
                if !channel.register(self, at: position) || Task.isCancelled {
                    _ = channel.cancelWait(self)
                    wake()
                }
            }
        } onCancel: {
            _ = channel.cancelWait(self)
            wake()
        }
    }

    /// Resumes the waiting reader, once per wait.
    func wake() {
        let continuation = wakeLock.withLock { state -> UnsafeContinuation<Void, Never>? in
            guard !state.woken, let continuation = state.continuation else { return nil }
            state.woken = true
            state.continuation = nil
            return continuation
        }
        continuation?.resume()
    }

    @inlinable
    public func makeAsyncIterator() -> Iterator { Iterator(receiver: self) }

    /// Yields messages until the channel is finished.
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let receiver: BroadcastReceiver

        @inlinable init(receiver: BroadcastReceiver) { self.receiver = receiver }

        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> BroadcastMessage<Element>? {
            await receiver.receive()
        }

        @inlinable
        public mutating func next() async -> BroadcastMessage<Element>? { await receiver.receive() }
    }
}
