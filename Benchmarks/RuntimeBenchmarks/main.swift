// Runs the runtime workloads of shared/bench/WORKLOADS.md on Kizuna's runtime and prints
// one JSON object per workload, in the same form as the tokio reference:
//   {"workload":"spawn","n":100000,"seconds":0.031,"per_second":3200000}
// Usage: kizuna-bench [ROUNDS] [WORKLOAD...]   (WORKERS=N sets the worker count; default 2)
import Foundation
import KizunaSDK
import Synchronization

struct Event: Sendable {
    var sequence: UInt64
    var peer: (UInt64, UInt64, UInt64, UInt64)  // a 32-byte peer id
}

let peerID: (UInt64, UInt64, UInt64, UInt64) = (0x0707_0707_0707_0707, 0x0707_0707_0707_0707, 0x0707_0707_0707_0707, 0x0707_0707_0707_0707)

func report(_ workload: String, _ n: Int, _ elapsed: Duration) {
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let line = String(format: "{\"workload\":\"%@\",\"n\":%d,\"seconds\":%.6f,\"per_second\":%.0f}\n", workload, n, seconds, Double(n) / seconds)
    FileHandle.standardOutput.write(Data(line.utf8))
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data("check failed: \(message())\n".utf8))
        exit(1)
    }
}

let clock = ContinuousClock()

/// An atomic counter that escaping task closures can share.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ amount: Int = 1) { value.wrappingAdd(amount, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

func spawnMany(_ handle: RuntimeHandle, _ n: Int) async throws {
    let counter = Counter()
    let start = clock.now
    var tasks: [Task<Void, Never>] = []
    tasks.reserveCapacity(n)
    for _ in 0..<n {
        tasks.append(try handle.spawn { counter.add() })
    }
    for task in tasks { await task.value }
    check(counter.count == n, "spawn counter")
    report("spawn", n, clock.now - start)
}

func spawnWithTimeout(_ handle: RuntimeHandle, _ n: Int) async throws {
    let counter = Counter()
    let start = clock.now
    var tasks: [Task<Void, any Error>] = []
    tasks.reserveCapacity(n)
    for _ in 0..<n {
        tasks.append(try handle.spawn(timeout: .seconds(1)) { counter.add() })
    }
    for task in tasks { try await task.value }
    check(counter.count == n, "spawn_with_timeout counter")
    report("spawn_with_timeout", n, clock.now - start)
}

func spawnBlocking(_ handle: RuntimeHandle, _ n: Int) async throws {
    let counter = Counter()
    let start = clock.now
    var tasks: [Task<Void, any Error>] = []
    tasks.reserveCapacity(n)
    for _ in 0..<n {
        tasks.append(try handle.spawnBlocking { counter.add() })
    }
    for task in tasks { try await task.value }
    check(counter.count == n, "spawn_blocking counter")
    report("spawn_blocking", n, clock.now - start)
}

func eventBus(_ handle: RuntimeHandle, events n: Int, subscribers: Int) async throws {
    let bus = BroadcastChannel<Event>(capacity: n)
    let received = Counter()
    var tasks: [Task<Void, Never>] = []
    for _ in 0..<subscribers {
        let receiver = bus.subscribe()
        tasks.append(try handle.spawn {
            var got = 0
            while let message = await receiver.receive() {
                guard case .element(let event) = message else { fatalError("lagged") }
                got += 1
                if event.sequence == UInt64(n - 1) { break }
            }
            received.add(got)
        })
    }
    let start = clock.now
    for sequence in 0..<n { bus.send(Event(sequence: UInt64(sequence), peer: peerID)) }
    for task in tasks { await task.value }
    check(received.count == n * subscribers, "event_bus deliveries")
    report("event_bus_\(subscribers)sub", n * subscribers, clock.now - start)
}

func eventFanoutBounded(_ handle: RuntimeHandle, events n: Int, subscribers: Int, capacity: Int) async throws {
    let channels = (0..<subscribers).map { _ in BoundedChannel<Event>(capacity: capacity) }
    var tasks: [Task<Int, Never>] = []
    for channel in channels {
        tasks.append(try handle.spawn {
            var got = 0
            for await _ in channel { got += 1 }
            return got
        })
    }
    let start = clock.now
    for sequence in 0..<n {
        for channel in channels { try await channel.send(Event(sequence: UInt64(sequence), peer: peerID)) }
    }
    for channel in channels { channel.finish() }
    var total = 0
    for task in tasks { total += await task.value }
    check(total == n * subscribers, "event_fanout_bounded deliveries")
    report("event_fanout_bounded_\(subscribers)sub", total, clock.now - start)
}

func operationPermits(_ handle: RuntimeHandle, tasks taskCount: Int, perTask: Int) async throws {
    let limiter = OperationLimiter(permits: 1000)
    let start = clock.now
    var tasks: [Task<Void, any Error>] = []
    for _ in 0..<taskCount {
        tasks.append(try handle.spawn {
            for _ in 0..<perTask {
                let permit = try await limiter.acquire()
                permit.release()
            }
        })
    }
    for task in tasks { try await task.value }
    report("operation_permits", taskCount * perTask, clock.now - start)
}

func sharedState(_ handle: RuntimeHandle, tasks taskCount: Int, perTask: Int) async throws {
    let state = ThreadSafe<UInt64>(0)
    let start = clock.now
    var tasks: [Task<UInt64, any Error>] = []
    for _ in 0..<taskCount {
        tasks.append(try handle.spawn {
            var seen: UInt64 = 0
            for i in 0..<perTask {
                if i % 10 == 0 {
                    try await state.write { $0 += 1 }
                } else {
                    seen &+= try await state.read { $0 }
                }
            }
            return seen
        })
    }
    for task in tasks { _ = try await task.value }
    let final = try await state.read { $0 }
    check(final == UInt64(taskCount * perTask / 10), "shared_state_rw final value \(final)")
    report("shared_state_rw", taskCount * perTask, clock.now - start)
}

