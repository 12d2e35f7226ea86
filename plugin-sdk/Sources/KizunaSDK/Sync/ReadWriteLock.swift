import CKizunaRuntime
public import Synchronization

/// The async read/write lock behind ``ThreadSafe``: many readers or one writer, writers
/// preferred, and no hand-off.
///
/// `state` packs whether a writer holds the lock (bit 0), whether any task sleeps in the
/// wait queue (bit 1), how many writers are waiting (bits 2–19) and how many readers hold
/// the lock (bits 20 and up). Uncontended, locking and unlocking are one atomic operation.
///
/// A waiting writer keeps new readers out, so a stream of readers cannot starve it. A
/// contended acquirer spins briefly before it sleeps, because holders usually release
/// within nanoseconds. A release wakes sleepers to *try again* rather than handing them
/// the lock: a lock handed to a task that is not running yet stays held until it is
/// scheduled, and under contention that turns every operation into task switches.
@usableFromInline
final class ReadWriteLock: Sendable {
    @usableFromInline let state = Atomic<Int>(0)
    private let waiters = LockedValue(Waiters())

    @inlinable static var writerHeld: Int { 1 }
    @inlinable static var sleepersFlag: Int { 2 }
    @inlinable static var waitingWriter: Int { 4 }
    @inlinable static var waitingWriterMask: Int { ((1 << 18) - 1) << 2 }
    @inlinable static var reader: Int { 1 << 20 }
    private static var spinsBeforeSleeping: Int { 256 }

    private final class Sleeper: @unchecked Sendable {
        let isWriter: Bool
        var continuation: UnsafeContinuation<Void, any Error>?
        var isCancelled = false
        init(isWriter: Bool) { self.isWriter = isWriter }
    }

    private struct Waiters {
        var readers: [Sleeper] = []
        var writers = RingBuffer<Sleeper>()
        var isEmpty: Bool { readers.isEmpty && writers.isEmpty }
    }

    @usableFromInline init() {}

