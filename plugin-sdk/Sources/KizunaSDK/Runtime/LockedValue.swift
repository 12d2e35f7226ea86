import CKizunaRuntime
public import Glibc

/// A value behind a mutex, for the short critical sections of the runtime's channels,
/// locks and trackers.
///
/// It uses glibc's adaptive mutex rather than `Synchronization.Mutex`, which on Linux is a
/// priority-inheritance futex: every contended acquisition of that one enters the kernel,
/// while this one spins briefly first. Critical sections here are a few dozen nanoseconds.
@usableFromInline
final class LockedValue<Value>: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>
    @usableFromInline var value: Value

    @usableFromInline
    init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        kizuna_mutex_init(mutex)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    @inlinable @inline(__always)
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