func streamFilterMap(_ handle: RuntimeHandle, _ n: Int) async throws {
    let channel = BoundedChannel<UInt64>(capacity: 1024)
    let start = clock.now
    let producer = try handle.spawn {
        for i in 0..<UInt64(n) { try await channel.send(i) }
        channel.finish()
    }
    var count = 0
    for await _ in channel.filter({ $0 % 2 == 0 }).map({ $0 + 1 }) { count += 1 }
    try await producer.value
    check(count == n / 2, "stream_filter_map count \(count)")
    report("stream_filter_map", n, clock.now - start)
}

func shutdownFanout(_ handle: RuntimeHandle, _ n: Int) async throws {
    let signal = ShutdownSignal()
    var tasks: [Task<Void, Never>] = []
    for _ in 0..<n {
        let subscription = signal.subscribe()
        tasks.append(try handle.spawn { await subscription.wait() })
    }
    // Let every subscriber reach its wait, as the reference does, then time the fan-out.
    while signal.waitingCount < n { try await Task.sleep(for: .milliseconds(1)) }
    let start = clock.now
    signal.signal()
    for task in tasks { await task.value }
    report("shutdown_fanout", n, clock.now - start)
}

func spawnFloor(_ handle: RuntimeHandle, _ n: Int, global: Bool) async {
    let counter = Counter()
    let start = clock.now
    var tasks: [Task<Void, Never>] = []
    tasks.reserveCapacity(n)
    let executor: (any TaskExecutor)? = global ? nil : handle.executor
    for _ in 0..<n { tasks.append(Task(executorPreference: executor) { counter.add() }) }
    for task in tasks { await task.value }
    report(global ? "task_floor_global" : "task_floor_pool", n, clock.now - start)
}
let workloads: [(name: String, run: @Sendable (RuntimeHandle) async throws -> Void)] = [
    ("spawn", { try await spawnMany($0, 100_000) }),
    ("spawn_with_timeout", { try await spawnWithTimeout($0, 100_000) }),
    ("spawn_blocking", { try await spawnBlocking($0, 10_000) }),
    ("event_bus_1sub", { try await eventBus($0, events: 1_000_000, subscribers: 1) }),
    ("event_bus_8sub", { try await eventBus($0, events: 250_000, subscribers: 8) }),
    ("event_fanout_bounded_1sub", { try await eventFanoutBounded($0, events: 1_000_000, subscribers: 1, capacity: 1024) }),
    ("event_fanout_bounded_8sub", { try await eventFanoutBounded($0, events: 250_000, subscribers: 8, capacity: 1024) }),
    ("operation_permits", { try await operationPermits($0, tasks: 10_000, perTask: 100) }),
    ("shared_state_rw", { try await sharedState($0, tasks: 16, perTask: 100_000) }),
    ("stream_filter_map", { try await streamFilterMap($0, 1_000_000) }),
    ("shutdown_fanout", { try await shutdownFanout($0, 10_000) }),
]

func shutdownFanoutFloor(_ handle: RuntimeHandle, _ n: Int) async throws {
    let signal = ShutdownSignal()
    var tasks: [Task<Void, Never>] = []
    for _ in 0..<n {
        let subscription = signal.subscribe()
        tasks.append(Task(executorPreference: handle.executor) { await subscription.wait() })
    }
    while signal.waitingCount < n { try await Task.sleep(for: .milliseconds(1)) }
    let start = clock.now
    signal.signal()
    for task in tasks { await task.value }
    report("shutdown_fanout_floor", n, clock.now - start)
}

/// Not in WORKLOADS.md: the same work with bare Swift `Task`s (not tracked by the runtime),
/// on the runtime's pool and on the global pool: the floor under `spawn` and
/// `shutdown_fanout` that the Swift concurrency runtime sets. Run only when named.
let diagnostics: [(name: String, run: @Sendable (RuntimeHandle) async throws -> Void)] = [
    ("task_floor_pool", { await spawnFloor($0, 100_000, global: false) }),
    ("task_floor_global", { await spawnFloor($0, 100_000, global: true) }),
    ("shutdown_fanout_floor", { try await shutdownFanoutFloor($0, 10_000) }),
]

func runBenchmarks() async throws {
    let arguments = CommandLine.arguments.dropFirst()
    let rounds = arguments.first.flatMap(Int.init) ?? 1
    let selected = Set(arguments.filter { Int($0) == nil })
    let all = workloads + diagnostics
    let unknown = selected.subtracting(all.map(\.name))
    guard unknown.isEmpty else {
        FileHandle.standardError.write(Data("unknown workload(s): \(unknown.sorted().joined(separator: ", ")); choose from \(all.map(\.name).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    let workers = ProcessInfo.processInfo.environment["WORKERS"].flatMap(Int.init) ?? 2
    let runtime = try AsyncRuntime(configuration: RuntimeConfiguration(workerThreads: workers, metricsInterval: nil))
    let handle = runtime.handle
    let chosen = selected.isEmpty ? workloads : all.filter { selected.contains($0.name) }
    // The driver runs on the runtime's own workers, like tokio's block_on body, so awaiting
    // a spawned task does not hop executors (DESIGN.md fact 6).
    try await handle.spawn {
        for _ in 0..<rounds {
            for workload in chosen { try await workload.run(handle) }
        }
    }.value
    await runtime.shutdown(gracePeriod: .seconds(5))
}

try await runBenchmarks()
