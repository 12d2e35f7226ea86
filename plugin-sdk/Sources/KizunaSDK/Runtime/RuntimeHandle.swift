import Synchronization

/// A handle to spawn work on an ``AsyncRuntime``: `Sendable`, cheap to copy, usable from
/// any thread, including from inside blocking work.
///
/// Every task spawned through a handle runs on the runtime's workers (the awaiting side
/// can stay there too: see ``executor``), is counted in ``AsyncRuntime/metrics``, and is
/// cancelled if it is still running when its scope or the runtime shuts down.
public struct RuntimeHandle: Sendable {
    @usableFromInline let core: RuntimeCore
    @usableFromInline let tracker: TaskTracker

    /// The runtime's worker pool as a task executor, for `withTaskExecutorPreference`
    /// or `Task(executorPreference:)`.
    public var executor: any TaskExecutor { core.pool }

    /// The runtime's operation limiter.
    public var limiter: OperationLimiter { core.limiter }

    /// The runtime-wide shutdown signal.
    public var shutdownSignal: ShutdownSignal { core.shutdownSignal }

    /// What the runtime is doing right now.
    public var metrics: RuntimeMetrics { core.metrics }

    /// The name of this handle's scope (`"runtime"` for the root handle).
    public var scopeName: String { tracker.name }

    /// Tasks spawned through this handle's scope that have not finished.
    public var taskCount: Int { tracker.count }

    // MARK: Spawning

    /// Spawns `operation` as a task on the runtime's workers.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/shutDown`` once shutdown has begun.
    @inlinable @discardableResult
    public func spawn<Success: Sendable>(
        name: String? = nil, priority: TaskPriority? = nil,
        _ operation: sending @escaping () async -> Success
    ) throws(RuntimeError) -> Task<Success, Never> {
        let tracker = tracker
        let id = try tracker.begin()
        let task = Task(name: name, executorPreference: core.pool, priority: priority) {
            defer { tracker.end(id) }
            return await operation()
        }
        tracker.attach(id, task, name: name)
        return task
    }

    /// Spawns a throwing `operation` as a task on the runtime's workers.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/shutDown`` once shutdown has begun.
    @inlinable @discardableResult
    public func spawn<Success: Sendable>(
        name: String? = nil, priority: TaskPriority? = nil,
        _ operation: sending @escaping () async throws -> Success
    ) throws(RuntimeError) -> Task<Success, any Error> {
        let tracker = tracker
        let id = try tracker.begin()
        let task = Task(name: name, executorPreference: core.pool, priority: priority) {
            defer { tracker.end(id) }
            return try await operation()
        }
        tracker.attach(id, task, name: name)
        return task
    }

    /// Spawns `operation` with a time limit. If it has not finished when `timeout` passes,
    /// the task is cancelled and its value throws ``RuntimeError`` with code
    /// ``RuntimeError/Code/timedOut`` — even if the operation ignored the cancellation and
    /// finished later.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/shutDown`` once shutdown has begun.
    @discardableResult
    public func spawn<Success: Sendable>(
        timeout: Duration, name: String? = nil, priority: TaskPriority? = nil,
        _ operation: sending @escaping () async throws -> Success
    ) throws(RuntimeError) -> Task<Success, any Error> {
        let race = TimeoutRace()
        let timer = core.timer
        let task = try spawn(name: name, priority: priority) { () async throws -> Success in
            let result: Result<Success, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            if let entry = race.finish() { timer.cancel(entry) }
            if race.timedOut {
                throw RuntimeError(.timedOut, "task '\(name ?? "unnamed")' did not finish within \(timeout) and was cancelled; raise the timeout or make the work shorter")
            }
            return try result.get()
        }
        let entry = timer.schedule(atNanoseconds: monotonicNanoseconds() &+ timeout.nanosecondsClamped) {
            if race.expire() { task.cancel() }
        }
        if !race.arm(entry) { timer.cancel(entry) }
        return task
    }

