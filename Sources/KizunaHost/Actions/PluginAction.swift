/// The C types a plugin action's parameters and result may have.
public enum ActionType: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case int8, int16, int32, int64
    case uint8, uint16, uint32, uint64
    case double, bool
    /// A parameter: a NUL-terminated UTF-8 `const char *`, valid for the duration of the call.
    /// A result: a NUL-terminated UTF-8 `char *` the plugin allocated with `malloc`; the
    /// host copies it and frees it with `free`. A NULL result reads as an empty string.
    case string
    /// Only as a result: the action returns nothing.
    case void

    public var description: String { rawValue }

    /// The C declaration, for messages and documentation.
    public var cType: String {
        switch self {
        case .int8: "int8_t"
        case .int16: "int16_t"
        case .int32: "int32_t"
        case .int64: "int64_t"
        case .uint8: "uint8_t"
        case .uint16: "uint16_t"
        case .uint32: "uint32_t"
        case .uint64: "uint64_t"
        case .double: "double"
        case .bool: "bool"
        case .string: "const char *"
        case .void: "void"
        }
    }
}

/// An operation a plugin exports as a plain C function (`@_cdecl`) and declares in its
/// manifest, so that people and scripts can invoke it on a loaded plugin:
///
/// ```toml
/// [actions.rescan]
/// symbol = "mdns_rescan"
/// parameters = ["int32"]
/// returns = "int32"
/// description = "Browse again now; returns the number of peers seen"
/// ```
public struct PluginAction: Sendable, Hashable, Codable {
    /// The action's name: lowercase letters, digits and dashes.
    public var name: String
    /// The exported C symbol.
    public var symbol: String
    /// Parameter types, in order.
    public var parameters: [ActionType]
    /// The result type.
    public var returns: ActionType
    public var description: String?

    /// The C signature, such as `int32_t mdns_rescan(int32_t)`.
    public var signature: String {
        "\(returns.cType) \(symbol)(\(parameters.isEmpty ? "void" : parameters.map(\.cType).joined(separator: ", ")))"
    }
}
