import Foundation
import KizunaSDK
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct AsyncRuntimeTests {
    @Test func workersHaveTheConfiguredNamesAndStackSize() async throws {
        // Larger than any other stack in the process: glibc may hand a new thread a cached
        // stack of an exited thread that is somewhat larger than asked for, never a smaller one.
        let stack = 12 << 20 + 64 * 1024
        let configuration = RuntimeConfiguration(workerThreads: 3, threadStackSize: stack, threadNamePrefix: "kz-names", metricsInterval: nil)
        try await withRuntime(configuration) { runtime in
            let (name, size) = try await runtime.handle.spawn {
                (AsyncRuntime.currentThreadName, AsyncRuntime.currentThreadStackSize)
            }.join()
            #expect(["kz-names-0", "kz-names-1", "kz-names-2"].contains(name))
            #expect(size == stack)
            let threads = processThreadNames().filter { $0.hasPrefix("kz-names-") && !$0.hasPrefix("kz-names-b") }
            #expect(Set(threads) == ["kz-names-0", "kz-names-1", "kz-names-2", "kz-names-timer"])
        }
    }

    @Test func spawnedTasksRunOnTheWorkers() async throws {
        try await withRuntime(RuntimeConfiguration(workerThreads: 2, threadNamePrefix: "kz-spawn", metricsInterval: nil)) { runtime in
            var tasks: [Task<String, Never>] = []
            for _ in 0..<100 { tasks.append(try runtime.handle.spawn { AsyncRuntime.currentThreadName }) }
            for task in tasks {
                let name = await task.join()
                #expect(name == "kz-spawn-0" || name == "kz-spawn-1")
            }
        }
    }

    @Test func throwingSpawnPassesTheErrorThrough() async throws {
        struct Boom: Error {}
        try await withRuntime { runtime in
            let task = try runtime.handle.spawn { () async throws -> Int in throw Boom() }
            await #expect(throws: Boom.self) { try await task.join() }
        }
    }

    @Test func timeoutCancelsItsTaskAndThrows() async throws {
        try await withRuntime { runtime in
            let neverFires = Gate()
            let sawCancellation = Gate()
            let task = try runtime.handle.spawn(timeout: .milliseconds(20), name: "slow-scan") {
                await neverFires.subscribe().wait()  // returns on cancellation
                if Task.isCancelled { sawCancellation.signal() }
                return 42
            }
            let error = await #expect(throws: RuntimeError.self) { try await task.join() }
            #expect(error?.code == .timedOut)
            #expect(error?.message.contains("task 'slow-scan' did not finish within") == true)
            #expect(sawCancellation.isSignalled)
            #expect(runtime.metrics.pendingTimers == 0)
        }
    }

    @Test func aTaskThatFinishesInTimeKeepsItsValueAndItsTimerIsRemoved() async throws {
        try await withRuntime { runtime in
            let tasks = try (0..<1000).map { index in try runtime.handle.spawn(timeout: .seconds(60)) { index * 2 } }
            var sum = 0
            for task in tasks { sum += try await task.join() }
            #expect(sum == 999 * 1000)
            #expect(runtime.metrics.pendingTimers == 0)
        }
    }

    @Test func blockingWorkRunsOffTheAsyncWorkers() async throws {
        let configuration = RuntimeConfiguration(workerThreads: 1, threadNamePrefix: "kz-blk", metricsInterval: nil)
        try await withRuntime(configuration) { runtime in
            let name = try await runtime.handle.spawnBlocking { AsyncRuntime.currentThreadName }.join()
            #expect(name.hasPrefix("kz-blk-b"))
        }
    }

    @Test func blockedWorkDoesNotStallTheWorkers() async throws {
        // One async worker; a blocking job that waits until an async task has run proves
        // that the worker stayed free while the blocking job held its thread.
        let configuration = RuntimeConfiguration(workerThreads: 1, metricsInterval: nil)
        try await withRuntime(configuration) { runtime in
            let released = DispatchSemaphore(value: 0)
            let blocking = try runtime.handle.spawnBlocking { () -> Bool in
                released.wait()
                return true
            }
            let asyncRan = try await runtime.handle.spawn { () -> Bool in
                released.signal()
                return true
            }.join()
            #expect(asyncRan)
            #expect(try await blocking.join())
        }
    }

    @Test func theHandleWorksFromInsideBlockingWork() async throws {
        try await withRuntime { runtime in
            let handle = runtime.handle
            let value = try await handle.spawnBlocking { () throws -> Int in
                let viaBlockOn = try handle.blockOn { 20 }
                let viaNested = try handle.blockOn { try await handle.spawn { 22 }.join() }
                return viaBlockOn + viaNested
            }.join()
            #expect(value == 42)
        }
    }

    @Test func blockOnFromAWorkerIsRefused() async throws {
        try await withRuntime { runtime in
            let handle = runtime.handle
            let error = await #expect(throws: RuntimeError.self) {
                try await handle.spawn { () throws -> Int in try handle.blockOn { 1 } }.join()
            }
            #expect(error?.code == .blockOnFromWorker)
            #expect(error?.message.contains("would wait on itself") == true)
        }
    }

    @Test func blockOnFromAnOutsideThreadReturnsTheValue() throws {
        let runtime = try AsyncRuntime(configuration: RuntimeConfiguration(workerThreads: 1, metricsInterval: nil))
        let value = try runtime.handle.blockOn { await Task.yield(); return "done" }
        #expect(value == "done")
        _ = try runtime.handle.blockOn { await runtime.shutdown(gracePeriod: .seconds(1)) }
    }

    @Test func metricsCountTasksQueuesAndPermits() async throws {
        try await withRuntime { runtime in
            let gate = Gate()
            let started = PeakCounter()
            for _ in 0..<5 {
                try runtime.handle.spawn {
                    started.increment()
                    await gate.subscribe().wait()
                }
            }
            await waitUntil { gate.waitingCount == 5 }
            let permit = try await runtime.handle.acquirePermit()
            let metrics = runtime.metrics
            #expect(metrics.tasksAlive == 5)
            #expect(metrics.permitsInUse == 1)
            #expect(metrics.permitCapacity == 1000)
            #expect(metrics.workerThreads == 2)
            #expect(metrics.workerQueueDepth == 0)
            permit.release()
            gate.signal()
            await runtime.handle.waitForScopeTasks()
            #expect(runtime.metrics.tasksAlive == 0)
            #expect(runtime.metrics.permitsInUse == 0)
        }
    }

    @Test func permitsTakenThroughAScopeAreCountedAgainstIt() async throws {
        try await withRuntime { runtime in
            let plugin = runtime.handle.scoped("plugin-a")
            let first = try await plugin.acquirePermit()
            let second = try await plugin.acquirePermit()
            let unscoped = try await runtime.handle.limiter.acquire()
            #expect(plugin.permitsHeld == 2)
            #expect(runtime.metrics.permitsInUse == 3)
            first.release()
            #expect(plugin.permitsHeld == 1)
            let during = try await plugin.withPermit { plugin.permitsHeld }
            #expect(during == 2)
            second.release()
            unscoped.release()
            #expect(plugin.permitsHeld == 0)
            #expect(runtime.metrics.permitsInUse == 0)
        }
    }

    @Test func metricsAreRecordedThroughSwiftMetrics() async throws {
        let factory = RecordingMetricsFactory()
        let configuration = RuntimeConfiguration(workerThreads: 1, threadNamePrefix: "kz-metric", metricsInterval: .milliseconds(5), metricsFactory: factory)
        try await withRuntime(configuration) { runtime in
            // The periodic reporter records on its own; wait for its first record.
            await factory.firstRecord.subscribe().wait()
            let permit = try await runtime.handle.acquirePermit()
            runtime.recordMetrics()
            #expect(factory.value(of: "kizuna_runtime_permits_in_use") == 1)
            #expect(factory.dimensions(of: "kizuna_runtime_permits_in_use") == ["runtime": "kz-metric"])
            for name in ["tasks_alive", "worker_queue_depth", "blocking_threads", "blocking_queue_depth"] {
                #expect(factory.value(of: "kizuna_runtime_\(name)") != nil, "no gauge kizuna_runtime_\(name)")
            }
            drop(permit)
        }
    }

    func drop(_ permit: consuming OperationPermit) {}
}

