/// A value guarded by an async mutex: one holder at a time, waiters served in arrival order.
///
/// Copies share one value. The closure may suspend while it holds the lock. A task
/// cancelled while it waits leaves the line, never takes the lock, and the call throws
/// `CancellationError`.
public struct AsyncMutex<Value>: Sendable {
    @usableFromInline let storage: LockedStorage<Value>

    /// Wraps `value`.
    public init(_ value: sending Value) {
        storage = LockedStorage(value, permits: 1)
    }

    /// Runs `body` holding the lock, waiting while another task holds it.
    @inlinable
    @discardableResult
    public func withLock<Result>(_ body: nonisolated(nonsending) (inout sending Value) async throws -> sending Result) async throws -> sending Result {
        try await storage.semaphore.acquire(1)
        defer { storage.semaphore.release(1) }
        return try await body(&storage.pointer.pointee)
    }

    /// Runs `body` holding the lock if it is free right now; never waits.
    /// - Returns: `body`'s result, or `nil` if the lock was held or awaited by another task.
    @inlinable
    @discardableResult
    public func tryLock<Result>(_ body: (inout sending Value) throws -> sending Result) rethrows -> sending Result? {
        guard storage.semaphore.tryAcquire(1) else { return nil }
        defer { storage.semaphore.release(1) }
        return try body(&storage.pointer.pointee)
    }

    /// True if a task holds the lock at this moment.
    public var isLocked: Bool { storage.semaphore.available == 0 }
}
