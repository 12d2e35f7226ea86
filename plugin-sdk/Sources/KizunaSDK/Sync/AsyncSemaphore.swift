import CKizunaRuntime
import DequeModule
import Synchronization

/// A fair async counting semaphore: the one waiting mechanism behind ``OperationLimiter``,
/// ``ThreadSafe`` and ``AsyncMutex``.
///
/// `state` packs the available permits (upper bits) with a flag (bit 0) that is set while
/// any waiter is queued. With no waiters, acquire and release are one compare-and-swap.
/// With waiters, everything goes through the lock and permits are handed out strictly in
/// arrival order, so a waiter that wants many permits (a writer) is never overtaken by
/// later waiters that want few (readers).
final class AsyncSemaphore: Sendable {
    private let state: Atomic<Int>
    private let waiters = Mutex(Deque<Waiter>())
    let capacity: Int

    /// One suspended acquirer. `phase` is guarded by the semaphore's lock.
    private final class Waiter: @unchecked Sendable {
        enum Phase {
            case created
            case queued(UnsafeContinuation<Void, any Error>)
            case granted
            case cancelled
        }
        let count: Int
        var phase = Phase.created
        init(count: Int) { self.count = count }
    }

    private static var spinsBeforeWaiting: Int { 128 }

    init(permits: Int) {
        capacity = permits
        state = Atomic(permits << 1)
    }

    /// Permits free right now.
    var available: Int { state.load(ordering: .relaxed) >> 1 }

    /// Takes `count` permits if they are free now and nobody is queued.
    @inline(__always) func tryAcquire(_ count: Int = 1) -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & 1 == 0 && current >> 1 >= count {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current - count << 1,
                successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Takes `count` permits, waiting in line while they are not free.
    /// - Throws: `CancellationError` if the task is cancelled while waiting; it then
    ///   holds no permit and has left the line.
    @inline(__always) func acquire(_ count: Int = 1) async throws(CancellationError) {
        if tryAcquire(count) { return }
        // Holders usually release within nanoseconds, so a short spin beats suspending, but
        // only while nobody is queued: then the task to run next is a queued one, and
        // spinning would keep a worker from it.
        for _ in 0..<Self.spinsBeforeWaiting {
            kizuna_cpu_relax()
            if tryAcquire(count) { return }
            if state.load(ordering: .relaxed) & 1 != 0 { break }
        }
        do {
            try await acquireWaiting(count)
        } catch {
            throw CancellationError()
        }
    }

    private func acquireWaiting(_ count: Int) async throws {
        let waiter = Waiter(count: count)
        try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                enum Outcome { case acquired, cancelled, queued }
                let outcome = waiters.withLock { queue -> Outcome in
                    if case .cancelled = waiter.phase { return .cancelled }
                    // Take the permits, or raise the waiters flag, in one atomic step, so a
                    // lock-free release either lands before (we see it) or fails (it sees the flag).
                    var current = state.load(ordering: .relaxed)
                    while true {
                        let take = queue.isEmpty && current >> 1 >= count
                        let desired = take ? current - count << 1 : current | 1
                        let (exchanged, original) = state.compareExchange(
                            expected: current, desired: desired, ordering: .acquiringAndReleasing)
                        if exchanged {
                            if take { return .acquired }
                            break
                        }
                        current = original
                    }
                    waiter.phase = .queued(continuation)
                    queue.append(waiter)
                    return .queued
                }
                switch outcome {
                case .acquired: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let (cancelled, granted) = waiters.withLock { queue -> (UnsafeContinuation<Void, any Error>?, [UnsafeContinuation<Void, any Error>]) in
                switch waiter.phase {
                case .created:
                    waiter.phase = .cancelled
                    return (nil, [])
                case .queued(let continuation):
                    waiter.phase = .cancelled
                    if let index = queue.firstIndex(where: { $0 === waiter }) { queue.remove(at: index) }
                    // Leaving the line may let the waiters behind us through.
                    return (continuation, grantInOrder(&queue))
                case .granted, .cancelled:
                    return (nil, [])
                }
            }
            cancelled?.resume(throwing: CancellationError())
            for continuation in granted { continuation.resume() }
        }
    }

    /// Returns `count` permits.
    @inline(__always) func release(_ count: Int = 1) {
        var current = state.load(ordering: .relaxed)
        while current & 1 == 0 {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current + count << 1,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            current = original
        }
        releaseToWaiters(count)
    }

    private func releaseToWaiters(_ count: Int) {
        let granted = waiters.withLock { queue in
            state.wrappingAdd(count << 1, ordering: .acquiringAndReleasing)
            return grantInOrder(&queue)
        }
        for continuation in granted { continuation.resume() }
    }

    /// Hands free permits to the head of the line, in order, while they suffice. Called
    /// under the lock while the waiters flag is set, so nobody else changes `state`.
    private func grantInOrder(_ queue: inout Deque<Waiter>) -> [UnsafeContinuation<Void, any Error>] {
        var granted: [UnsafeContinuation<Void, any Error>] = []
        while let head = queue.first, state.load(ordering: .relaxed) >> 1 >= head.count {
            state.wrappingSubtract(head.count << 1, ordering: .acquiringAndReleasing)
            queue.removeFirst()
            if case .queued(let continuation) = head.phase { granted.append(continuation) }
            head.phase = .granted
        }
        if queue.isEmpty { state.bitwiseAnd(~1, ordering: .acquiringAndReleasing) }
        return granted
    }
}
