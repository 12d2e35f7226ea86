/// An error from the Kizuna runtime: what went wrong, on what, and how to fix it.
public struct RuntimeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of runtime error, for code that handles them.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Value: String, Sendable, Hashable {
            case invalidConfiguration, threadStartFailed, shutDown, timedOut, blockOnFromWorker, closed
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// A ``RuntimeConfiguration`` field holds a value the runtime cannot use.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// The operating system refused to start a thread.
        public static let threadStartFailed = Code(.threadStartFailed)
        /// The runtime has been shut down and takes no new work.
        public static let shutDown = Code(.shutDown)
        /// A task did not finish within its time limit and was cancelled.
        public static let timedOut = Code(.timedOut)
        /// `blockOn` was called on one of the runtime's own worker threads.
        public static let blockOnFromWorker = Code(.blockOnFromWorker)
        /// The channel was closed.
        public static let closed = Code(.closed)

        public var description: String { value.rawValue }
    }

    /// What kind of error this is.
    public let code: Code
    /// A message that names what was wrong and how to fix it.
    public let message: String

    /// Creates an error of the given kind with a message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
