import CKizunaRuntime
public import CoreMetrics
import Foundation

/// How an ``AsyncRuntime`` is built: its worker pool, blocking pool, operation limit and metrics.
///
/// Every field has a default; ``validate()`` (called by ``AsyncRuntime/init(configuration:)``)
/// refuses values the runtime cannot use with an error that names the field.
public struct RuntimeConfiguration: Sendable {
    /// Threads that run async tasks. Defaults to the number of CPUs this process may use,
    /// counting CPU affinity and a cgroup CPU quota.
    public var workerThreads: Int
    /// The stack size of every runtime thread, in bytes. Defaults to 2 MiB. A thread gets at
    /// least this much: glibc may reuse a somewhat larger cached stack of an exited thread.
    public var threadStackSize: Int
    /// The prefix of every runtime thread's name: workers are `PREFIX-N`, blocking threads
    /// `PREFIX-bN`, the timer `PREFIX-timer`. At most ``maximumThreadNamePrefixLength`` bytes,
    /// because Linux keeps 15 bytes of a thread name.
    public var threadNamePrefix: String
    /// The most threads the blocking pool may start. Defaults to 512.
    public var maxBlockingThreads: Int
    /// How long an idle blocking thread waits for work before it exits. Defaults to 10 seconds.
    public var blockingThreadKeepAlive: Duration
    /// Permits of the runtime's operation limiter. Defaults to 1000.
    public var operationPermits: Int
    /// How often runtime metrics are recorded through swift-metrics; `nil` records them only
    /// when ``AsyncRuntime/recordMetrics()`` is called. Defaults to one second.
    public var metricsInterval: Duration?
    /// The swift-metrics factory gauges are created from; `nil` means `MetricsSystem.factory`.
    public var metricsFactory: (any MetricsFactory)?

    /// The longest ``threadNamePrefix`` that leaves room for the thread's suffix.
    public static let maximumThreadNamePrefixLength = 9

    /// Creates a configuration; every argument has the documented default.
    public init(
        workerThreads: Int = RuntimeConfiguration.availableCPUCount,
        threadStackSize: Int = 2 << 20,
        threadNamePrefix: String = "kizuna",
        maxBlockingThreads: Int = 512,
        blockingThreadKeepAlive: Duration = .seconds(10),
        operationPermits: Int = 1000,
        metricsInterval: Duration? = .seconds(1),
        metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.workerThreads = workerThreads
        self.threadStackSize = threadStackSize
        self.threadNamePrefix = threadNamePrefix
        self.maxBlockingThreads = maxBlockingThreads
        self.blockingThreadKeepAlive = blockingThreadKeepAlive
        self.operationPermits = operationPermits
        self.metricsInterval = metricsInterval
        self.metricsFactory = metricsFactory
    }

    /// The smallest stack size the platform accepts for a thread, in bytes.
    public static var minimumThreadStackSize: Int { PlatformThread.minimumStackSize }

    /// Checks every field.
    /// - Throws: ``RuntimeError`` with code ``RuntimeError/Code/invalidConfiguration`` naming the
    ///   first field whose value cannot be used, and what values it takes.
    public func validate() throws(RuntimeError) {
        func invalid(_ message: String) -> RuntimeError { RuntimeError(.invalidConfiguration, message) }
        guard workerThreads >= 1 else {
            throw invalid("workerThreads is \(workerThreads); a runtime needs at least 1 worker thread")
        }
        guard workerThreads <= 4096 else {
            throw invalid("workerThreads is \(workerThreads); use at most 4096 worker threads")
        }
        let minimumStack = Self.minimumThreadStackSize
        guard threadStackSize >= minimumStack else {
            throw invalid(
                "threadStackSize is \(threadStackSize) bytes, below this platform's minimum of \(minimumStack) bytes; use at least \(minimumStack) (the default is 2 MiB)"
            )
        }
        guard !threadNamePrefix.isEmpty, threadNamePrefix.utf8.count <= Self.maximumThreadNamePrefixLength else {
            throw invalid(
                "threadNamePrefix '\(threadNamePrefix)' is \(threadNamePrefix.utf8.count) bytes; use 1 to \(Self.maximumThreadNamePrefixLength) bytes, because Linux keeps only 15 bytes of a thread name"
            )
        }
        guard !threadNamePrefix.utf8.contains(0) else {
            throw invalid("threadNamePrefix contains a NUL byte; use printable characters")
        }
        guard maxBlockingThreads >= 1 else {
            throw invalid("maxBlockingThreads is \(maxBlockingThreads); the blocking pool needs at least 1 thread")
        }
        guard maxBlockingThreads <= 9999 else {
            throw invalid("maxBlockingThreads is \(maxBlockingThreads); use at most 9999 blocking threads")
        }
        guard blockingThreadKeepAlive > .zero else {
            throw invalid("blockingThreadKeepAlive is \(blockingThreadKeepAlive); use a positive duration")
        }
        guard operationPermits >= 1 else {
            throw invalid("operationPermits is \(operationPermits); the operation limiter needs at least 1 permit")
        }
        guard operationPermits <= OperationLimiter.maximumPermits else {
            throw invalid("operationPermits is \(operationPermits); use at most \(OperationLimiter.maximumPermits)")
        }
        if let metricsInterval, metricsInterval <= .zero {
            throw invalid("metricsInterval is \(metricsInterval); use a positive duration, or nil to record metrics only on demand")
        }
    }

    /// The CPUs this process may use: its CPU affinity, further limited by a cgroup CPU quota
    /// (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`). At least 1.
    public static var availableCPUCount: Int {
        var count = Int(kizuna_affinity_cpu_count())
        if count <= 0 { count = ProcessInfo.processInfo.activeProcessorCount }
        if let quota = cgroupCPUQuota() { count = min(count, Int(quota.rounded(.up))) }
        return max(1, count)
    }

    /// The cgroup CPU quota in CPUs, or nil where there is none.
    static func cgroupCPUQuota() -> Double? {
        func read(_ path: String) -> String? {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let max = read("/sys/fs/cgroup/cpu.max") {
            let fields = max.split(separator: " ")
            if fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 {
                return quota / period
            }
            return nil  // "max 100000": no quota
        }
        if let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").flatMap(Double.init),
            let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us").flatMap(Double.init),
            quota > 0, period > 0
        {
            return quota / period
        }
        return nil
    }
}
