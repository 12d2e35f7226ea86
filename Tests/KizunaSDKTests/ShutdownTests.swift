import KizunaSDK
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct ShutdownSignalTests {
    @Test func signalReachesTenThousandSubscribers() async throws {
        try await withRuntime { runtime in
            let signal = ShutdownSignal()
            let returned = PeakCounter()
            var tasks: [Task<Void, Never>] = []
            for _ in 0..<10_000 {
                let subscription = signal.subscribe()
                tasks.append(try runtime.handle.spawn {
                    await subscription.wait()
                    returned.increment()
                })
            }
            await waitUntil { signal.waitingCount == 10_000 }
            #expect(returned.value == 0)
            signal.signal()
            for task in tasks { await task.join() }
            #expect(returned.value == 10_000)
            #expect(signal.waitingCount == 0)
        }
    }

    @Test func aLateSubscriberSeesTheSignalAtOnce() async {
        let signal = ShutdownSignal()
        signal.signal()
        signal.signal()  // harmless
        let subscription = signal.subscribe()
        #expect(subscription.isSignalled)
        await subscription.wait()
        var elements = 0
        for await _ in subscription { elements += 1 }
        #expect(elements == 1)
    }

    @Test func iteratingYieldsOnceThenEnds() async throws {
        let signal = ShutdownSignal()
        let subscription = signal.subscribe()
        let waiter = Task {
            var elements = 0
            for await _ in subscription { elements += 1 }
            return elements
        }
        await waitUntil { signal.waitingCount == 1 }
        signal.signal()
        #expect(await waiter.join() == 1)
    }

    @Test func aTimedWaitSaysWhetherTheSignalCame() async {
        let signal = ShutdownSignal()
        #expect(await signal.subscribe().wait(within: .milliseconds(10)) == false)
        #expect(signal.waitingCount == 0)  // the timed-out waiter left
        let waiter = Task { await signal.subscribe().wait(within: .seconds(30)) }
        await waitUntil { signal.waitingCount == 1 }
        signal.signal()
        #expect(await waiter.value == true)
    }

    @Test func aCancelledWaiterReturnsAndLeaves() async {
        let signal = ShutdownSignal()
        let waiter = Task { await signal.subscribe().wait() }
        await waitUntil { signal.waitingCount == 1 }
        waiter.cancel()
        await waiter.join()
        #expect(signal.waitingCount == 0)
        #expect(!signal.isSignalled)
    }
}

@Suite(.timeLimit(.minutes(1))) struct GracefulShutdownTests {
    @Test func tasksThatStopOnTheSignalDrain() async throws {
        let runtime = try AsyncRuntime(configuration: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil))
        let stopped = PeakCounter()
        for _ in 0..<100 {
            let subscription = runtime.handle.subscribeShutdown()
            try runtime.handle.spawn {
                await subscription.wait()
                stopped.increment()
            }
        }
        let report = await runtime.shutdown(gracePeriod: .seconds(30))
        #expect(report.drained)
        #expect(report.cancelledTasks.isEmpty)
        #expect(stopped.value == 100)
        #expect(runtime.metrics.tasksAlive == 0)
    }

    @Test func tasksThatIgnoreTheSignalAreCancelledAndNamed() async throws {
        let runtime = try AsyncRuntime(configuration: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil))
        let neverOpened = Gate()
        try runtime.handle.spawn(name: "stubborn-scan") {
            await neverOpened.subscribe().wait()  // returns only on cancellation
        }
        try runtime.handle.spawn { await neverOpened.subscribe().wait() }
        await waitUntil { neverOpened.waitingCount == 2 }
        let report = await runtime.shutdown(gracePeriod: .milliseconds(50))
        #expect(!report.drained)
        #expect(report.cancelledTasks == ["stubborn-scan", "unnamed"])
        #expect(report.stuckTasks == 0)
        #expect(runtime.metrics.tasksAlive == 0)
    }

    @Test func aTaskThatIgnoresCancellationIsReportedStuck() async throws {
        let runtime = try AsyncRuntime(configuration: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil))
        let release = Shared<UnsafeContinuation<Void, Never>?>(nil)
        try runtime.handle.spawn(name: "deaf") {
            await withUnsafeContinuation { continuation in release.withLock { $0 = continuation } }
        }
        await waitUntil { release.withLock { $0 != nil } }
        let report = await runtime.shutdown(gracePeriod: .milliseconds(20), cancellationGracePeriod: .milliseconds(20))
        #expect(report.cancelledTasks == ["deaf"])
        #expect(report.stuckTasks == 1)
        #expect(report.description.contains("1 stuck"))
        release.withLock { $0?.resume() }  // let it end, so nothing leaks past the test
    }

    @Test func nothingIsLeftRunningAfterShutdown() async throws {
        let configuration = RuntimeConfiguration(workerThreads: 2, threadNamePrefix: "kz-gone", metricsInterval: nil)
        let runtime = try AsyncRuntime(configuration: configuration)
        for _ in 0..<50 { try runtime.handle.spawnBlocking { 1 } }
        for _ in 0..<50 { try runtime.handle.spawn { await Task.yield() } }
        #expect(processThreadNames().contains { $0.hasPrefix("kz-gone") })
        let report = await runtime.shutdown(gracePeriod: .seconds(30))
        #expect(report.drained)
        #expect(runtime.metrics.tasksAlive == 0)
        #expect(runtime.metrics.blockingThreads == 0)
        #expect(runtime.metrics.workerThreads == 0)
        #expect(processThreadNames().filter { $0.hasPrefix("kz-gone") } == [])
    }

    @Test func workIsRefusedAfterShutdown() async throws {
        let runtime = try AsyncRuntime(configuration: RuntimeConfiguration(workerThreads: 1, metricsInterval: nil))
        await runtime.shutdown(gracePeriod: .seconds(1))
        let error = #expect(throws: RuntimeError.self) { try runtime.handle.spawn { 1 } }
        #expect(error?.code == .shutDown)
        #expect(error?.message.contains("is shut down and takes no new tasks") == true)
        #expect(throws: RuntimeError.self) { try runtime.handle.spawnBlocking { 1 } }
        // A second shutdown returns the first one's report.
        let again = await runtime.shutdown(gracePeriod: .seconds(1))
        #expect(again.drained)
    }

    @Test func aTimedScopeWaitSaysWhetherTheScopeWentIdle() async throws {
        try await withRuntime { runtime in
            let scope = runtime.handle.scoped("timed")
            let gate = Gate()
            try scope.spawn { await gate.subscribe().wait() }
            #expect(await scope.waitForScopeTasks(within: .milliseconds(10)) == false)
            gate.signal()
            #expect(await scope.waitForScopeTasks(within: .seconds(30)) == true)
            #expect(scope.taskCount == 0)
        }
    }

    @Test func aScopeIsCancelledWithoutTouchingTheRest() async throws {
        try await withRuntime { runtime in
            let plugin = runtime.handle.scoped("plugin-a")
            let gate = Gate()
            try plugin.spawn(name: "a-loop") { await gate.subscribe().wait() }
            let outside = try runtime.handle.spawn { () -> Bool in
                await gate.subscribe().wait()
                return Task.isCancelled
            }
            await waitUntil { gate.waitingCount == 2 }
            #expect(plugin.cancelScope() == ["a-loop"])
            await plugin.waitForScopeTasks()
            #expect(plugin.taskCount == 0)
            #expect(throws: RuntimeError.self) { try plugin.spawn { 1 } }
            #expect(runtime.metrics.tasksAlive == 1)
            gate.signal()
            #expect(await outside.join() == false)
        }
    }
}