    /// Runs the synchronous `body` on the blocking pool, never on the async workers, and
    /// gives its result through the returned task. `body` cannot be interrupted:
    /// cancelling the task does not stop it.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/shutDown`` once shutdown has begun.
    @discardableResult
    public func spawnBlocking<Success: Sendable>(
        name: String? = nil,
        _ body: @escaping @Sendable () throws -> Success
    ) throws(RuntimeError) -> Task<Success, any Error> {
        let blockingPool = core.blockingPool
        return try spawn(name: name) { () async throws -> Success in
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Success, any Error>) in
                do {
                    try blockingPool.submit { continuation.resume(with: Result { try body() }) }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// Runs `operation` on the runtime and blocks the calling thread until it finishes.
    /// For synchronous callers such as `main` or blocking work.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/blockOnFromWorker`` when
    ///   called on one of the runtime's own workers (it would wait on itself), or
    ///   ``RuntimeError/Code/shutDown`` after shutdown; otherwise what `operation` throws.
    public func blockOn<Success: Sendable>(_ operation: sending @escaping () async throws -> Success) throws -> Success {
        guard !core.pool.isCurrentThreadWorker else {
            throw RuntimeError(.blockOnFromWorker, "blockOn was called on runtime worker thread '\(AsyncRuntime.currentThreadName)', which would wait on itself; await the work instead, or call blockOn from a thread outside the runtime (spawnBlocking work is fine)")
        }
        let outcome = BlockingOutcome<Success>()
        try spawn(name: "blockOn") {
            do { outcome.complete(.success(try await operation())) } catch { outcome.complete(.failure(error)) }
        }
        return try outcome.wait().get()
    }

    // MARK: Permits and shutdown

    /// Waits for one of the runtime's operation permits, counted against this handle's
    /// scope (``permitsHeld``) until it is released.
    /// - Throws: `CancellationError` if cancelled while waiting.
    public func acquirePermit() async throws(CancellationError) -> OperationPermit {
        try await core.limiter.semaphore.acquire()
        return OperationPermit(core.limiter.semaphore, scope: tracker)
    }

    /// Runs `body` holding one of the runtime's operation permits, counted against this scope.
    /// - Throws: `CancellationError` if cancelled while waiting, or what `body` throws.
    public func withPermit<Result>(_ body: nonisolated(nonsending) () async throws -> sending Result) async throws -> sending Result {
        // Released explicitly on both paths: a non-copyable value may end at its last use,
        // so leaving it to the end of scope could return the permit before `body` runs.
        let permit = try await acquirePermit()
        do {
            let result = try await body()
            permit.release()
            return result
        } catch {
            permit.release()
            throw error
        }
    }

    /// Operation permits held through this handle's scope right now.
    public var permitsHeld: Int { tracker.permitsHeld }

    /// Subscribes to the runtime-wide shutdown signal.
    public func subscribeShutdown() -> ShutdownSubscription { core.shutdownSignal.subscribe() }

    /// Fires the runtime-wide shutdown signal (it does not stop the runtime by itself).
    public func signalShutdown() { core.shutdownSignal.signal() }

    // MARK: Scopes

    /// A handle whose tasks are also tracked as their own group, named `name`, so they
    /// can be counted, awaited and cancelled together (the host gives each plugin one).
    public func scoped(_ name: String) -> RuntimeHandle {
        RuntimeHandle(core: core, tracker: core.makeScope(name: name))
    }

    /// Refuses new tasks in this scope and cancels the running ones.
    /// - Returns: the names of the tasks this call cancelled (`"unnamed"` for unnamed ones);
    ///   tasks an earlier call cancelled that have not finished yet are not listed again.
    @discardableResult
    public func cancelScope() -> [String] {
        tracker.close()
        return tracker.cancelAll().map { $0 ?? "unnamed" }
    }

    /// Refuses new tasks in this scope from now on, letting running ones finish.
    public func closeScope() { tracker.close() }

    /// Returns when every task of this scope has finished, or when the calling task is cancelled.
    public func waitForScopeTasks() async { await tracker.waitUntilIdle() }

    /// Waits until every task of this scope has finished, for at most `limit`.
    /// - Returns: true if the scope went idle.
    public func waitForScopeTasks(within limit: Duration) async -> Bool {
        let tracker = tracker
        return await wait(until: { tracker.count == 0 }, within: limit) { await tracker.waitUntilIdle() }
    }
}

/// Decides, exactly once, whether a task with a timeout finished or timed out.
///
/// One per task and hardly ever contended, so an inline `Mutex` (no allocation of its own)
/// fits better here than `LockedValue`.
private final class TimeoutRace: Sendable {
    private enum Phase: Sendable { case running, finished, timedOut }
    private struct State: @unchecked Sendable {
        var phase = Phase.running
        var entry: DeadlineTimer.Entry?
    }
    private let state = Mutex(State())

    /// The task body finished; returns the timer entry to cancel, if armed.
    func finish() -> DeadlineTimer.Entry? {
        state.withLock { state in
            guard state.phase == .running else { return nil }
            state.phase = .finished
            defer { state.entry = nil }
            return state.entry
        }
    }

    /// The deadline passed; returns true if the task must be cancelled.
    func expire() -> Bool {
        state.withLock { state in
            guard state.phase == .running else { return false }
            state.phase = .timedOut
            state.entry = nil
            return true
        }
    }

    /// Records the timer entry; false if the task already finished (cancel the entry).
    func arm(_ entry: DeadlineTimer.Entry) -> Bool {
        state.withLock { state in
            guard state.phase == .running else { return false }
            state.entry = entry
            return true
        }
    }

    var timedOut: Bool { state.withLock { $0.phase == .timedOut } }
}

/// A result handed from a task to a thread blocked waiting for it.
private final class BlockingOutcome<Success>: @unchecked Sendable {
    private let condition = ConditionLock()
    private var result: Result<Success, any Error>?

    func complete(_ result: Result<Success, any Error>) {
        condition.withLock { self.result = result }
        condition.signal()
    }

    func wait() -> Result<Success, any Error> {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let result { return result }
            condition.wait()
        }
    }
}
