import DequeModule

/// Threads for synchronous work that may block, kept apart from the async workers so a
/// blocking call never stalls the tasks. Threads start on demand up to a limit and exit
/// after they have been idle for the keep-alive period; exited threads are joined.
final class BlockingPool: @unchecked Sendable {
    private let condition = ConditionLock()
    // Guarded by `condition`.
    private var queue = Deque<() -> Void>()
    private var threads: [Int: PlatformThread] = [:]
    private var exited: [Int] = []
    private var threadCount = 0
    private var idleCount = 0
    private var busyCount = 0
    private var wakeups = 0
    private var startedCount = 0
    private var stopping = false

    private let maxThreads: Int
    private let keepAliveNanoseconds: UInt64
    private let stackSize: Int
    private let namePrefix: String

    init(maxThreads: Int, keepAlive: Duration, stackSize: Int, namePrefix: String) {
        self.maxThreads = maxThreads
        self.keepAliveNanoseconds = keepAlive.nanosecondsClamped
        self.stackSize = stackSize
        self.namePrefix = namePrefix
    }

    struct Counts: Sendable {
        var threads: Int
        var busy: Int
        var queued: Int
    }

    var counts: Counts {
        condition.withLock { Counts(threads: threadCount, busy: busyCount, queued: queue.count) }
    }

    /// Queues `job` to run on a blocking thread.
    func submit(_ job: @escaping () -> Void) throws(RuntimeError) {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            throw RuntimeError(.shutDown, "the runtime is shut down; its blocking pool takes no new work")
        }
        queue.append(job)
        var startIndex: Int?
        if idleCount > 0 {
            idleCount -= 1  // claim one sleeper for this job
            wakeups += 1
        } else if threadCount < maxThreads {
            threadCount += 1
            startIndex = startedCount
            startedCount += 1
        }
        let reaped = takeExited()
        condition.unlock()
        for thread in reaped { thread.join() }
        guard let index = startIndex else {
            condition.signal()
            return
        }
        do {
            let thread = try PlatformThread.start(name: "\(namePrefix)-b\(index % 10_000)", stackSize: stackSize) { [self] in
                self.threadLoop(index: index)
            }
            condition.withLock { threads[index] = thread }
        } catch {
            // The job stays queued; a running thread will take it. With none running, say so.
            let none = condition.withLock {
                threadCount -= 1
                return threadCount == 0
            }
            if none { throw error }
        }
    }

    private func threadLoop(index: Int) {
        condition.lock()
        while true {
            if let job = queue.popFirst() {
                busyCount += 1
                condition.unlock()
                job()
                condition.lock()
                busyCount -= 1
                continue
            }
            if stopping { break }
            // Sleep until a submitter claims this thread (wakeups), shutdown, or keep-alive ends.
            idleCount += 1
            let deadline = monotonicNanoseconds() &+ keepAliveNanoseconds
            var timedOut = false
            while wakeups == 0 && !stopping && !timedOut {
                timedOut = !condition.wait(untilNanoseconds: deadline)
            }
            if wakeups > 0 {
                wakeups -= 1  // the submitter already took us off the idle count
            } else {
                idleCount -= 1
                if timedOut && queue.isEmpty { break }
            }
        }
        threadCount -= 1
        exited.append(index)
        condition.unlock()
        condition.broadcast()  // a shutdown may be waiting for idle threads to leave
    }

    /// Handles of threads that have left their loop, to be joined outside the lock.
    private func takeExited() -> [PlatformThread] {
        defer { exited.removeAll() }
        return exited.compactMap { threads.removeValue(forKey: $0) }
    }

    /// Refuses new work and joins every thread that is not running a job; threads busy
    /// with a job (it may block forever) finish it and the queue, then exit on their own.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while threadCount > busyCount { condition.wait() }
        let finished = takeExited()
        let busy = Array(threads.values)
        threads.removeAll()
        condition.unlock()
        for thread in finished { thread.join() }
        for thread in busy { thread.detach() }
    }
}
