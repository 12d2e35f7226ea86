import Foundation
import KizunaSDK
import Synchronization
import Testing

/// Builds a runtime, runs `body` with it, and always shuts it down.
func withRuntime<Result: Sendable>(
    _ configuration: RuntimeConfiguration = RuntimeConfiguration(workerThreads: 2, metricsInterval: nil),
    _ body: (AsyncRuntime) async throws -> Result
) async throws -> Result {
    let runtime = try AsyncRuntime(configuration: configuration)
    do {
        let result = try await body(runtime)
        await runtime.shutdown(gracePeriod: .seconds(10))
        return result
    } catch {
        await runtime.shutdown(gracePeriod: .seconds(10))
        throw error
    }
}

/// A one-shot gate tests open to release tasks waiting on it.
typealias Gate = ShutdownSignal

/// An atomic counter that also records the highest value it reached.
final class PeakCounter: Sendable {
    private let current = Atomic<Int>(0)
    private let highest = Atomic<Int>(0)

    @discardableResult
    func increment() -> Int {
        let value = current.wrappingAdd(1, ordering: .relaxed).newValue
        var peak = highest.load(ordering: .relaxed)
        while value > peak {
            let (done, original) = highest.compareExchange(expected: peak, desired: value, ordering: .relaxed)
            if done { break }
            peak = original
        }
        return value
    }

    func decrement() { current.wrappingSubtract(1, ordering: .relaxed) }
    var value: Int { current.load(ordering: .relaxed) }
    var peak: Int { highest.load(ordering: .relaxed) }
}

/// Names of this process's threads, from /proc/self/task/*/comm.
func processThreadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { id in
        (try? String(contentsOfFile: "/proc/self/task/\(id)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Yields until `condition` holds. Tests use it to wait for another task to reach a
/// state that has no event of its own (such as "queued behind the lock"); the suite's
/// time limit turns a condition that never holds into a failure.
func waitUntil(_ condition: () -> Bool) async {
    while !condition() && !Task.isCancelled { await Task.yield() }
}

/// A lock-protected value that escaping task closures can share.
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    func withLock<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { storage.withLock { body(&$0) } }
    var value: Value { storage.withLock { $0 } }
}

extension Task where Failure == Never {
    /// The task's value. Cancelling the waiter cancels the task too, so a test's time limit
    /// stops work the test spawned instead of waiting on it forever.
    func join() async -> Success {
        await withTaskCancellationHandler { await value } onCancel: { cancel() }
    }
}

extension Task where Failure == any Error {
    /// The task's value or error. Cancelling the waiter cancels the task too.
    func join() async throws -> Success {
        try await withTaskCancellationHandler { try await value } onCancel: { cancel() }
    }
}
