import CKizunaRuntime
import DequeModule
public import Synchronization

/// A fair async counting semaphore: the one waiting mechanism behind ``OperationLimiter``,
/// ``ThreadSafe`` and ``AsyncMutex``.
///
/// `state` packs the available permits (bits 2 and up) with two flags: bit 0 is set while
/// any waiter is queued, bit 1 while an acquirer of several permits (a writer) spins for
/// them. With no waiters, acquire and release are one compare-and-swap. With waiters,
/// everything goes through the lock and permits are handed out strictly in arrival order,
/// so a waiter that wants many permits (a writer) is never overtaken by later waiters that
/// want few (readers).
///
/// Before anyone queues, a contended acquirer spins briefly: holders usually release within
/// nanoseconds. A writer spins with its intent flag raised, which keeps new readers out
/// (they spin instead) so the readers inside can drain; without it a writer would rarely
/// see every permit free at once and would queue, and a queue turns each write into two
/// task switches.
@usableFromInline
final class AsyncSemaphore: Sendable {
    @usableFromInline let state: Atomic<Int>
    private let waiters = LockedValue(Deque<Waiter>())
    @usableFromInline let capacity: Int

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

    @usableFromInline
    init(permits: Int) {
        capacity = permits
        state = Atomic(permits << Self.permitShift)
    }

    @inlinable static var queuedFlag: Int { 1 }
    @inlinable static var intentFlag: Int { 2 }
    @inlinable static var permitShift: Int { 2 }

    /// Permits free right now.
    @inlinable var available: Int { state.load(ordering: .relaxed) >> Self.permitShift }

    /// Takes `count` permits if they are free now and nobody is queued.
    @inlinable @inline(__always)
    func tryAcquire(_ count: Int = 1) -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & (Self.queuedFlag | Self.intentFlag) == 0 && current >> Self.permitShift >= count {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current - count << Self.permitShift,
                successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Takes `count` permits, waiting in line while they are not free.
    /// - Throws: `CancellationError` if the task is cancelled while waiting; it then
    ///   holds no permit and has left the line.
    @inlinable @inline(__always)
    func acquire(_ count: Int = 1) async throws(CancellationError) {
        if tryAcquire(count) { return }
        try await acquireContended(count)
    }

    @usableFromInline
    func acquireContended(_ count: Int) async throws(CancellationError) {
        // Spin only while nobody is queued: then the task to run next is a queued one, and
        // spinning would keep a worker from it.
        if count > 1 && raiseIntent() {
            for _ in 0..<Self.spinsBeforeWaiting {
                kizuna_cpu_relax()
                if acquireWithIntent(count) { return }
                if state.load(ordering: .relaxed) & Self.queuedFlag != 0 { break }
            }
            state.bitwiseAnd(~Self.intentFlag, ordering: .releasing)
        } else {
            for _ in 0..<Self.spinsBeforeWaiting {
                kizuna_cpu_relax()
                if tryAcquire(count) { return }
                if state.load(ordering: .relaxed) & Self.queuedFlag != 0 { break }
            }
        }
        do {
            try await acquireWaiting(count)
        } catch {
            throw CancellationError()
        }
    }

    /// Raises the intent flag if nobody is queued and no other writer has it.
    private func raiseIntent() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & (Self.queuedFlag | Self.intentFlag) == 0 {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current | Self.intentFlag, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Takes `count` permits and lowers the intent flag this acquirer raised, if the
    /// permits are free and nobody is queued.
    private func acquireWithIntent(_ count: Int) -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & Self.queuedFlag == 0 && current >> Self.permitShift >= count {
            let desired = (current - count << Self.permitShift) & ~Self.intentFlag
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: desired, successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
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
                        let take = queue.isEmpty && current >> Self.permitShift >= count
                        let desired = take ? current - count << Self.permitShift : current | Self.queuedFlag
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
    @inlinable @inline(__always)
    func release(_ count: Int = 1) {
        var current = state.load(ordering: .relaxed)
        while current & Self.queuedFlag == 0 {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current + count << Self.permitShift,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            current = original
        }
        releaseToWaiters(count)
    }

    @usableFromInline
    func releaseToWaiters(_ count: Int) {
        let granted = waiters.withLock { queue in
            state.wrappingAdd(count << Self.permitShift, ordering: .acquiringAndReleasing)
            return grantInOrder(&queue)
        }
        for continuation in granted { continuation.resume() }
    }

    /// Hands free permits to the head of the line, in order, while they suffice. Called
    /// under the lock while the waiters flag is set, so nobody else changes `state`.
    private func grantInOrder(_ queue: inout Deque<Waiter>) -> [UnsafeContinuation<Void, any Error>] {
        var granted: [UnsafeContinuation<Void, any Error>] = []
        while let head = queue.first, state.load(ordering: .relaxed) >> Self.permitShift >= head.count {
            state.wrappingSubtract(head.count << Self.permitShift, ordering: .acquiringAndReleasing)
            queue.removeFirst()
            if case .queued(let continuation) = head.phase { granted.append(continuation) }
            head.phase = .granted
        }
        if queue.isEmpty { state.bitwiseAnd(~Self.queuedFlag, ordering: .acquiringAndReleasing) }
        return granted
    }
}
