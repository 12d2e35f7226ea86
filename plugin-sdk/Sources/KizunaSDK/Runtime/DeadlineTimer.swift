/// The runtime's timer thread: runs actions at monotonic deadlines.
///
/// Entries live in a binary min-heap that records each entry's position, so cancelling
/// one is O(log n) and a finished task's timeout does not linger until its deadline.
/// The thread is woken only when a new entry becomes the earliest.
final class DeadlineTimer: @unchecked Sendable {
    /// A scheduled action. Its heap position is guarded by the timer's lock.
    final class Entry: @unchecked Sendable {
        fileprivate let deadline: UInt64
        fileprivate let action: @Sendable () -> Void
        fileprivate let isInternal: Bool
        fileprivate var index = -1

        fileprivate init(deadline: UInt64, isInternal: Bool, action: @escaping @Sendable () -> Void) {
            self.deadline = deadline
            self.isInternal = isInternal
            self.action = action
        }
    }

    private let condition = ConditionLock()
    private var heap: [Entry] = []
    private var internalEntries = 0
    private var stopping = false
    private var thread: PlatformThread?

    init(name: String, stackSize: Int) throws(RuntimeError) {
        let thread = try PlatformThread.start(name: name, stackSize: stackSize) { [self] in self.run() }
        condition.withLock { self.thread = thread }
    }

    /// Entries waiting for their deadline, not counting the runtime's own housekeeping.
    var pendingCount: Int { condition.withLock { heap.count - internalEntries } }

    /// Runs `action` on the timer thread once the monotonic clock reaches `deadline`
    /// (nanoseconds). Actions must be short: they delay every later deadline.
    /// `isInternal` marks the runtime's own housekeeping, which ``pendingCount`` leaves out.
    @discardableResult
    func schedule(atNanoseconds deadline: UInt64, isInternal: Bool = false, _ action: @escaping @Sendable () -> Void) -> Entry {
        let entry = Entry(deadline: deadline, isInternal: isInternal, action: action)
        let wake: Bool = condition.withLock {
            if stopping { return false }
            if isInternal { internalEntries += 1 }
            entry.index = heap.count
            heap.append(entry)
            siftUp(entry.index)
            return entry.index == 0
        }
        if wake { condition.signal() }
        return entry
    }

    /// Removes an entry that has not fired yet; does nothing if it has fired or was cancelled.
    func cancel(_ entry: Entry) {
        condition.withLock {
            let index = entry.index
            guard index >= 0 else { return }
            entry.index = -1
            if entry.isInternal { internalEntries -= 1 }
            let last = heap.removeLast()
            guard index < heap.count else { return }
            heap[index] = last
            last.index = index
            siftDown(index)
            siftUp(last.index)
        }
    }

    /// Stops the thread; pending entries never fire.
    func shutdown() {
        let thread: PlatformThread? = condition.withLock {
            stopping = true
            for entry in heap { entry.index = -1 }
            heap.removeAll()
            internalEntries = 0
            defer { self.thread = nil }
            return self.thread
        }
        condition.signal()
        thread?.join()
    }

    private func run() {
        condition.lock()
        while !stopping {
            guard let first = heap.first else {
                condition.wait()
                continue
            }
            if first.deadline > monotonicNanoseconds() {
                _ = condition.wait(untilNanoseconds: first.deadline)
                continue
            }
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                last.index = 0
                siftDown(0)
            }
            first.index = -1
            if first.isInternal { internalEntries -= 1 }
            condition.unlock()
            first.action()
            condition.lock()
        }
        condition.unlock()
    }

    private func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { return }
            heap.swapAt(child, parent)
            heap[child].index = child
            heap[parent].index = parent
            child = parent
        }
    }

    private func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            var smallest = left
            if left + 1 < heap.count, heap[left + 1].deadline < heap[left].deadline { smallest = left + 1 }
            guard heap[smallest].deadline < heap[parent].deadline else { return }
            heap.swapAt(smallest, parent)
            heap[smallest].index = smallest
            heap[parent].index = parent
            parent = smallest
        }
    }
}
