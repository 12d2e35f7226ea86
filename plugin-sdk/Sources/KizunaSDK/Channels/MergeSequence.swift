/// Merges any number of async sequences into one that yields every element of each as
/// it arrives. It ends when all of them have ended, or with the first error one throws.
///
/// Each base is iterated by its own child task, which starts on the first call to
/// `next()` and runs on the runtime's workers when that call is made from one. Elements
/// pass through a small bounded buffer, so a slow consumer slows the bases down.
///
/// ```swift
/// for await event in merge([peers.map(Event.peer), transfers.map(Event.transfer)]) { … }
/// ```
public func merge<Element: Sendable, Failure: Error>(
    _ bases: [any AsyncSequence<Element, Failure> & Sendable]
) -> MergeSequence<Element, Failure> {
    MergeSequence(bases: bases)
}

/// Merges the given async sequences; see ``merge(_:)``.
public func merge<Element: Sendable, Failure: Error>(
    _ first: any AsyncSequence<Element, Failure> & Sendable,
    _ rest: any AsyncSequence<Element, Failure> & Sendable...
) -> MergeSequence<Element, Failure> {
    MergeSequence(bases: [first] + rest)
}

/// The elements of several async sequences, interleaved as they arrive.
public struct MergeSequence<Element: Sendable, Failure: Error>: ChannelSequence, Sendable {
    let bases: [any AsyncSequence<Element, Failure> & Sendable]

    /// The number of elements buffered between the bases and the consumer.
    static var bufferSize: Int { 16 }

    public func makeAsyncIterator() -> Iterator { Iterator(bases: bases) }

    /// Starts the bases on first use; dropping it cancels them.
    public struct Iterator: AsyncIteratorProtocol {
        private let bases: [any AsyncSequence<Element, Failure> & Sendable]
        private var driver: Driver?

        init(bases: [any AsyncSequence<Element, Failure> & Sendable]) { self.bases = bases }

        public mutating func next(isolation actor: isolated (any Actor)?) async throws(Failure) -> Element? {
            if driver == nil { driver = Driver(bases: bases) }
            guard let result = await driver!.channel.receive() else { return nil }
            switch result {
            case .success(let element): return element
            case .failure(let error):
                driver!.task.cancel()
                throw error as! Failure
            }
        }
    }

    /// Owns the task that pulls from every base.
    private final class Driver: Sendable {
        let channel = BoundedChannel<Result<Element, any Error>>(capacity: MergeSequence.bufferSize)
        let task: Task<Void, Never>

        init(bases: [any AsyncSequence<Element, Failure> & Sendable]) {
            let channel = channel
            task = Task(executorPreference: WorkerPool.current) {
                await withTaskGroup(of: Void.self) { group in
                    for base in bases {
                        group.addTask {
                            do {
                                for try await element in base {
                                    try await channel.send(.success(element))
                                }
                            } catch is CancellationError {
                            } catch let error as RuntimeError where error.code == .closed {
                            } catch {
                                _ = try? await channel.send(.failure(error))
                                channel.finish()
                            }
                        }
                    }
                }
                channel.finish()
            }
        }

        deinit { task.cancel() }
    }
}
