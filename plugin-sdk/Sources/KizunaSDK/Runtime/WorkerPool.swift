import CKizunaRuntime
import DequeModule
import Dispatch
import Glibc
import Synchronization

/// The runtime's async workers: a `TaskExecutor` whose jobs run on a fixed set of named
/// pthreads with the configured stack size (the global concurrent pool's width and stacks
/// cannot be configured, DESIGN.md fact 7).
///
/// Jobs go to one shared FIFO queue, except that a job enqueued *by a worker* (a task it
/// woke, a task it spawned) goes to that worker's own slot and runs right after the
/// current job, as in tokio's LIFO slot: a producer and the consumer it wakes then take
/// turns on one thread instead of waking another with a system call. A job displaced from
/// the slot goes to the shared queue, and a worker takes at most three slot jobs in a row
/// before it serves the shared queue, so the slot cannot starve it.
///
/// A slot job waits for its worker's current job; if that job blocks (a synchronous call
/// that takes long), ``rescueStrandedJobs(busyLongerThan:)``, run periodically by the
/// runtime's timer, moves it to the shared queue where an idle worker takes it.
///
/// A worker that finds nothing to do spins briefly before it sleeps, and a producer wakes
/// a sleeper only when no worker is spinning and no wake-up is already on its way.
@usableFromInline
final class WorkerPool: TaskExecutor, @unchecked Sendable {
    /// What one worker thread owns. The slot and the busy mark are atomics because the
    /// rescue may take a stranded slot job from another thread; the rest is the owner's.
    private final class Worker: @unchecked Sendable {
        unowned let pool: WorkerPool
        /// The slot job's bits (an `UnownedJob` is one pointer), or 0 when empty.
        let slot = Atomic<UInt>(0)
        /// When the current job started (monotonic nanoseconds), or 0 while idle.
        let busySince = Atomic<UInt64>(0)
        var slotStreak = 0
        init(pool: WorkerPool) { self.pool = pool }

        func putInSlot(_ job: UnownedJob) -> UnownedJob? {
            Self.job(slot.exchange(unsafeBitCast(job, to: UInt.self), ordering: .acquiringAndReleasing))
        }

        func takeSlot() -> UnownedJob? { Self.job(slot.exchange(0, ordering: .acquiringAndReleasing)) }

        private static func job(_ bits: UInt) -> UnownedJob? { bits == 0 ? nil : unsafeBitCast(bits, to: UnownedJob.self) }
    }

    private let workers = Mutex<[Worker]>([])

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
    private static let maximumSlotStreak = 3

    init(threadCount: Int, stackSize: Int, namePrefix: String) throws(RuntimeError) {
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

    /// The worker state of the calling thread, if it is a worker of any pool.
    private static var currentWorker: Worker? {
        guard let pointer = kizuna_thread_current_pool() else { return nil }
        return Unmanaged<Worker>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// True when the calling thread is one of this pool's workers.
    var isCurrentThreadWorker: Bool { Self.currentWorker?.pool === self }

    /// The pool the calling thread works for, if it is a runtime worker.
    static var current: WorkerPool? { currentWorker?.pool }

    /// Worker threads running (0 once the pool has shut down).
    var runningThreads: Int { condition.withLock { threads.count } }

    /// Jobs waiting in the shared queue (not counting the one in each worker's slot).
    var queueDepth: Int { condition.withLock { queue.count } }

    @usableFromInline
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if let worker = Self.currentWorker, worker.pool === self {
            if let displaced = worker.putInSlot(job) { enqueueShared(displaced) }
            return
        }
        enqueueShared(job)
    }

    /// Moves the slot job of every worker whose current job has run longer than `limit`
    /// to the shared queue, so a blocked worker does not hold up the task it woke.
    func rescueStrandedJobs(busyLongerThan limit: UInt64) {
        let now = monotonicNanoseconds()
        for worker in workers.withLock({ $0 }) {
            let since = worker.busySince.load(ordering: .acquiring)
            guard since != 0, now &- since > limit, let job = worker.takeSlot() else { continue }
            enqueueShared(job)
        }
    }

    private func enqueueShared(_ job: UnownedJob) {
        condition.lock()
        if stopping && threads.isEmpty {
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
        let worker = Worker(pool: self)
        workers.withLock { $0.append(worker) }
        let context = Unmanaged.passRetained(worker)
        kizuna_thread_set_current_pool(context.toOpaque())
        defer {
            kizuna_thread_set_current_pool(nil)
            workers.withLock { $0.removeAll { $0 === worker } }
            context.release()
        }
        let executor = asUnownedTaskExecutor()
        while let job = nextJob(worker) {
            worker.busySince.store(monotonicNanoseconds(), ordering: .releasing)
            job.runSynchronously(on: executor)
            worker.busySince.store(0, ordering: .releasing)
        }
    }

    /// The next job for `worker`: its slot first (within the streak limit), then the shared
    /// queue; sleeps when there is none. Returns nil when the pool stops and all is done.
    private func nextJob(_ worker: Worker) -> UnownedJob? {
        if let job = worker.takeSlot() {
            if worker.slotStreak < Self.maximumSlotStreak {
                worker.slotStreak += 1
                return job
            }
            enqueueShared(job)  // let the shared queue go first this time
        }
        worker.slotStreak = 0
        condition.lock()
        defer { condition.unlock() }
        while true {
            if let job = queue.popFirst() {
                queuedHint.store(queue.count, ordering: .relaxed)
                return job
            }
            if stopping { return nil }
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
    }

    /// Asks every worker to finish the queued jobs and exit; joins them when `join` is true.
    func shutdown(join: Bool) {
        let toJoin: [PlatformThread] = condition.withLock {
            stopping = true
            return threads
        }
        condition.broadcast()
        for thread in toJoin {
            if join { thread.join() } else { thread.detach() }
        }
        condition.withLock { threads = [] }
    }

    private func stop(joining started: [PlatformThread]) {
        condition.withLock { stopping = true }
        condition.broadcast()
        for thread in started { thread.join() }
    }
}
