/// The four kinds of subsystem a plugin can provide.
public enum PluginKind: String, Sendable, Hashable, CaseIterable, Codable, CustomStringConvertible {
    /// Finds peers nearby and announces this host.
    case discovery
    /// Carries connections between hosts.
    case transport
    /// Sends and receives files over the transport.
    case fileTransfer = "file-transfer"
    /// Streams live frames over the transport.
    case streaming

    /// The number the plugin descriptor carries for this kind.
    public var abiValue: UInt32 {
        switch self {
        case .discovery: 1
        case .transport: 2
        case .fileTransfer: 3
        case .streaming: 4
        }
    }

    /// The kind a descriptor number stands for, if any.
    public init?(abiValue: UInt32) {
        guard let kind = Self.allCases.first(where: { $0.abiValue == abiValue }) else { return nil }
        self = kind
    }

    /// The kinds a plugin of this kind needs loaded first.
    public var requiredKinds: [PluginKind] {
        switch self {
        case .discovery, .transport: []
        case .fileTransfer, .streaming: [.transport]
        }
    }

    public var description: String { rawValue }
}
