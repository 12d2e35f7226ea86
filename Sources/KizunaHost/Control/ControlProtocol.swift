public import KizunaSDK

/// One request to a running host over its control socket: a JSON object on one line.
public struct ControlRequest: Sendable, Codable, Hashable {
    /// What the request asks for.
    public enum Command: String, Sendable, Codable, Hashable {
        case list, info, load, unload, reload, status, events, actions, call
    }

    public var command: Command
    /// The plugin name or manifest path, for commands that take one.
    public var argument: String?
    /// For `call`: the action's name, then its arguments as text.
    public var arguments: [String]?

    public init(_ command: Command, _ argument: String? = nil, arguments: [String]? = nil) {
        self.command = command
        self.argument = argument
        self.arguments = arguments
    }
}

/// One reply line. `events` replies with one line per event until the client disconnects.
public struct ControlResponse: Sendable, Codable, Hashable {
    public var ok: Bool
    /// What went wrong and how to fix it, when `ok` is false.
    public var error: String?
    public var plugins: [PluginInfo]?
    public var plugin: PluginInfo?
    public var status: HostStatus?
    public var event: HostEvent?
    /// For `events`: how many events this subscriber missed because it fell behind.
    public var missedEvents: Int?
    /// For `actions`.
    public var actions: [PluginAction]?
    /// For `call`: the action's result as text.
    public var result: String?

    public init(
        ok: Bool, error: String? = nil, plugins: [PluginInfo]? = nil, plugin: PluginInfo? = nil, status: HostStatus? = nil,
        event: HostEvent? = nil, missedEvents: Int? = nil, actions: [PluginAction]? = nil, result: String? = nil
    ) {
        self.ok = ok
        self.error = error
        self.plugins = plugins
        self.plugin = plugin
        self.status = status
        self.event = event
        self.missedEvents = missedEvents
        self.actions = actions
        self.result = result
    }

    public static func failure(_ message: String) -> ControlResponse { ControlResponse(ok: false, error: message) }
}

/// A problem with the control socket itself.
public struct ControlError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
