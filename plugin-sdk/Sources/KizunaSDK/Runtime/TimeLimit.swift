/// Runs `wait` (which must return early when cancelled) until `isDone` holds or `limit`
/// passes, whichever comes first; the loser is cancelled.
/// - Returns: `isDone()` at the end.
func wait(
    until isDone: @escaping @Sendable () -> Bool, within limit: Duration,
    _ wait: @escaping @Sendable () async -> Void
) async -> Bool {
    if isDone() { return true }
    await withTaskGroup(of: Void.self) { group in
        group.addTask { await wait() }
        group.addTask { try? await Task.sleep(for: limit) }
        await group.next()
        group.cancelAll()
    }
    return isDone()
}
