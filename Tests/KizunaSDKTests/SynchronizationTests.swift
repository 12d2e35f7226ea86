import KizunaSDK
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1))) struct OperationLimiterTests {
    @Test func theCapIsNeverExceededUnderTenThousandContendingTasks() async throws {
        try await withRuntime { runtime in
            let limiter = runtime.handle.limiter
            let holders = PeakCounter()
            let full = Gate()
            let release = Gate()
            var tasks: [Task<Void, any Error>] = []
            for _ in 0..<10_000 {
                tasks.append(try runtime.handle.spawn {
                    try await limiter.withPermit {
                        if holders.increment() == limiter.capacity { full.signal() }
                        await release.subscribe().wait()
                        holders.decrement()
                    }
                })
            }
            // All 1000 permits are taken and 9000 tasks wait: no one else gets in.
            await full.subscribe().wait()
            #expect(limiter.inUse == 1000)
            let extra = limiter.tryAcquire()
            let gotExtra = extra != nil
            #expect(!gotExtra)
            release.signal()
            for task in tasks { try await task.join() }
            #expect(holders.peak == 1000)
            #expect(limiter.inUse == 0)
        }
    }

    @Test func aPermitIsReturnedExactlyOnce() async throws {
        let limiter = OperationLimiter(permits: 2)
        let first = try await limiter.acquire()
        #expect(limiter.inUse == 1)
        first.release()  // consumes it: a second release does not compile
        #expect(limiter.inUse == 0)
        do {
            let scoped = try await limiter.acquire()
            _ = scoped
            #expect(limiter.inUse == 1)
        }
        #expect(limiter.inUse == 0)
        let a = limiter.tryAcquire()
        let b = limiter.tryAcquire()
        let c = limiter.tryAcquire()
        let taken = (a != nil, b != nil, c != nil)
        #expect(taken.0 && taken.1 && !taken.2)
    }

    @Test func aCancelledWaiterLeavesTheLineAndNeverTakesAPermit() async throws {
        let limiter = OperationLimiter(permits: 1)
        let held = try await limiter.acquire()
        let waiter = Task { () async throws -> Void in
            let permit = try await limiter.acquire()
            permit.release()
        }
        await Task.yield()
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.join() }
        held.release()
        #expect(limiter.inUse == 0)
        let after = limiter.tryAcquire()
        let gotPermit = after != nil
        #expect(gotPermit)
    }
}

