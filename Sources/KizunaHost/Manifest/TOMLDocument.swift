import KizunaSDK

/// A parsed TOML document: nested tables of ``SettingValue``s, plus the line each key was
/// defined on, so that errors about a key can point at it.
///
/// Manifests use a subset of TOML 1.0: tables and dotted tables, dotted keys, basic and
/// literal strings (one-line and multi-line), integers (decimal, hex, octal, binary),
/// floats, booleans, arrays and inline tables. Dates and arrays of tables are refused
/// with an error that says so.
struct TOMLDocument {
    var root: [String: SettingValue] = [:]
    /// The line (from 1) each key path was defined on, keyed by its dotted path.
    var lines: [String: Int] = [:]

    /// Parses `text`.
    /// - Throws: ``TOMLError`` naming the line and what was wrong.
    init(parsing text: String) throws(TOMLError) {
        var parser = TOMLParser(text: text)
        try parser.parseDocument(into: &self)
    }
}

/// A syntax error in a TOML document.
struct TOMLError: Error, Equatable {
    var line: Int
    var message: String
}

private struct TOMLParser {
    let bytes: [UInt8]
    var index = 0
    var line = 1
    /// Tables defined by a `[header]`, which may not be defined twice.
    var definedTables: Set<String> = []
    /// Tables that were defined inline or by a key value, which no header may extend.
    var closedTables: Set<String> = []
    /// How deep the arrays and inline tables being parsed are nested.
    var depth = 0

    /// The deepest nesting of arrays and inline tables, and the most parts a dotted key may
    /// have: far beyond any manifest, and far below what would exhaust a thread's stack.
    static let maxDepth = 64

    init(text: String) { bytes = Array(text.utf8) }

    var atEnd: Bool { index >= bytes.count }
    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    func error(_ message: String) -> TOMLError { TOMLError(line: line, message: message) }

