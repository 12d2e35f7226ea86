import CKizunaRuntime
import DequeModule
import Dispatch
import Glibc
import Synchronization

/// The runtime's async workers: a `TaskExecutor` whose jobs run on a fixed set of named
/// pthreads with the configured stack size (the global concurrent pool's width and stacks
/// cannot be configured, DESIGN.md fact 7).
///
/// One FIFO queue under one lock. A worker that finds it empty spins briefly before it
/// sleeps, and a producer wakes a sleeper only when no worker is spinning and no wake-up
/// is already on its way: each wake-up is a futex system call.
final class WorkerPool: TaskExecutor, @unchecked Sendable {
    private let condition = ConditionLock()
    // Guarded by `condition`.
    private var queue = Deque<UnownedJob>()
    private var sleepers = 0
    private var spinners = 0
    private var pendingWakes = 0
    private var stopping = false
    private var threads: [PlatformThread] = []
    // Mirrors queue.count (written under the lock) so idle workers can spin without locking.
    private let queuedHint = Atomic<Int>(0)

    private static let spinsBeforeSleep = 32

    let threadCount: Int
    let namePrefix: String

    init(threadCount: Int, stackSize: Int, namePrefix: String) throws(RuntimeError) {
        self.threadCount = threadCount
        self.namePrefix = namePrefix
        queue.reserveCapacity(1024)
        var started: [PlatformThread] = []
        for index in 0..<threadCount {
            do {
                started.append(try PlatformThread.start(name: "\(namePrefix)-\(index)", stackSize: stackSize) { [self] in
                    self.workerLoop()
                })
            } catch {
                stop(joining: started)
                throw error
            }
        }
        condition.withLock { threads = started }
    }

    /// True when the calling thread is one of this pool's workers.
    var isCurrentThreadWorker: Bool {
        kizuna_thread_current_pool() == Unmanaged.passUnretained(self).toOpaque()
    }

    /// The pool the calling thread works for, if it is a runtime worker.
    static var current: WorkerPool? {
        guard let pointer = kizuna_thread_current_pool() else { return nil }
        return Unmanaged<WorkerPool>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Worker threads running (0 once the pool has shut down).
    var runningThreads: Int { condition.withLock { threads.count } }

    /// Jobs waiting for a worker.
    var queueDepth: Int { condition.withLock { queue.count } }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        if stopping {
            condition.unlock()
            // A job can still arrive after shutdown (a continuation resumed late). Run it
            // rather than lose it: the executor is a claim about ordering, not a thread.
            DispatchQueue.global().async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
            return
        }
        queue.append(job)
        queuedHint.store(queue.count, ordering: .relaxed)
        let wake = spinners == 0 && sleepers > pendingWakes
        if wake { pendingWakes += 1 }
        condition.unlock()
        if wake { condition.signal() }
    }

    private func workerLoop() {
        kizuna_thread_set_current_pool(Unmanaged.passUnretained(self).toOpaque())
        let executor = asUnownedTaskExecutor()
        condition.lock()
        while true {
            if let job = queue.popFirst() {
                queuedHint.store(queue.count, ordering: .relaxed)
                condition.unlock()
                job.runSynchronously(on: executor)
                condition.lock()
                continue
            }
            if stopping { break }
            // Spin a little with the lock released: most idle gaps are short.
            spinners += 1
            condition.unlock()
            for _ in 0..<Self.spinsBeforeSleep {
                if queuedHint.load(ordering: .relaxed) > 0 { break }
                sched_yield()
            }
            condition.lock()
            spinners -= 1
            if !queue.isEmpty || stopping { continue }
            sleepers += 1
            condition.wait()
            sleepers -= 1
            if pendingWakes > 0 { pendingWakes -= 1 }
        }
        condition.unlock()
        kizuna_thread_set_current_pool(nil)
    }

    /// Asks every worker to finish the queued jobs and exit; joins them when `join` is true.
    func shutdown(join: Bool) {
        let toJoin: [PlatformThread] = condition.withLock {
            stopping = true
            defer { threads = [] }
            return threads
        }
        condition.broadcast()
        for thread in toJoin {
            if join { thread.join() } else { thread.detach() }
        }
    }

    private func stop(joining started: [PlatformThread]) {
        condition.withLock { stopping = true }
        condition.broadcast()
        for thread in started { thread.join() }
    }
}