    /// Takes a read lock if no writer holds or waits for the lock.
    @inlinable
    func tryLockShared() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & (Self.writerHeld | Self.waitingWriterMask) == 0 {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current + Self.reader, successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Takes the write lock if nobody holds or waits for it.
    @inlinable
    func tryLockExclusive() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & ~Self.sleepersFlag == 0 {
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: current | Self.writerHeld, successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    @inlinable
    func lockShared() async throws(CancellationError) {
        if tryLockShared() { return }
        try await lockSharedContended()
    }

    @inlinable
    func lockExclusive() async throws(CancellationError) {
        if tryLockExclusive() { return }
        try await lockExclusiveContended()
    }

    @inlinable
    func unlockShared() {
        let after = state.wrappingSubtract(Self.reader, ordering: .sequentiallyConsistent).newValue
        // The last reader out lets a waiting writer in.
        if after & Self.sleepersFlag != 0 && after < Self.reader { wakeSleepers() }
    }

    @inlinable
    func unlockExclusive() {
        let after = state.bitwiseAnd(~Self.writerHeld, ordering: .sequentiallyConsistent).newValue
        if after & Self.sleepersFlag != 0 { wakeSleepers() }
    }

    @usableFromInline
    func lockSharedContended() async throws(CancellationError) {
        while true {
            for _ in 0..<Self.spinsBeforeSleeping {
                kizuna_cpu_relax()
                if tryLockShared() { return }
            }
            try await sleep(isWriter: false) { $0 & (Self.writerHeld | Self.waitingWriterMask) == 0 }
            if tryLockShared() { return }
        }
    }

    @usableFromInline
    func lockExclusiveContended() async throws(CancellationError) {
        // Announce the waiting writer: from now on no new reader gets in.
        state.wrappingAdd(Self.waitingWriter, ordering: .sequentiallyConsistent)
        while true {
            for _ in 0..<Self.spinsBeforeSleeping {
                kizuna_cpu_relax()
                if acquireAsWaitingWriter() { return }
            }
            do {
                try await sleep(isWriter: true) { $0 & ~(Self.sleepersFlag | Self.waitingWriterMask) == 0 }
            } catch {
                let after = state.wrappingSubtract(Self.waitingWriter, ordering: .sequentiallyConsistent).newValue
                // The readers this writer kept out may go in now.
                if after & Self.sleepersFlag != 0 { wakeSleepers() }
                throw error
            }
            if acquireAsWaitingWriter() { return }
        }
    }

    /// Takes the write lock for a writer counted as waiting, and stops counting it.
    private func acquireAsWaitingWriter() -> Bool {
        var current = state.load(ordering: .relaxed)
        while current & ~(Self.sleepersFlag | Self.waitingWriterMask) == 0 {
            let desired = (current | Self.writerHeld) - Self.waitingWriter
            let (exchanged, original) = state.weakCompareExchange(
                expected: current, desired: desired, successOrdering: .acquiring, failureOrdering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Sleeps until a release wakes this task to try again. `couldProceed` is checked
    /// after the task is queued, so a release that happened meanwhile is not missed.
    private func sleep(isWriter: Bool, couldProceed: @escaping (Int) -> Bool) async throws(CancellationError) {
        let sleeper = Sleeper(isWriter: isWriter)
        do {
            try await withTaskCancellationHandler {
                try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                    enum Outcome { case sleep, retry, cancelled }
                    let outcome = waiters.withLock { waiters -> Outcome in
                        if sleeper.isCancelled { return .cancelled }
                        sleeper.continuation = continuation
                        if isWriter { waiters.writers.append(sleeper) } else { waiters.readers.append(sleeper) }
                        state.bitwiseOr(Self.sleepersFlag, ordering: .sequentiallyConsistent)
                        guard couldProceed(state.load(ordering: .sequentiallyConsistent)) else { return .sleep }
                        sleeper.continuation = nil
                        Self.remove(sleeper, from: &waiters)
                        if waiters.isEmpty { state.bitwiseAnd(~Self.sleepersFlag, ordering: .sequentiallyConsistent) }
                        return .retry
                    }
                    switch outcome {
                    case .sleep: break
                    case .retry: continuation.resume()
                    case .cancelled: continuation.resume(throwing: CancellationError())
                    }
                }
            } onCancel: {
                let continuation = waiters.withLock { waiters -> UnsafeContinuation<Void, any Error>? in
                    sleeper.isCancelled = true
                    guard let continuation = sleeper.continuation else { return nil }
                    sleeper.continuation = nil
                    Self.remove(sleeper, from: &waiters)
                    if waiters.isEmpty { state.bitwiseAnd(~Self.sleepersFlag, ordering: .sequentiallyConsistent) }
                    return continuation
                }
                continuation?.resume(throwing: CancellationError())
            }
        } catch {
            throw CancellationError()
        }
    }

    private static func remove(_ sleeper: Sleeper, from waiters: inout Waiters) {
        if sleeper.isWriter {
            _ = waiters.writers.removeFirst { $0 === sleeper }
        } else if let index = waiters.readers.firstIndex(where: { $0 === sleeper }) {
            waiters.readers.remove(at: index)
        }
    }

    /// Wakes whoever can make progress now: one writer while writers wait, otherwise every
    /// sleeping reader. Woken tasks compete for the lock again.
    @usableFromInline
    func wakeSleepers() {
        let woken = waiters.withLock { waiters -> [UnsafeContinuation<Void, any Error>] in
            let current = state.load(ordering: .sequentiallyConsistent)
            var sleepers: [Sleeper] = []
            if current & Self.waitingWriterMask != 0 {
                if current & Self.writerHeld == 0 && current < Self.reader, let writer = waiters.writers.popFirst() {
                    sleepers.append(writer)
                }
            } else {
                sleepers = waiters.readers
                waiters.readers.removeAll()
            }
            if waiters.isEmpty { state.bitwiseAnd(~Self.sleepersFlag, ordering: .sequentiallyConsistent) }
            return sleepers.compactMap { sleeper in
                defer { sleeper.continuation = nil }
                return sleeper.continuation
            }
        }
        for continuation in woken { continuation.resume() }
    }
}
