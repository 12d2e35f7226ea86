/// Shared state behind an async read/write lock: many readers at once, or one writer.
///
/// Copies share one value (it is a reference). A waiting writer keeps new readers out, so
/// a stream of readers never starves it. The closures may suspend while
/// they hold the lock. A task cancelled while it waits leaves the line and never takes the
/// lock; the call throws `CancellationError`.
///
/// ```swift
/// let peers = ThreadSafe<[PeerID: Peer]>([:])
/// try await peers.write { $0[peer.id] = peer }
/// let count = try await peers.read { $0.count }
/// ```
public struct ThreadSafe<Value: Sendable>: Sendable {
    @usableFromInline let storage: Storage

    /// Wraps `value`.
    public init(_ value: Value) {
        storage = Storage(value)
    }

    /// Runs `body` with shared read access, waiting while a writer holds or waits for the lock.
    @inlinable
    public func read<Result>(_ body: nonisolated(nonsending) (Value) async throws -> sending Result) async throws -> sending Result {
        try await storage.lock.lockShared()
        defer { storage.lock.unlockShared() }
        return try await body(storage.pointer.pointee)
    }

    /// Runs `body` with exclusive write access, waiting for current readers and writers.
    @inlinable @discardableResult
    public func write<Result>(_ body: nonisolated(nonsending) (inout Value) async throws -> sending Result) async throws -> sending Result {
        try await storage.lock.lockExclusive()
        defer { storage.lock.unlockExclusive() }
        return try await body(&storage.pointer.pointee)
    }

    /// Runs `body` with read access if no writer holds or waits for the lock; never waits.
    /// - Returns: `body`'s result, or `nil` if the lock was not available.
    @inlinable
    public func tryRead<Result>(_ body: (Value) throws -> Result) rethrows -> Result? {
        guard storage.lock.tryLockShared() else { return nil }
        defer { storage.lock.unlockShared() }
        return try body(storage.pointer.pointee)
    }

    /// Runs `body` with write access if nobody holds or waits for the lock; never waits.
    /// - Returns: `body`'s result, or `nil` if the lock was not available.
    @inlinable @discardableResult
    public func tryWrite<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result? {
        guard storage.lock.tryLockExclusive() else { return nil }
        defer { storage.lock.unlockExclusive() }
        return try body(&storage.pointer.pointee)
    }

    /// A copy of the current value.
    public var value: Value {
        get async throws { try await read { $0 } }
    }

    /// The value in manually managed memory plus the lock that guards it.
    @usableFromInline
    final class Storage: @unchecked Sendable {
        @usableFromInline let lock = ReadWriteLock()
        @usableFromInline let pointer: UnsafeMutablePointer<Value>

        init(_ value: Value) {
            pointer = .allocate(capacity: 1)
            pointer.initialize(to: value)
        }

        deinit {
            pointer.deinitialize(count: 1)
            pointer.deallocate()
        }
    }
}

/// A value in manually managed memory plus the semaphore that guards it. Access only
/// while holding permits: the semaphore, not the compiler, keeps it exclusive.
@usableFromInline
final class LockedStorage<Value>: @unchecked Sendable {
    @usableFromInline let semaphore: AsyncSemaphore
    @usableFromInline let pointer: UnsafeMutablePointer<Value>

    @usableFromInline
    init(_ value: Value, permits: Int) {
        semaphore = AsyncSemaphore(permits: permits)
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: value)
    }

    deinit {
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }
}
