/// A growable FIFO ring buffer for the channels' hot paths.
///
/// It is `@usableFromInline` so that the channels' `@inlinable` send and receive paths are
/// specialized in the client for the element type; generic code left unspecialized inside
/// the SDK library would look up generic metadata on every element. (The SDK keeps its own
/// ring instead of swift-collections' `Deque` because inlined code must not pull a second
/// copy of another package's types into the client, DESIGN.md fact 1.)
@usableFromInline
struct RingBuffer<Element> {
    @usableFromInline var slots: ContiguousArray<Element?>
    @usableFromInline var head = 0
    @usableFromInline var count = 0

    @inlinable
    init(minimumCapacity: Int = 16) {
        var size = 16
        while size < minimumCapacity { size <<= 1 }
        slots = ContiguousArray(repeating: nil, count: size)
    }

    @inlinable var isEmpty: Bool { count == 0 }

    @inlinable var first: Element? { count == 0 ? nil : slots[head] }

    @inlinable
    mutating func append(_ element: Element) {
        if count == slots.count { grow() }
        slots[(head &+ count) & (slots.count &- 1)] = element
        count &+= 1
    }

    @inlinable
    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = slots[head].take()
        head = (head &+ 1) & (slots.count &- 1)
        count &-= 1
        return element
    }

    @usableFromInline
    mutating func grow() {
        var larger = ContiguousArray<Element?>(repeating: nil, count: slots.count * 2)
        for index in 0..<count { larger[index] = slots[(head + index) & (slots.count - 1)].take() }
        slots = larger
        head = 0
    }

    /// Removes the first element that matches; O(n), for cancellations.
    @usableFromInline
    mutating func removeFirst(where matches: (Element) -> Bool) -> Element? {
        var kept = RingBuffer(minimumCapacity: slots.count)
        var removed: Element?
        while let element = popFirst() {
            if removed == nil && matches(element) { removed = element } else { kept.append(element) }
        }
        self = kept
        return removed
    }

    /// Removes and returns every element, oldest first.
    @usableFromInline
    mutating func removeAll() -> [Element] {
        var all: [Element] = []
        all.reserveCapacity(count)
        while let element = popFirst() { all.append(element) }
        return all
    }
}
