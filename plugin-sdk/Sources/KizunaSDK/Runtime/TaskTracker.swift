import Synchronization

/// Something the tracker can cancel: every `Task`, whatever its result type.
@usableFromInline
protocol CancellableTask: Sendable {
    func cancel()
}

extension Task: CancellableTask {}

/// Keeps every live task spawned through one ``RuntimeHandle`` scope, so they can be
/// counted, waited for and cancelled together.
///
/// A task is counted from the moment it is spawned until its body returns. The task
/// object is registered right after creation; a body that finishes before that
/// registration leaves a tombstone so the late registration is dropped.
@usableFromInline
final class TaskTracker: Sendable {
    struct Entry: Sendable {
        let task: any CancellableTask
        let name: String?
        var cancelled = false
    }

    private struct State: Sendable {
        var live: [UInt64: Entry] = [:]
        var finishedEarly: Set<UInt64> = []
        var idleWaiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var nextWaiterID: UInt64 = 0
    }

    let name: String
    private let state = LockedValue(State())
    private let alive = Atomic<Int>(0)
    private let nextID = Atomic<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    private let permits = Atomic<Int>(0)

    init(name: String) { self.name = name }

    /// Tasks spawned and not yet finished.
    var count: Int { alive.load(ordering: .relaxed) }

    /// Operation permits held through this scope's handle.
    var permitsHeld: Int { permits.load(ordering: .relaxed) }

    @usableFromInline func permitTaken() { permits.wrappingAdd(1, ordering: .relaxed) }
    @usableFromInline func permitReturned() { permits.wrappingSubtract(1, ordering: .relaxed) }

    var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Refuses new tasks from now on.
    func close() { closed.store(true, ordering: .releasing) }

    /// Counts a task about to be spawned and gives it an id.
    @usableFromInline
    func begin() throws(RuntimeError) -> UInt64 {
        guard !closed.load(ordering: .acquiring) else {
            throw RuntimeError(.shutDown, "runtime scope '\(name)' is shut down and takes no new tasks; spawn before shutdown, or on a runtime that is still running")
        }
        alive.wrappingAdd(1, ordering: .relaxed)
        return nextID.wrappingAdd(1, ordering: .relaxed).oldValue
    }

    /// Registers the task object spawned for `id`, so that it can be cancelled.
    @usableFromInline
    func attach(_ id: UInt64, _ task: any CancellableTask, name: String?) {
        let cancelNow = state.withLock { state -> Bool in
            if state.finishedEarly.remove(id) != nil { return false }
            state.live[id] = Entry(task: task, name: name)
            return closed.load(ordering: .relaxed)
        }
        // Spawned while the scope was closing: it must not outlive the shutdown.
        if cancelNow { task.cancel() }
    }

    /// Marks the task `id` finished. Called from the end of the task's own body.
    @usableFromInline
    func end(_ id: UInt64) {
        state.withLock { state in
            if state.live.removeValue(forKey: id) == nil { state.finishedEarly.insert(id) }
        }
        if alive.wrappingSubtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
            let waiters = state.withLock { state in
                defer { state.idleWaiters.removeAll() }
                return Array(state.idleWaiters.values)
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Cancels every live task and returns the names (`nil` for unnamed tasks) of those it
    /// cancelled; tasks cancelled by an earlier call and not finished yet are not repeated.
    func cancelAll() -> [String?] {
        let entries = state.withLock { state -> [Entry] in
            var newlyCancelled: [Entry] = []
            for (id, entry) in state.live where !entry.cancelled {
                state.live[id]?.cancelled = true
                newlyCancelled.append(entry)
            }
            return newlyCancelled
        }
        for entry in entries { entry.task.cancel() }
        return entries.map(\.name)
    }

    /// Returns when no task is alive, or when the calling task is cancelled.
    func waitUntilIdle() async {
        let id = state.withLock { state in
            defer { state.nextWaiterID += 1 }
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if alive.load(ordering: .acquiring) == 0 || Task.isCancelled { return true }
                    state.idleWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.idleWaiters.removeValue(forKey: id) }?.resume()
        }
    }
}
