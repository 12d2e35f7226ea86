/// Where a plugin is in its lifecycle: discovered → loaded → starting → running →
/// stopping → stopped, or failed with the reason.
public enum PluginState: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Its manifest was found; its library is not open.
    case discovered
    /// Its library is open and its descriptor checked.
    case loaded
    /// Its `run` has been called and it has not yet reported that it is serving.
    case starting
    /// Its `run` is working.
    case running
    /// Its shutdown subscription has fired; the host is waiting for `run` to return.
    case stopping
    /// Its `run` returned after shutdown.
    case stopped
    /// It failed; `reason` says why and how to fix it.
    case failed(reason: String)
    /// It did not stop within the grace period even after cancellation; `tasks` of its
    /// tasks were still alive when the host gave up on it.
    case stuck(tasks: Int)

    /// A short name for tables: `running`, `failed`, …
    public var name: String {
        switch self {
        case .discovered: "discovered"
        case .loaded: "loaded"
        case .starting: "starting"
        case .running: "running"
        case .stopping: "stopping"
        case .stopped: "stopped"
        case .failed: "failed"
        case .stuck: "stuck"
        }
    }

    public var description: String {
        switch self {
        case .failed(let reason): "failed: \(reason)"
        case .stuck(let tasks): "stuck (\(tasks) task(s) still alive)"
        default: name
        }
    }
}
