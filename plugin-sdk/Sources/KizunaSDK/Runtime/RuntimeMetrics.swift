import CoreMetrics

/// A snapshot of what an ``AsyncRuntime`` is doing, readable at any moment.
public struct RuntimeMetrics: Sendable, Hashable, CustomStringConvertible {
    /// Async worker threads running (0 after shutdown).
    public var workerThreads: Int
    /// Tasks spawned through the runtime's handles that have not finished.
    public var tasksAlive: Int
    /// Jobs waiting for an async worker (queue depth).
    public var workerQueueDepth: Int
    /// Threads in the blocking pool right now.
    public var blockingThreads: Int
    /// Blocking threads running a job.
    public var blockingBusy: Int
    /// Jobs waiting for a blocking thread (queue depth).
    public var blockingQueueDepth: Int
    /// Operation permits held.
    public var permitsInUse: Int
    /// Operation permits in all.
    public var permitCapacity: Int
    /// Timeouts and other timer entries waiting for their deadline.
    public var pendingTimers: Int

    public var description: String {
        "workers=\(workerThreads) tasks=\(tasksAlive) queued=\(workerQueueDepth) blocking=\(blockingBusy)/\(blockingThreads) blockingQueued=\(blockingQueueDepth) permits=\(permitsInUse)/\(permitCapacity) timers=\(pendingTimers)"
    }
}

/// Gauges that mirror ``RuntimeMetrics`` into swift-metrics, labelled `kizuna_runtime_*`
/// with a `runtime` dimension holding the runtime's thread name prefix.
struct RuntimeMetricsRecorder: Sendable {
    private let tasksAlive: Gauge
    private let workerQueueDepth: Gauge
    private let blockingThreads: Gauge
    private let blockingQueueDepth: Gauge
    private let permitsInUse: Gauge

    init(runtimeName: String, factory: any MetricsFactory) {
        let dimensions = [("runtime", runtimeName)]
        func gauge(_ name: String) -> Gauge { Gauge(label: "kizuna_runtime_\(name)", dimensions: dimensions, factory: factory) }
        tasksAlive = gauge("tasks_alive")
        workerQueueDepth = gauge("worker_queue_depth")
        blockingThreads = gauge("blocking_threads")
        blockingQueueDepth = gauge("blocking_queue_depth")
        permitsInUse = gauge("permits_in_use")
    }

    func record(_ metrics: RuntimeMetrics) {
        tasksAlive.record(metrics.tasksAlive)
        workerQueueDepth.record(metrics.workerQueueDepth)
        blockingThreads.record(metrics.blockingThreads)
        blockingQueueDepth.record(metrics.blockingQueueDepth)
        permitsInUse.record(metrics.permitsInUse)
    }
}
