import CoreMetrics
import Synchronization

/// Kizuna's async runtime: a worker pool of named threads that runs async tasks, a separate
/// pool for blocking work, a timer for timeouts, an operation limiter, shutdown
/// coordination and metrics.
///
/// ```swift
/// let runtime = try AsyncRuntime(configuration: .init(workerThreads: 4))
/// let task = try runtime.handle.spawn { await work() }
/// let report = await runtime.shutdown(gracePeriod: .seconds(5))
/// ```
///
/// Work is spawned through a ``RuntimeHandle``. Call ``shutdown(gracePeriod:cancellationGracePeriod:)``
/// from outside the runtime's own tasks (for example from `main`): it waits for them.
public final class AsyncRuntime: Sendable {
    /// The configuration the runtime was built from.
    public let configuration: RuntimeConfiguration
    let core: RuntimeCore

    /// Builds the runtime and starts its threads.
    /// - Throws: ``RuntimeError`` if the configuration is invalid (naming the field) or
    ///   the system refuses to start a thread.
    public init(configuration: RuntimeConfiguration = RuntimeConfiguration()) throws(RuntimeError) {
        try configuration.validate()
        self.configuration = configuration
        core = try RuntimeCore(configuration: configuration)
    }

    deinit {
        // Dropped without a graceful shutdown: stop at once rather than leak the threads.
        core.stopImmediately()
    }

    /// The handle to spawn work on. Cheap to copy, usable from any thread.
    public var handle: RuntimeHandle { core.rootHandle }

    /// The runtime-wide shutdown signal, fired when ``shutdown(gracePeriod:cancellationGracePeriod:)`` starts.
    public var shutdownSignal: ShutdownSignal { core.shutdownSignal }

    /// What the runtime is doing right now.
    public var metrics: RuntimeMetrics { core.metrics }

    /// Records the current ``metrics`` through swift-metrics now.
    public func recordMetrics() { core.recordMetrics() }

    /// Shuts the runtime down gracefully: signals shutdown, refuses new tasks, waits up to
    /// `gracePeriod` for every task to finish, cancels the ones still running, waits up to
    /// `cancellationGracePeriod` for those, then stops the threads.
    ///
    /// Calling it again returns the first call's report.
    /// - Returns: what had to be cancelled and what never stopped.
    @discardableResult
    public func shutdown(gracePeriod: Duration, cancellationGracePeriod: Duration = .seconds(1)) async -> ShutdownReport {
        await core.shutdown(gracePeriod: gracePeriod, cancellationGracePeriod: cancellationGracePeriod)
    }

    /// Shuts the runtime down gracefully, draining until `deadline`.
    @discardableResult
    public func shutdown(deadline: ContinuousClock.Instant, cancellationGracePeriod: Duration = .seconds(1)) async -> ShutdownReport {
        await shutdown(gracePeriod: deadline - .now, cancellationGracePeriod: cancellationGracePeriod)
    }

    /// The names of the calling thread and its stack size, for diagnostics and tests.
    public static var currentThreadName: String { PlatformThread.currentName }
    /// The calling thread's stack size in bytes.
    public static var currentThreadStackSize: Int { PlatformThread.currentStackSize }
}

/// What a graceful shutdown had to do.
public struct ShutdownReport: Sendable, Hashable, CustomStringConvertible {
    /// True when every task finished within the grace period, with nothing cancelled.
    public var drained: Bool { cancelledTasks.isEmpty && stuckTasks == 0 }
    /// Tasks still running when the grace period ended, which were cancelled, by name
    /// (`"unnamed"` for tasks spawned without one).
    public var cancelledTasks: [String]
    /// Tasks that had not returned even after cancellation and its grace period. Their
    /// threads are left to end on their own instead of being joined.
    public var stuckTasks: Int
    /// How long the shutdown took.
    public var duration: Duration

    public var description: String {
        if drained { return "drained in \(duration)" }
        return "cancelled \(cancelledTasks.count) task(s) [\(cancelledTasks.joined(separator: ", "))], \(stuckTasks) stuck, in \(duration)"
    }
}

/// Everything the runtime and its handles share.
@usableFromInline
final class RuntimeCore: Sendable {
    @usableFromInline let pool: WorkerPool
    let blockingPool: BlockingPool
    let timer: DeadlineTimer
    let limiter: OperationLimiter
    let shutdownSignal = ShutdownSignal()
    let rootTracker = TaskTracker(name: "runtime")
    private let scopes = LockedValue<[ObjectIdentifier: WeakTracker]>([:])
    private let recorder: RuntimeMetricsRecorder
    private let phase = LockedValue(Phase.running)
    private let finished = ShutdownSignal()
    private let metricsInterval: Duration?

    private enum Phase: Sendable {
        case running, shuttingDown, stopped(ShutdownReport)
    }

    private struct WeakTracker: Sendable {
        weak var tracker: TaskTracker?
    }

