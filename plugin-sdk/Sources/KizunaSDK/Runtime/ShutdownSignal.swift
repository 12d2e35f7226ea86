import Synchronization

/// A one-way, fire-once shutdown broadcast.
///
/// Subscribers await it or iterate it. Signalling twice is harmless, and a subscriber
/// that arrives after the signal sees it at once.
public final class ShutdownSignal: Sendable {
    private struct State: Sendable {
        var isSignalled = false
        var waiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var cancelledBeforeWaiting: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state = LockedValue(State())

    /// Creates a signal that has not fired.
    public init() {}

    /// True once ``signal()`` has been called.
    public var isSignalled: Bool { state.withLock { $0.isSignalled } }

    /// Subscribers waiting right now.
    public var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// Fires the signal: every waiting subscriber returns, and later ones return at once.
    /// Calling it again does nothing.
    public func signal() {
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            guard !state.isSignalled else { return [] }
            state.isSignalled = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// A subscription to await or iterate.
    public func subscribe() -> ShutdownSubscription { ShutdownSubscription(signal: self) }

    func wait() async {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.isSignalled || state.cancelledBeforeWaiting.remove(id) != nil { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                // Not waiting yet (a signal would have removed it with everyone else).
                if !state.isSignalled { state.cancelledBeforeWaiting.insert(id) }
                return nil
            }
            waiter?.resume()
        }
    }
}

/// A subscription to a ``ShutdownSignal``.
///
/// ```swift
/// await subscription.wait()              // returns once shutdown is signalled
/// for await _ in subscription { break }  // or iterate: one element, then the end
/// ```
public struct ShutdownSubscription: Sendable, AsyncSequence {
    public typealias Element = Void
    public typealias Failure = Never

    let signal: ShutdownSignal

    /// True once shutdown has been signalled.
    public var isSignalled: Bool { signal.isSignalled }

    /// Returns when shutdown is signalled, or early if the calling task is cancelled.
    public func wait() async { await signal.wait() }

    /// Waits for shutdown to be signalled, for at most `limit`.
    /// - Returns: true if it was signalled.
    public func wait(within limit: Duration) async -> Bool {
        let signal = signal
        return await KizunaSDK.wait(until: { signal.isSignalled }, within: limit) { await signal.wait() }
    }

    public func makeAsyncIterator() -> Iterator { Iterator(signal: signal) }

    /// Yields one element when shutdown is signalled, then ends. Ends early on cancellation.
    public struct Iterator: AsyncIteratorProtocol {
        let signal: ShutdownSignal
        var finished = false

        public mutating func next(isolation actor: isolated (any Actor)?) async -> Void? {
            guard !finished else { return nil }
            await signal.wait()
            finished = true
            return signal.isSignalled ? () : nil
        }

        public mutating func next() async -> Void? { await next(isolation: nil) }
    }
}
