import Synchronization

/// Caps how many operations run at once: each holds a permit, and acquiring waits in
/// line while all are taken. The runtime has one with 1000 permits by default
/// (``RuntimeConfiguration/operationPermits``).
///
/// ```swift
/// try await limiter.withPermit { try await upload(chunk) }
/// ```
public final class OperationLimiter: Sendable {
    @usableFromInline let semaphore: AsyncSemaphore

    /// The most permits a limiter may have.
    public static let maximumPermits = 1 << 40

    /// Creates a limiter with `permits` permits (1 to ``maximumPermits``).
    public init(permits: Int) {
        precondition(permits >= 1 && permits <= Self.maximumPermits, "OperationLimiter needs 1...\(Self.maximumPermits) permits, got \(permits)")
        semaphore = AsyncSemaphore(permits: permits)
    }

    /// The number of permits.
    public var capacity: Int { semaphore.capacity }

    /// Permits held right now.
    public var inUse: Int { semaphore.capacity - semaphore.available }

    /// Waits for a permit. The permit is returned when it is released or goes out of scope.
    /// - Throws: `CancellationError` if the task is cancelled while waiting.
    @inlinable
    public func acquire() async throws(CancellationError) -> OperationPermit {
        try await semaphore.acquire()
        return OperationPermit(semaphore)
    }

    /// Takes a permit if one is free right now; never waits.
    @inlinable
    public func tryAcquire() -> OperationPermit? {
        semaphore.tryAcquire() ? OperationPermit(semaphore) : nil
    }

    /// Runs `body` holding a permit.
    /// - Throws: `CancellationError` if cancelled while waiting, or what `body` throws.
    @inlinable
    public func withPermit<Result>(_ body: nonisolated(nonsending) () async throws -> sending Result) async throws -> sending Result {
        try await semaphore.acquire()
        defer { semaphore.release() }
        return try await body()
    }
}

/// A permit from an ``OperationLimiter``. It cannot be copied, so it is returned exactly
/// once: by ``release()`` or when it goes out of scope.
public struct OperationPermit: ~Copyable, Sendable {
    @usableFromInline let semaphore: AsyncSemaphore
    /// The runtime scope the permit is counted against, if it was taken through a handle.
    @usableFromInline let scope: TaskTracker?

    @inlinable init(_ semaphore: AsyncSemaphore, scope: TaskTracker? = nil) {
        self.semaphore = semaphore
        self.scope = scope
        scope?.permitTaken()
    }

    /// Returns the permit now.
    @inlinable public consuming func release() {}

    @inlinable deinit {
        semaphore.release()
        scope?.permitReturned()
    }
}