    mutating func parseDocument(into document: inout TOMLDocument) throws(TOMLError) {
        var tablePath: [String] = []
        while true {
            skipWhitespaceAndComments(newlines: true)
            guard let byte = current else { return }
            if byte == UInt8(ascii: "[") {
                if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "[") {
                    throw error("arrays of tables ([[...]]) are not supported in manifests; use an array of inline tables")
                }
                index += 1
                skipWhitespace()
                tablePath = try parseKeyPath()
                skipWhitespace()
                try expect("]", "a table header ends with ']'")
                let joined = tablePath.joined(separator: ".")
                guard !definedTables.contains(joined), !closedTables.contains(joined) else {
                    throw error("table [\(joined)] is defined twice")
                }
                definedTables.insert(joined)
                try ensureTable(at: tablePath, in: &document.root)
                if document.lines[joined] == nil { document.lines[joined] = line }
                try expectLineEnd()
            } else {
                let keyLine = line
                let keyPath = try parseKeyPath()
                skipWhitespace()
                try expect("=", "a key is followed by '='")
                skipWhitespace()
                let value = try parseValue()
                let fullPath = tablePath + keyPath
                try insert(value, at: fullPath, in: &document.root)
                document.lines[fullPath.joined(separator: ".")] = keyLine
                if case .table = value { closedTables.insert(fullPath.joined(separator: ".")) }
                try expectLineEnd()
            }
        }
    }

    // Both walk down `path` with the child table taken out of its parent while it is
    // changed, so it is never copied: a document of N keys parses in O(N) inserts.

    mutating func ensureTable(at path: ArraySlice<String>, in table: inout [String: SettingValue]) throws(TOMLError) {
        guard let first = path.first else { return }
        var child: [String: SettingValue] = [:]
        switch table.removeValue(forKey: first) {
        case nil: break
        case .table(let existing): child = existing
        case .some(let other):
            table[first] = other
            throw error("'\(first)' is already \(other.typeNameWithArticle), not a table")
        }
        defer { table[first] = .table(child) }
        try ensureTable(at: path.dropFirst(), in: &child)
    }

    mutating func ensureTable(at path: [String], in table: inout [String: SettingValue]) throws(TOMLError) {
        try ensureTable(at: path[...], in: &table)
    }

    mutating func insert(_ value: SettingValue, at path: ArraySlice<String>, in table: inout [String: SettingValue]) throws(TOMLError) {
        let key = path[path.startIndex]
        if path.count == 1 {
            guard table[key] == nil else { throw error("key '\(key)' is defined twice") }
            table[key] = value
            return
        }
        var child: [String: SettingValue] = [:]
        switch table.removeValue(forKey: key) {
        case nil: break
        case .table(let existing): child = existing
        case .some(let other):
            table[key] = other
            throw error("'\(key)' is already \(other.typeNameWithArticle), not a table")
        }
        defer { table[key] = .table(child) }
        try insert(value, at: path.dropFirst(), in: &child)
    }

    mutating func insert(_ value: SettingValue, at path: [String], in table: inout [String: SettingValue]) throws(TOMLError) {
        try insert(value, at: path[...], in: &table)
    }

    mutating func skipWhitespace() {
        while let byte = current, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { index += 1 }
    }

    mutating func skipWhitespaceAndComments(newlines: Bool) {
        while let byte = current {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                index += 1
            } else if byte == UInt8(ascii: "\n") && newlines {
                index += 1
                line += 1
            } else if byte == UInt8(ascii: "#") {
                while let byte = current, byte != UInt8(ascii: "\n") { index += 1 }
            } else {
                return
            }
        }
    }

    mutating func expect(_ character: Character, _ explanation: String) throws(TOMLError) {
        guard current == character.asciiValue else {
            throw error("expected '\(character)' (\(explanation)), found \(describeCurrent())")
        }
        index += 1
    }

    mutating func expectLineEnd() throws(TOMLError) {
        skipWhitespaceAndComments(newlines: false)
        guard let byte = current else { return }
        guard byte == UInt8(ascii: "\n") else {
            throw error("unexpected \(describeCurrent()) after the value; put one key = value per line")
        }
        index += 1
        line += 1
    }

    func describeCurrent() -> String {
        guard let byte = current else { return "the end of the file" }
        if byte == UInt8(ascii: "\n") { return "the end of the line" }
        let scalar = Unicode.Scalar(byte)
        return byte >= 0x20 && byte < 0x7F ? "'\(Character(scalar))'" : "byte 0x\(String(byte, radix: 16))"
    }

    mutating func parseKeyPath() throws(TOMLError) -> [String] {
        var path = [try parseKey()]
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: ".") else { return path }
            index += 1
            skipWhitespace()
            path.append(try parseKey())
            guard path.count <= Self.maxDepth else {
                throw error("a key has more than \(Self.maxDepth) dotted parts; a manifest needs far fewer")
            }
        }
    }

    mutating func parseKey() throws(TOMLError) -> String {
        if current == UInt8(ascii: "\"") { return try parseBasicString() }
        if current == UInt8(ascii: "'") { return try parseLiteralString() }
        let start = index
        while let byte = current, isBareKeyByte(byte) { index += 1 }
        guard index > start else { throw error("expected a key, found \(describeCurrent())") }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    func isBareKeyByte(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }

    mutating func parseValue() throws(TOMLError) -> SettingValue {
        guard let byte = current else { throw error("expected a value, found the end of the file") }
        switch byte {
        case UInt8(ascii: "\""):
            if hasPrefix("\"\"\"") { return .string(try parseMultilineBasicString()) }
            return .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if hasPrefix("'''") { return .string(try parseMultilineLiteralString()) }
            return .string(try parseLiteralString())
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "{"): return try parseInlineTable()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            if hasPrefix("true") { index += 4; return .bool(true) }
            if hasPrefix("false") { index += 5; return .bool(false) }
            throw error("expected a value, found \(describeCurrent()); strings need quotes")
        case UInt8(ascii: "\n"):
            throw error("a key has no value; write key = value")
        default:
            return try parseNumber()
        }
    }

    func hasPrefix(_ prefix: String) -> Bool {
        let prefixBytes = Array(prefix.utf8)
        guard index + prefixBytes.count <= bytes.count else { return false }
        return Array(bytes[index..<index + prefixBytes.count]) == prefixBytes
    }

    mutating func parseNumber() throws(TOMLError) -> SettingValue {
        let start = index
        while let byte = current, !(byte == UInt8(ascii: ",") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}")
            || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n")
            || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "#"))
        {
            index += 1
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        guard !text.isEmpty else { throw error("expected a value, found \(describeCurrent())") }
        if text.count >= 10, text.dropFirst(4).first == "-", text.prefix(4).allSatisfy(\.isNumber) {
            throw error("'\(text)' looks like a date; dates are not supported in manifests, use a string")
        }
        let digits = String(text.filter { $0 != "_" })
        if text.contains("__") || text.hasPrefix("_") || text.hasSuffix("_") {
            throw error("'\(text)' is not a number: underscores go between digits")
        }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] where digits.hasPrefix(prefix) {
            guard let value = Int64(digits.dropFirst(2), radix: radix) else {
                throw error("'\(text)' is not a valid base-\(radix) integer or does not fit in 64 bits")
            }
            return .integer(value)
        }
        if let value = Int64(digits) {
            let unsigned = digits.hasPrefix("+") || digits.hasPrefix("-") ? String(digits.dropFirst()) : digits
            if unsigned.count > 1 && unsigned.hasPrefix("0") { throw error("'\(text)' has a leading zero, which TOML does not allow") }
            return .integer(value)
        }
        let unsignedDigits = digits.hasPrefix("+") || digits.hasPrefix("-") ? digits.dropFirst() : Substring(digits)
        if !unsignedDigits.isEmpty && unsignedDigits.allSatisfy(\.isNumber) {
            throw error("'\(text)' does not fit in a 64-bit integer")
        }
        switch digits {
        case "inf", "+inf": return .float(.infinity)
        case "-inf": return .float(-.infinity)
        case "nan", "+nan", "-nan": return .float(.nan)
        default: break
        }
        if digits.allSatisfy({ $0.isNumber || "+-.eE".contains($0) }), digits.contains(where: \.isNumber), let value = Double(digits) {
            return .float(value)
        }
        throw error("expected a value, found '\(text)'; strings need quotes")
    }

    mutating func parseBasicString() throws(TOMLError) -> String {
        index += 1  // opening quote
        var result: [UInt8] = []
        while true {
            guard let byte = current, byte != UInt8(ascii: "\n") else {
                throw error("a string is not closed on its line; end it with '\"'")
            }
            index += 1
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                try appendEscape(to: &result)
            } else {
                result.append(byte)
            }
        }
        return try decodeUTF8(result)
    }

    mutating func appendEscape(to result: inout [UInt8]) throws(TOMLError) {
        guard let escape = current else { throw error("a string ends in the middle of an escape") }
        index += 1
        switch escape {
        case UInt8(ascii: "n"): result.append(0x0A)
        case UInt8(ascii: "t"): result.append(0x09)
        case UInt8(ascii: "r"): result.append(0x0D)
        case UInt8(ascii: "b"): result.append(0x08)
        case UInt8(ascii: "f"): result.append(0x0C)
        case UInt8(ascii: "\""): result.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): result.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = escape == UInt8(ascii: "u") ? 4 : 8
            guard index + count <= bytes.count,
                let code = UInt32(String(decoding: bytes[index..<index + count], as: UTF8.self), radix: 16),
                let scalar = Unicode.Scalar(code)
            else { throw error("\\\(Character(Unicode.Scalar(escape))) needs \(count) hex digits naming a Unicode scalar") }
            index += count
            result.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            throw error("'\\\(Character(Unicode.Scalar(escape)))' is not a TOML escape; use \\\\ for a backslash")
        }
    }

    mutating func parseLiteralString() throws(TOMLError) -> String {
        index += 1
        let start = index
        while let byte = current, byte != UInt8(ascii: "'") {
            guard byte != UInt8(ascii: "\n") else { throw error("a string is not closed on its line; end it with \"'\"") }
            index += 1
        }
        guard current != nil else { throw error("a string is not closed; end it with \"'\"") }
        let text = try decodeUTF8(Array(bytes[start..<index]))
        index += 1
        return text
    }

    mutating func parseMultilineBasicString() throws(TOMLError) -> String {
        index += 3
        skipFirstNewline()
        var result: [UInt8] = []
        while !hasPrefix("\"\"\"") {
            guard let byte = current else { throw error("a multi-line string is not closed; end it with \"\"\"") }
            index += 1
            if byte == UInt8(ascii: "\n") { line += 1 }
            if byte == UInt8(ascii: "\\") {
                if let next = current, next == UInt8(ascii: "\n") || next == UInt8(ascii: " ") || next == UInt8(ascii: "\r") {
                    // A line-ending backslash trims the newline and the indentation after it.
                    while let space = current, space == UInt8(ascii: " ") || space == UInt8(ascii: "\n") || space == UInt8(ascii: "\t") || space == UInt8(ascii: "\r") {
                        if space == UInt8(ascii: "\n") { line += 1 }
                        index += 1
                    }
                } else {
                    try appendEscape(to: &result)
                }
            } else {
                result.append(byte)
            }
        }
        index += 3
        return try decodeUTF8(result)
    }

    mutating func parseMultilineLiteralString() throws(TOMLError) -> String {
        index += 3
        skipFirstNewline()
        let start = index
        while !hasPrefix("'''") {
            guard let byte = current else { throw error("a multi-line string is not closed; end it with '''") }
            if byte == UInt8(ascii: "\n") { line += 1 }
            index += 1
        }
        let text = try decodeUTF8(Array(bytes[start..<index]))
        index += 3
        return text
    }

    mutating func skipFirstNewline() {
        if current == UInt8(ascii: "\r") { index += 1 }
        if current == UInt8(ascii: "\n") {
            index += 1
            line += 1
        }
    }

    func decodeUTF8(_ bytes: [UInt8]) throws(TOMLError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
        return text
    }

    /// Counts one more level of nesting, refusing past ``maxDepth``.
    mutating func enterNesting() throws(TOMLError) {
        depth += 1
        guard depth <= Self.maxDepth else {
            throw error("arrays and inline tables are nested more than \(Self.maxDepth) deep; a manifest needs far fewer levels")
        }
    }

    mutating func parseArray() throws(TOMLError) -> SettingValue {
        try enterNesting()
        defer { depth -= 1 }
        index += 1
        var values: [SettingValue] = []
        while true {
            skipWhitespaceAndComments(newlines: true)
            if current == UInt8(ascii: "]") {
                index += 1
                return .array(values)
            }
            values.append(try parseValue())
            skipWhitespaceAndComments(newlines: true)
            if current == UInt8(ascii: ",") {
                index += 1
            } else if current != UInt8(ascii: "]") {
                throw error("expected ',' or ']' in an array, found \(describeCurrent())")
            }
        }
    }

    mutating func parseInlineTable() throws(TOMLError) -> SettingValue {
        try enterNesting()
        defer { depth -= 1 }
        index += 1
        var table: [String: SettingValue] = [:]
        skipWhitespace()
        if current == UInt8(ascii: "}") {
            index += 1
            return .table(table)
        }
        while true {
            skipWhitespace()
            let path = try parseKeyPath()
            skipWhitespace()
            try expect("=", "a key is followed by '='")
            skipWhitespace()
            try insert(try parseValue(), at: path, in: &table)
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                index += 1
                return .table(table)
            }
            try expect(",", "inline table entries are separated by ',' and the table ends with '}' on the same line")
        }
    }
}