@Suite(.timeLimit(.minutes(1))) struct ThreadSafeTests {
    @Test func readersShareTheLock() async throws {
        let state = ThreadSafe(7)
        let bothInside = Gate()
        let inside = PeakCounter()
        async let first: Int = state.read { value in
            if inside.increment() == 2 { bothInside.signal() }
            await bothInside.subscribe().wait()
            return value
        }
        async let second: Int = state.read { value in
            if inside.increment() == 2 { bothInside.signal() }
            await bothInside.subscribe().wait()
            return value
        }
        #expect(try await first + second == 14)
        #expect(inside.peak == 2)
    }

    @Test func aWriterExcludesEveryoneAndTryNeverWaits() async throws {
        let state = ThreadSafe([String]())
        let writing = Gate()
        let finish = Gate()
        let writer = Task {
            try await state.write { value in
                value.append("w")
                writing.signal()
                await finish.subscribe().wait()
            }
        }
        await writing.subscribe().wait()
        #expect(state.tryRead { $0 } == nil)
        #expect(state.tryWrite { $0.append("x") } == nil)
        finish.signal()
        try await writer.join()
        #expect(state.tryRead { $0 } == ["w"])
        #expect(state.tryWrite { $0.append("t") } != nil)
        #expect(try await state.value == ["w", "t"])
    }

    @Test func aWaitingWriterIsNotStarvedByLaterReaders() async throws {
        let state = ThreadSafe(0)
        let order = Shared<[String]>([])
        let readerInside = Gate()
        let readerRelease = Gate()
        let firstReader = Task {
            try await state.read { _ in
                readerInside.signal()
                await readerRelease.subscribe().wait()
                order.withLock { $0.append("reader-1") }
            }
        }
        await readerInside.subscribe().wait()
        let writer = Task { try await state.write { value in value += 1; order.withLock { $0.append("writer") } } }
        // Once the writer waits, readers may no longer enter ahead of it.
        await waitUntil { state.tryRead { _ in } == nil }
        let lateReader = Task { try await state.read { value in order.withLock { $0.append("reader-2 saw \(value)") } } }
        readerRelease.signal()
        try await firstReader.join()
        try await writer.join()
        try await lateReader.join()
        #expect(order.value == ["reader-1", "writer", "reader-2 saw 1"])
    }

    @Test func aCancelledWaiterNeverTakesTheLock() async throws {
        let state = ThreadSafe(0)
        let writing = Gate()
        let finish = Gate()
        let holder = Task {
            try await state.write { _ in
                writing.signal()
                await finish.subscribe().wait()
            }
        }
        await writing.subscribe().wait()
        let waiter = Task { try await state.write { $0 = 99 } }
        await Task.yield()
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.join() }
        finish.signal()
        try await holder.join()
        #expect(try await state.value == 0)
        #expect(state.tryWrite { $0 = 1 } != nil)
    }

    @Test func readersAsleepBehindAWriterAllWakeWhenItLeaves() async throws {
        try await withRuntime { runtime in
            let state = ThreadSafe(0)
            let writing = Gate()
            let finish = Gate()
            let writer = try runtime.handle.spawn {
                try await state.write { value in
                    writing.signal()
                    await finish.subscribe().wait()  // holds the lock across a suspension
                    value = 7
                }
            }
            await writing.subscribe().wait()
            var readers: [Task<Int, any Error>] = []
            for _ in 0..<100 { readers.append(try runtime.handle.spawn { try await state.read { $0 } }) }
            finish.signal()
            try await writer.join()
            for reader in readers { #expect(try await reader.join() == 7) }
        }
    }

    @Test func readersGoInWhenTheWriterAheadOfThemIsCancelled() async throws {
        let state = ThreadSafe("start")
        let reading = Gate()
        let finish = Gate()
        let holder = Task {
            try await state.read { _ in
                reading.signal()
                await finish.subscribe().wait()
            }
        }
        await reading.subscribe().wait()
        let writer = Task { try await state.write { $0 = "written" } }
        await waitUntil { state.tryRead { _ in } == nil }  // the writer now keeps readers out
        let reader = Task { try await state.read { $0 } }
        writer.cancel()
        await #expect(throws: CancellationError.self) { try await writer.join() }
        #expect(try await reader.join() == "start")
        finish.signal()
        try await holder.join()
        #expect(state.tryWrite { $0 = "free" } != nil)
    }

    @Test func concurrentWritersLoseNoUpdate() async throws {
        try await withRuntime { runtime in
            let state = ThreadSafe<UInt64>(0)
            var tasks: [Task<Void, any Error>] = []
            for _ in 0..<16 {
                tasks.append(try runtime.handle.spawn {
                    for i in 0..<2000 {
                        if i % 10 == 0 { try await state.write { $0 += 1 } } else { _ = try await state.read { $0 } }
                    }
                })
            }
            for task in tasks { try await task.join() }
            #expect(try await state.value == 16 * 200)
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct AsyncMutexTests {
    @Test func oneHolderAtATimeAcrossSuspensions() async throws {
        try await withRuntime { runtime in
            let mutex = AsyncMutex(0)
            let holders = PeakCounter()
            var tasks: [Task<Void, any Error>] = []
            for _ in 0..<50 {
                tasks.append(try runtime.handle.spawn {
                    for _ in 0..<20 {
                        try await mutex.withLock { value in
                            holders.increment()
                            await Task.yield()
                            value += 1
                            holders.decrement()
                        }
                    }
                })
            }
            for task in tasks { try await task.join() }
            #expect(holders.peak == 1)
            #expect(try await mutex.withLock { $0 } == 1000)
        }
    }

    @Test func tryLockNeverWaits() async throws {
        let mutex = AsyncMutex("free")
        #expect(mutex.tryLock { $0 } == "free")
        let holding = Gate()
        let finish = Gate()
        let holder = Task {
            try await mutex.withLock { value in
                value = "held"
                holding.signal()
                await finish.subscribe().wait()
            }
        }
        await holding.subscribe().wait()
        #expect(mutex.isLocked)
        #expect(mutex.tryLock { $0 } == nil)
        finish.signal()
        try await holder.join()
        #expect(mutex.tryLock { $0 } == "held")
    }

    @Test func aCancelledWaiterNeverTakesTheLock() async throws {
        let mutex = AsyncMutex(0)
        let holding = Gate()
        let finish = Gate()
        let holder = Task {
            try await mutex.withLock { _ in
                holding.signal()
                await finish.subscribe().wait()
            }
        }
        await holding.subscribe().wait()
        let waiter = Task { try await mutex.withLock { $0 = 5 } }
        await Task.yield()
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.join() }
        finish.signal()
        try await holder.join()
        #expect(mutex.tryLock { $0 } == 0)
    }
}
