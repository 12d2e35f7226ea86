/// A value from a manifest's `[settings]` table.
public indirect enum SettingValue: Sendable, Hashable, Codable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    case float(Double)
    case bool(Bool)
    case array([SettingValue])
    case table([String: SettingValue])

    public var description: String {
        switch self {
        case .string(let value): "\"\(value)\""
        case .integer(let value): String(value)
        case .float(let value): String(value)
        case .bool(let value): String(value)
        case .array(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .table(let table): "{ " + table.keys.sorted().map { "\($0) = \(table[$0]!)" }.joined(separator: ", ") + " }"
        }
    }

    /// The type's name with its article ("an integer", "a string"), for error messages.
    public var typeNameWithArticle: String {
        switch self {
        case .integer, .array: "an \(typeName)"
        default: "a \(typeName)"
        }
    }

    /// The name of the value's type, for error messages.
    public var typeName: String {
        switch self {
        case .string: "string"
        case .integer: "integer"
        case .float: "float"
        case .bool: "boolean"
        case .array: "array"
        case .table: "table"
        }
    }
}

/// The settings a plugin's manifest gives it, with typed accessors.
public struct PluginSettings: Sendable, Hashable {
    /// Every setting, by key.
    public let values: [String: SettingValue]

    /// Wraps `values`.
    public init(_ values: [String: SettingValue] = [:]) { self.values = values }

    /// The string at `key`, or `nil` if it is missing or not a string.
    public func string(_ key: String) -> String? {
        if case .string(let value) = values[key] { return value }
        return nil
    }

    /// The integer at `key`, or `nil` if it is missing or not an integer.
    public func integer(_ key: String) -> Int64? {
        if case .integer(let value) = values[key] { return value }
        return nil
    }

    /// The number at `key` (a float, or an integer read as a float).
    public func float(_ key: String) -> Double? {
        switch values[key] {
        case .float(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }

    /// The boolean at `key`, or `nil` if it is missing or not a boolean.
    public func bool(_ key: String) -> Bool? {
        if case .bool(let value) = values[key] { return value }
        return nil
    }
}
