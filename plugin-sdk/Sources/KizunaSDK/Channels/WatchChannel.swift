import Synchronization

/// The latest value plus change notification: senders replace the value, receivers see
/// the newest one and are woken when it changes. Intermediate values may be skipped.
///
/// ```swift
/// let status = WatchChannel("starting")
/// let changes = status.subscribe()
/// status.send("running")
/// for await value in changes { print(value) }  // "running", then every later change
/// ```
public final class WatchChannel<Value: Sendable>: Sendable {
    private struct State: @unchecked Sendable {
        var value: Value
        var version: UInt64 = 0
        var isFinished = false
        var waiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var cancelledBeforeWaiting: Set<UInt64> = []
        var nextWaiterID: UInt64 = 0
    }

    private let state: LockedValue<State>

    /// Creates a channel holding `initial`.
    public init(_ initial: Value) { state = LockedValue(State(value: initial)) }

    /// The current value.
    public var value: Value { state.withLock { $0.value } }

    /// How many times the value has been replaced.
    public var version: UInt64 { state.withLock { $0.version } }

    /// Replaces the value and wakes every receiver waiting for a change.
    public func send(_ value: Value) {
        update { $0 = value }
    }

    /// Changes the value in place and wakes every receiver waiting for a change.
    public func update(_ body: (inout Value) -> Void) {
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            guard !state.isFinished else { return [] }
            body(&state.value)
            state.version += 1
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Ends the channel: receivers see the last value, then their sequences end.
    public func finish() {
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            state.isFinished = true
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A receiver that first sees the current value, then each change.
    public func subscribe() -> WatchReceiver<Value> { WatchReceiver(channel: self, seen: nil) }

    /// The value if it is newer than `version`, or nil (with `finished` when there will be no more).
    func current(newerThan version: UInt64?) -> (value: Value, version: UInt64)?? {
        state.withLock { state in
            if version == nil || state.version > version! { return (state.value, state.version) }
            return state.isFinished ? .some(nil) : nil
        }
    }

    /// Waits until the version passes `version`, the channel finishes, or the task is cancelled.
    func waitForChange(after version: UInt64) async {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.version > version || state.isFinished || state.cancelledBeforeWaiting.remove(id) != nil { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                // Not waiting yet, unless a change already released it.
                if state.version <= version && !state.isFinished { state.cancelledBeforeWaiting.insert(id) }
                return nil
            }
            waiter?.resume()
        }
    }
}

/// Reads a ``WatchChannel``: the current value first, then the newest value after each change.
public struct WatchReceiver<Value: Sendable>: ChannelSequence, Sendable {
    public typealias Element = Value
    public typealias Failure = Never

    let channel: WatchChannel<Value>
    let seen: UInt64?

    /// The current value, without waiting.
    public var value: Value { channel.value }

    public func makeAsyncIterator() -> Iterator { Iterator(channel: channel, seen: seen) }

    /// Yields the newest value each time it changes; ends when the channel finishes or the
    /// task is cancelled.
    public struct Iterator: AsyncIteratorProtocol {
        let channel: WatchChannel<Value>
        var seen: UInt64?

        public mutating func next(isolation actor: isolated (any Actor)?) async -> Value? {
            while true {
                switch channel.current(newerThan: seen) {
                case .some(.some(let current)):
                    seen = current.version
                    return current.value
                case .some(.none):
                    return nil
                case .none:
                    if Task.isCancelled { return nil }
                    await channel.waitForChange(after: seen!)
                }
            }
        }

        public mutating func next() async -> Value? { await next(isolation: nil) }
    }
}
