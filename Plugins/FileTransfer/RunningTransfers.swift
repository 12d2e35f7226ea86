import KizunaSDK
import Synchronization

/// The transfers under way on this host, by id, so that a person can stop one
/// (`kizuna cancel ID`). Cancelling tells the peer why, then closes the connection: the
/// transfer's own task sees the connection end at its next send or receive, finds the
/// mark, and reports the cancellation instead of a lost connection.
final class RunningTransfers: Sendable {
    final class Transfer: Sendable {
        let connection: any Connection
        let outgoing: Bool
        private let mark = Atomic(false)

        fileprivate init(connection: any Connection, outgoing: Bool) {
            self.connection = connection
            self.outgoing = outgoing
        }

        /// True once someone cancelled it on this host.
        var isCancelled: Bool { mark.load(ordering: .acquiring) }
        /// Marks it cancelled; false if it already was.
        fileprivate func markCancelled() -> Bool { !mark.exchange(true, ordering: .acquiringAndReleasing) }
    }

    private let running = Mutex<[String: Transfer]>([:])

    /// Records transfer `id` as under way on `connection` until ``end(_:)``.
    func begin(_ id: String, over connection: any Connection, outgoing: Bool) -> Transfer {
        let transfer = Transfer(connection: connection, outgoing: outgoing)
        running.withLock { $0[id] = transfer }
        return transfer
    }

    func end(_ id: String) { running.withLock { _ = $0.removeValue(forKey: id) } }

    /// Stops transfer `id`; false if none with that id is under way.
    func cancel(_ id: String, on runtime: RuntimeHandle) -> Bool {
        guard let transfer = running.withLock({ $0[id] }), transfer.markCancelled() else { return false }
        var failure = Wire.Message(.error)
        failure.reason = transfer.outgoing ? "the sender cancelled the transfer" : "the receiver cancelled the transfer"
        Wire.sendLast(failure, over: transfer.connection, on: runtime)
        return true
    }
}

extension Wire {
    /// Sends `message`, then closes `connection`. A cancelled task's sends fail, so a
    /// cancelled caller hands both to a task of their own: the peer should still hear why.
    static func sendLast(_ message: Message, over connection: any Connection, on runtime: RuntimeHandle) {
        let lastWord: @Sendable () async -> Void = {
            try? await connection.send(encode(message))
            await connection.close()
        }
        // A runtime that is shutting down spawns nothing; the word still goes out.
        if (try? runtime.spawn(name: "file-transfer last word", lastWord)) == nil { Task { await lastWord() } }
    }

    /// Sends `message` and closes `connection`, waiting for both unless the caller is
    /// cancelled (see ``sendLast(_:over:on:)``).
    static func sendFinal(_ message: Message, over connection: any Connection, on runtime: RuntimeHandle) async {
        if Task.isCancelled { return sendLast(message, over: connection, on: runtime) }
        try? await connection.send(encode(message))
        await connection.close()
    }
}

extension Wire {
    /// The reason of an `error` the peer sent before its connection ended, if it sent one
    /// within a second; for a sender whose data could not go out.
    static func lastWord(from connection: any Connection) async -> String? {
        await withTaskGroup(of: String?.self) { group in
            group.addTask {
                while let message = try? await receive(from: connection) {
                    if case .control(let control) = message, control.type == .error { return control.reason ?? "no reason given" }
                }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(1))
                return nil
            }
            defer { group.cancelAll() }
            return await group.next() ?? nil
        }
    }
}