    init(configuration: RuntimeConfiguration) throws(RuntimeError) {
        let prefix = configuration.threadNamePrefix
        pool = try WorkerPool(threadCount: configuration.workerThreads, stackSize: configuration.threadStackSize, namePrefix: prefix)
        do {
            timer = try DeadlineTimer(name: "\(prefix)-timer", stackSize: configuration.threadStackSize)
        } catch {
            pool.shutdown(join: true)
            throw error
        }
        blockingPool = BlockingPool(
            maxThreads: configuration.maxBlockingThreads, keepAlive: configuration.blockingThreadKeepAlive,
            stackSize: configuration.threadStackSize, namePrefix: prefix)
        limiter = OperationLimiter(permits: configuration.operationPermits)
        recorder = RuntimeMetricsRecorder(runtimeName: prefix, factory: configuration.metricsFactory ?? MetricsSystem.factory)
        metricsInterval = configuration.metricsInterval
        if let interval = metricsInterval { scheduleMetrics(every: interval.nanosecondsClamped) }
        scheduleStrandedJobRescue()
    }

    /// Every 2 ms, hands slot jobs of workers busy for over 2 ms to the shared queue.
    private func scheduleStrandedJobRescue() {
        let period: UInt64 = 2_000_000
        timer.schedule(atNanoseconds: monotonicNanoseconds() &+ period, isInternal: true) { [weak self] in
            guard let self else { return }
            self.pool.rescueStrandedJobs(busyLongerThan: period)
            self.scheduleStrandedJobRescue()
        }
    }

    var rootHandle: RuntimeHandle { RuntimeHandle(core: self, tracker: rootTracker) }

    func makeScope(name: String) -> TaskTracker {
        let tracker = TaskTracker(name: name)
        if rootTracker.isClosed { tracker.close() }
        scopes.withLock { scopes in
            scopes = scopes.filter { $0.value.tracker != nil }
            scopes[ObjectIdentifier(tracker)] = WeakTracker(tracker: tracker)
        }
        return tracker
    }

    private var allTrackers: [TaskTracker] {
        [rootTracker] + scopes.withLock { $0.values.compactMap(\.tracker) }
    }

    var metrics: RuntimeMetrics {
        let blocking = blockingPool.counts
        return RuntimeMetrics(
            workerThreads: pool.runningThreads,
            tasksAlive: allTrackers.reduce(0) { $0 + $1.count },
            workerQueueDepth: pool.queueDepth,
            blockingThreads: blocking.threads,
            blockingBusy: blocking.busy,
            blockingQueueDepth: blocking.queued,
            permitsInUse: limiter.inUse,
            permitCapacity: limiter.capacity,
            pendingTimers: timer.pendingCount)
    }

    func recordMetrics() { recorder.record(metrics) }

    private func scheduleMetrics(every interval: UInt64) {
        timer.schedule(atNanoseconds: monotonicNanoseconds() &+ interval, isInternal: true) { [weak self] in
            guard let self else { return }
            self.recordMetrics()
            self.scheduleMetrics(every: interval)
        }
    }

    func shutdown(gracePeriod: Duration, cancellationGracePeriod: Duration) async -> ShutdownReport {
        let start = ContinuousClock.now
        let isFirst = phase.withLock { phase -> Bool in
            guard case .running = phase else { return false }
            phase = .shuttingDown
            return true
        }
        guard isFirst else {
            await finished.wait()
            return phase.withLock { phase in
                if case .stopped(let report) = phase { return report }
                return ShutdownReport(cancelledTasks: [], stuckTasks: 0, duration: .zero)
            }
        }

        shutdownSignal.signal()
        let trackers = allTrackers
        for tracker in trackers { tracker.close() }
        var cancelled: [String] = []
        if !(await Self.waitUntilIdle(trackers, within: gracePeriod)) {
            for tracker in trackers {
                cancelled += tracker.cancelAll().map { $0 ?? "unnamed" }
            }
            _ = await Self.waitUntilIdle(trackers, within: cancellationGracePeriod)
        }
        let stuck = trackers.reduce(0) { $0 + $1.count }
        recordMetrics()
        timer.shutdown()
        blockingPool.shutdown()
        // A stuck task may be spinning on a worker; joining would hang, so leave them be.
        pool.shutdown(join: stuck == 0 && !pool.isCurrentThreadWorker)

        let report = ShutdownReport(cancelledTasks: cancelled.sorted(), stuckTasks: stuck, duration: .now - start)
        phase.withLock { $0 = .stopped(report) }
        finished.signal()
        return report
    }

    /// Stops without waiting for anything: used when the runtime is dropped unshut.
    func stopImmediately() {
        let wasRunning = phase.withLock { phase -> Bool in
            guard case .running = phase else { return false }
            phase = .stopped(ShutdownReport(cancelledTasks: [], stuckTasks: 0, duration: .zero))
            return true
        }
        guard wasRunning else { return }
        shutdownSignal.signal()
        for tracker in allTrackers {
            tracker.close()
            _ = tracker.cancelAll()
        }
        timer.shutdown()
        blockingPool.shutdown()
        pool.shutdown(join: false)
        finished.signal()
    }

    /// Waits until every tracker is idle or `limit` passes; returns true if all went idle.
    private static func waitUntilIdle(_ trackers: [TaskTracker], within limit: Duration) async -> Bool {
        await wait(until: { trackers.allSatisfy { $0.count == 0 } }, within: limit) {
            for tracker in trackers { await tracker.waitUntilIdle() }
        }
    }
}
