// Shared by the built-in plugins (linked into each; no type of it crosses the plugin
// boundary): the settings a plugin knows, checked before any is read, so that a typo or a
// wrong type in a manifest is an error that names it, never a setting silently ignored.
public import KizunaSDK

/// The settings a plugin reads, each with its type.
public struct SettingsSchema: Sendable {
    /// The type a setting must have.
    public enum Kind: Sendable {
        case string, integer, float, bool
        /// A string, or a list of strings.
        case strings

        var name: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .float: "a number"
            case .bool: "a boolean (true or false)"
            case .strings: "a string or a list of strings"
            }
        }

        func accepts(_ value: SettingValue) -> Bool {
            switch (self, value) {
            case (.string, .string), (.integer, .integer), (.float, .float), (.float, .integer), (.bool, .bool), (.strings, .string): true
            case (.strings, .array(let items)): items.allSatisfy { if case .string = $0 { true } else { false } }
            default: false
            }
        }
    }

    public let plugin: String
    public let keys: [String: Kind]

    public init(plugin: String, _ keys: [String: Kind]) {
        self.plugin = plugin
        self.keys = keys
    }

    /// Why `settings` are refused: an unknown key (with the nearest known one) or a value of
    /// the wrong type; nil if they are fine.
    public func refusal(of settings: PluginSettings) -> String? {
        for (key, value) in settings.values.sorted(by: { $0.key < $1.key }) {
            guard let kind = keys[key] else {
                let known = keys.keys.sorted()
                let nearest = known.min { distance($0, key) < distance($1, key) }
                let hint = nearest.map { distance($0, key) <= max(2, key.count / 3) ? "did you mean '\($0)'? " : "" } ?? ""
                return "\(plugin) has no setting '\(key)'; \(hint)its settings are \(known.joined(separator: ", "))"
            }
            guard kind.accepts(value) else {
                return "setting '\(key)' is \(value.typeNameWithArticle) (\(value)); give \(kind.name)"
            }
        }
        return nil
    }

    /// Levenshtein distance, for suggestions.
    private func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}
