import CKizunaRuntime

/// A mutex with a condition variable, for the runtime's own threads (workers,
/// blocking pool, timer) which must sleep when idle. Async code never waits on it.
final class ConditionLock: @unchecked Sendable {
    private let handle: OpaquePointer

    init() { handle = kizuna_condition_create() }
    deinit { kizuna_condition_destroy(handle) }

    @inline(__always) func lock() { kizuna_condition_lock(handle) }
    @inline(__always) func unlock() { kizuna_condition_unlock(handle) }
    /// Waits for a signal; the lock must be held and is held again on return.
    @inline(__always) func wait() { kizuna_condition_wait(handle) }
    /// Waits for a signal or until the monotonic clock reaches `deadline`; returns false on timeout.
    func wait(untilNanoseconds deadline: UInt64) -> Bool { kizuna_condition_wait_until(handle, deadline) == 0 }
    @inline(__always) func signal() { kizuna_condition_signal(handle) }
    func broadcast() { kizuna_condition_broadcast(handle) }

    @inline(__always) func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A joinable pthread with a name and a chosen stack size.
struct PlatformThread: Sendable {
    private let id: UInt64

    private final class Start {
        let name: String
        let body: () -> Void
        let named = ConditionLock()
        var isNamed = false
        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread that sets its name, then runs `body`. Returns once the thread is
    /// running under its name.
    /// - Throws: ``RuntimeError`` when the system refuses to create the thread.
    static func start(name: String, stackSize: Int, _ body: @escaping @Sendable () -> Void) throws(RuntimeError) -> PlatformThread {
        let state = Start(name: name, body: body)
        let start = Unmanaged.passRetained(state)
        var id: UInt64 = 0
        let result = kizuna_thread_start(&id, stackSize, { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            _ = kizuna_thread_set_name(start.name)
            start.named.withLock { start.isNamed = true }
            start.named.signal()
            start.body()
        }, start.toOpaque())
        guard result == 0 else {
            start.release()
            throw RuntimeError(
                .threadStartFailed,
                "could not start thread '\(name)' with a \(stackSize)-byte stack (errno \(result)); lower workerThreads or maxBlockingThreads, or raise the process's thread limit"
            )
        }
        state.named.lock()
        while !state.isNamed { state.named.wait() }
        state.named.unlock()
        return PlatformThread(id: id)
    }

    func join() { _ = kizuna_thread_join(id) }
    func detach() { _ = kizuna_thread_detach(id) }

    /// The calling thread's name.
    static var currentName: String {
        var buffer = [CChar](repeating: 0, count: 32)
        guard kizuna_thread_get_name(&buffer, buffer.count) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The calling thread's stack size in bytes.
    static var currentStackSize: Int { kizuna_thread_stack_size() }

    /// The smallest stack size the platform accepts for a new thread.
    static var minimumStackSize: Int { kizuna_thread_stack_minimum() }
}

/// Monotonic time in nanoseconds, the clock every runtime deadline uses.
@inline(__always) func monotonicNanoseconds() -> UInt64 { kizuna_monotonic_nanoseconds() }

extension Duration {
    /// The duration in whole nanoseconds, saturating at `UInt64.max` and flooring negatives at zero.
    var nanosecondsClamped: UInt64 {
        let (seconds, attoseconds) = components
        if seconds < 0 { return 0 }
        let (total, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (sum, overflow2) = total.addingReportingOverflow(UInt64(attoseconds / 1_000_000_000))
        return overflow2 ? .max : sum
    }
}
