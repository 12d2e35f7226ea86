/// Shared state behind an async read/write lock: many readers at once, or one writer.
///
/// Copies share one value (it is a reference). Waiters are served in arrival order, so a
/// waiting writer is never starved by a stream of readers. The closures may suspend while
/// they hold the lock. A task cancelled while it waits leaves the line and never takes the
/// lock; the call throws `CancellationError`.
///
/// ```swift
/// let peers = ThreadSafe<[PeerID: Peer]>([:])
/// try await peers.write { $0[peer.id] = peer }
/// let count = try await peers.read { $0.count }
/// ```
public struct ThreadSafe<Value: Sendable>: Sendable {
    private let storage: LockedStorage<Value>

    /// The most readers that may hold the lock at once.
    static var maximumReaders: Int { 1 << 30 }

    /// Wraps `value`.
    public init(_ value: Value) {
        storage = LockedStorage(value, permits: Self.maximumReaders)
    }

    /// Runs `body` with shared read access, waiting while a writer holds or waits for the lock.
    public func read<Result>(_ body: (Value) async throws -> sending Result) async throws -> sending Result {
        try await storage.semaphore.acquire(1)
        defer { storage.semaphore.release(1) }
        return try await body(storage.pointer.pointee)
    }

    /// Runs `body` with exclusive write access, waiting for current readers and writers.
    @discardableResult
    public func write<Result>(_ body: (inout Value) async throws -> sending Result) async throws -> sending Result {
        try await storage.semaphore.acquire(Self.maximumReaders)
        defer { storage.semaphore.release(Self.maximumReaders) }
        return try await body(&storage.pointer.pointee)
    }

    /// Runs `body` with read access if no writer holds or waits for the lock; never waits.
    /// - Returns: `body`'s result, or `nil` if the lock was not available.
    public func tryRead<Result>(_ body: (Value) throws -> Result) rethrows -> Result? {
        guard storage.semaphore.tryAcquire(1) else { return nil }
        defer { storage.semaphore.release(1) }
        return try body(storage.pointer.pointee)
    }

    /// Runs `body` with write access if nobody holds or waits for the lock; never waits.
    /// - Returns: `body`'s result, or `nil` if the lock was not available.
    @discardableResult
    public func tryWrite<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result? {
        guard storage.semaphore.tryAcquire(Self.maximumReaders) else { return nil }
        defer { storage.semaphore.release(Self.maximumReaders) }
        return try body(&storage.pointer.pointee)
    }

    /// A copy of the current value.
    public var value: Value {
        get async throws { try await read { $0 } }
    }
}

/// A value in manually managed memory plus the semaphore that guards it. Access only
/// while holding permits: the semaphore, not the compiler, keeps it exclusive.
final class LockedStorage<Value>: @unchecked Sendable {
    let semaphore: AsyncSemaphore
    let pointer: UnsafeMutablePointer<Value>

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