/// A swift-metrics factory that keeps the last value of every gauge.
final class RecordingMetricsFactory: MetricsFactory, Sendable {
    let firstRecord = Gate()
    private let values = Mutex<[String: (value: Double, dimensions: [String: String])]>([:])

    func value(of label: String) -> Double? { values.withLock { $0[label]?.value } }
    func dimensions(of label: String) -> [String: String]? { values.withLock { $0[label]?.dimensions } }

    final class Handler: RecorderHandler, CounterHandler, FloatingPointCounterHandler, TimerHandler, MeterHandler, Sendable {
        let label: String
        let dimensions: [String: String]
        let factory: RecordingMetricsFactory
        init(label: String, dimensions: [(String, String)], factory: RecordingMetricsFactory) {
            self.label = label
            self.dimensions = Dictionary(dimensions, uniquingKeysWith: { $1 })
            self.factory = factory
        }
        func record(_ value: Int64) { set(Double(value)) }
        func record(_ value: Double) { set(value) }
        func set(_ value: Int64) { set(Double(value)) }
        func set(_ value: Double) {
            factory.values.withLock { $0[label] = (value, dimensions) }
            factory.firstRecord.signal()
        }
        func increment(by amount: Int64) {}
        func increment(by amount: Double) {}
        func decrement(by amount: Double) {}
        func recordNanoseconds(_ duration: Int64) {}
        func reset() {}
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { Handler(label: label, dimensions: dimensions, factory: self) }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler { Handler(label: label, dimensions: dimensions, factory: self) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { Handler(label: label, dimensions: dimensions, factory: self) }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { Handler(label: label, dimensions: dimensions, factory: self) }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { Handler(label: label, dimensions: dimensions, factory: self) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
