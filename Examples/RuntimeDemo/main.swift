// A tour of Kizuna's async runtime: a custom configuration, shared state, streams,
// concurrent tasks, the operation limiter and graceful shutdown. Run it with
//   swift run kizuna-runtime-demo
import KizunaSDK

struct PeerEvent: Sendable {
    enum Kind: Sendable { case found, lost }
    var kind: Kind
    var peer: String
}

func log(_ message: String) { print("[\(AsyncRuntime.currentThreadName)] \(message)") }

func runDemo() async throws {
    // 1. A runtime built from a custom configuration: three named workers with 1 MiB
    //    stacks, a small blocking pool and a tight operation limit.
    let configuration = RuntimeConfiguration(
        workerThreads: 3, threadStackSize: 1 << 20, threadNamePrefix: "demo",
        maxBlockingThreads: 4, operationPermits: 2, metricsInterval: nil)
    let runtime = try AsyncRuntime(configuration: configuration)
    print("runtime: \(runtime.metrics)")

    // The rest of this function runs on the runtime's workers too, so awaiting the tasks
    // it spawns does not hop between executors.
    try await withTaskExecutorPreference(runtime.handle.executor) {
        try await tour(runtime)
    }
    print("before shutdown: \(runtime.metrics)")
    let report = await runtime.shutdown(gracePeriod: .seconds(2))
    print("shutdown: \(report)")
    print("after shutdown: \(runtime.metrics)")
}

func tour(_ runtime: AsyncRuntime) async throws {
    let handle = runtime.handle

    // 2. Shared state every task can read and write, and an event stream.
    let peers = ThreadSafe<Set<String>>([])
    let events = BroadcastChannel<PeerEvent>(capacity: 64)
    let status = WatchChannel("starting")

    // A subscriber that follows the event stream until shutdown.
    let feed = events.subscribe()
    let subscriber = try handle.spawn(name: "event-log") {
        var seen = 0
        for await message in feed {
            switch message {
            case .element(let event): seen += 1; log("event: \(event.peer) \(event.kind)")
            case .lagged(let missed): log("event log fell behind, missed \(missed)")
            }
        }
        return seen
    }

    // A status watcher: sees the latest status each time it changes.
    let statusTask = try handle.spawn(name: "status") {
        for await value in status.subscribe() {
            log("status: \(value)")
            if value == "stopped" { break }
        }
    }
    status.send("running")

    // 3. Concurrent tasks: "discover" peers, each holding one of 2 operation permits.
    let names = ["aiko", "bo", "chen", "dana", "eli"]
    var discoveries: [Task<Void, any Error>] = []
    for name in names {
        discoveries.append(try handle.spawn(name: "discover-\(name)") {
            try await handle.limiter.withPermit {
                log("probing \(name) (permits in use: \(handle.limiter.inUse)/\(handle.limiter.capacity))")
                try await Task.sleep(for: .milliseconds(5))  // hold the permit across a suspension
                try await peers.write { $0.insert(name) }
                events.send(PeerEvent(kind: .found, peer: name))
            }
        })
    }
    for task in discoveries { try await task.value }
    log("peers known: \(try await peers.read { $0.sorted() })")

    // 4. Blocking work on the blocking pool, and a task with a timeout.
    let checksum = try await handle.spawnBlocking(name: "checksum") { () -> Int in
        log("hashing on a blocking thread")
        return names.joined().utf8.reduce(0) { ($0 &* 31) &+ Int($1) }
    }.value
    log("checksum \(checksum)")
    let slow = try handle.spawn(timeout: .milliseconds(50), name: "slow-probe") {
        try await Task.sleep(for: .seconds(10))
    }
    do {
        try await slow.value
    } catch let error as RuntimeError {
        log("timeout: \(error)")
    }

    // 5. Streams compose: merge two channels, filter and map the result.
    let left = BoundedChannel<Int>(capacity: 8)
    let right = BoundedChannel<Int>(capacity: 8)
    let feeder = try handle.spawn(name: "feeder") {
        for value in 1...5 {
            try await left.send(value)
            try await right.send(value * 10)
        }
        left.finish()
        right.finish()
    }
    var merged: [Int] = []
    for await value in merge(left, right).filter({ $0 % 2 == 0 }).map({ $0 + 1 }) { merged.append(value) }
    try await feeder.value
    log("merged, even values plus one: \(merged.sorted())")

    // 6. Shutdown coordination: a long-running service stops when the signal fires.
    let service = try handle.spawn(name: "announcer") {
        let shutdown = handle.subscribeShutdown()
        log("announcer running until shutdown")
        await shutdown.wait()
        log("announcer saw shutdown, leaving")
    }
    _ = service
    for name in names.prefix(2) {
        try await peers.write { $0.remove(name) }
        events.send(PeerEvent(kind: .lost, peer: name))
    }
    status.send("stopped")
    await statusTask.value
    events.finish()
    log("event log saw \(await subscriber.value) events")
}

try await runDemo()
