/// The async sequences of the SDK's channels and stream utilities.
///
/// They get `filter` and `map` with *synchronous* closures, which the compiler picks over the
/// standard library's for closures that do not `await`. The standard ones take `async`
/// closures, and calling one from a task that runs on the runtime's workers checks the
/// task's executor preference on every element; these run the closure inline and are
/// specialized in the caller. Async closures still get the standard operators, and every
/// standard operator composes with these sequences.
///
/// ```swift
/// for await value in channel.filter({ $0 % 2 == 0 }).map({ $0 + 1 }) { … }
/// ```
public protocol ChannelSequence: AsyncSequence {}

extension ChannelSequence {
    /// The elements for which `isIncluded` returns true.
    @inlinable
    public func filter(_ isIncluded: @escaping @Sendable (Element) -> Bool) -> FilteredSequence<Self> {
        FilteredSequence(base: self, isIncluded: isIncluded)
    }

    /// The elements, each transformed by `transform`.
    @inlinable
    public func map<Transformed>(_ transform: @escaping @Sendable (Element) -> Transformed) -> MappedSequence<Self, Transformed> {
        MappedSequence(base: self, transform: transform)
    }
}

/// The elements of `Base` that pass a synchronous predicate.
public struct FilteredSequence<Base: AsyncSequence>: ChannelSequence {
    public typealias Element = Base.Element
    public typealias Failure = Base.Failure

    @usableFromInline let base: Base
    @usableFromInline let isIncluded: @Sendable (Base.Element) -> Bool

    @inlinable
    init(base: Base, isIncluded: @escaping @Sendable (Base.Element) -> Bool) {
        self.base = base
        self.isIncluded = isIncluded
    }

    @inlinable
    public func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator(), isIncluded: isIncluded) }

    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline var base: Base.AsyncIterator
        @usableFromInline let isIncluded: @Sendable (Base.Element) -> Bool

        @inlinable
        init(base: Base.AsyncIterator, isIncluded: @escaping @Sendable (Base.Element) -> Bool) {
            self.base = base
            self.isIncluded = isIncluded
        }

        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(Base.Failure) -> Base.Element? {
            while let element = try await base.next(isolation: actor) {
                if isIncluded(element) { return element }
            }
            return nil
        }
    }
}

/// The elements of `Base`, each transformed by a synchronous closure.
public struct MappedSequence<Base: AsyncSequence, Transformed>: ChannelSequence {
    public typealias Element = Transformed
    public typealias Failure = Base.Failure

    @usableFromInline let base: Base
    @usableFromInline let transform: @Sendable (Base.Element) -> Transformed

    @inlinable
    init(base: Base, transform: @escaping @Sendable (Base.Element) -> Transformed) {
        self.base = base
        self.transform = transform
    }

    @inlinable
    public func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator(), transform: transform) }

    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline var base: Base.AsyncIterator
        @usableFromInline let transform: @Sendable (Base.Element) -> Transformed

        @inlinable
        init(base: Base.AsyncIterator, transform: @escaping @Sendable (Base.Element) -> Transformed) {
            self.base = base
            self.transform = transform
        }

        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async throws(Base.Failure) -> Transformed? {
            guard let element = try await base.next(isolation: actor) else { return nil }
            return transform(element)
        }
    }
}

extension FilteredSequence: Sendable where Base: Sendable {}
extension MappedSequence: Sendable where Base: Sendable {}
