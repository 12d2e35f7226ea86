import KizunaSDK

/// A parsed TOML document: nested tables of ``SettingValue``s, plus the line each key was
/// defined on, so that errors about a key can point at it.
///
/// Manifests use TOML 1.0 without dates and arrays of tables (both refused with an error
/// that says so): tables and dotted tables, dotted keys, basic and literal strings (one-line
/// and multi-line), integers (decimal, hex, octal, binary), floats, booleans, arrays and
/// inline tables. Whatever else TOML 1.0 refuses, this refuses: control characters in
/// strings and comments, lone carriage returns, malformed numbers, inline tables extended
/// after they were written, and tables defined twice, whether by headers or dotted keys
/// (the rules are those of TOML 1.0 §Table and §Inline Table; a differential test against
/// Python's `tomllib` holds it to them). The parser is linear in its input, and nesting is
/// bounded (``TOMLParser/maxDepth``) so that no document can exhaust the stack.
struct TOMLDocument {
    var root: [String: SettingValue] = [:]
    /// The line (from 1) each key path was defined on, keyed by its dotted path.
    var lines: [String: Int] = [:]

    /// Parses `text`.
    /// - Throws: ``TOMLError`` naming the line, what was wrong and how to fix it.
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
    /// Tables that a `[header]` defined, or dotted keys in an earlier section: no header may
    /// define them again and no dotted key may add to them.
    var explicitTables: Set<[String]> = []
    /// Of those, the ones dotted keys defined (for the message).
    var dottedTables: Set<[String]> = []
    /// Tables dotted keys of the current section defined; they become explicit at the next
    /// header, so keys of the same section may still add to them.
    var pendingTables: Set<[String]> = []
    /// Inline tables and arrays, which are complete as written: nothing below them may be
    /// defined later.
    var frozen: Set<[String]> = []
    /// How deep the arrays and inline tables being parsed are nested.
    var depth = 0

    /// The deepest nesting of arrays and inline tables, and the most parts a dotted key may
    /// have: far beyond any manifest, and far below what would exhaust a thread's stack.
    static let maxDepth = 64

    init(text: String) { bytes = Array(text.utf8) }

    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    func error(_ message: String) -> TOMLError { TOMLError(line: line, message: message) }

    static func dotted(_ path: [String]) -> String { path.joined(separator: ".") }

    mutating func parseDocument(into document: inout TOMLDocument) throws(TOMLError) {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            throw error("the file starts with a byte-order mark (U+FEFF), which TOML does not allow; save it as UTF-8 without a BOM")
        }
        var tablePath: [String] = []
        while true {
            try skipWhitespaceAndComments(newlines: true)
            guard let byte = current else { return }
            if byte == UInt8(ascii: "[") {
                if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "[") {
                    throw error("arrays of tables ([[...]]) are not supported in manifests; use an array of inline tables")
                }
                index += 1
                skipWhitespace()
                let headerLine = line
                tablePath = try parseKeyPath()
                skipWhitespace()
                try expect("]", "a table header ends with ']'")
                explicitTables.formUnion(pendingTables)
                dottedTables.formUnion(pendingTables)
                pendingTables.removeAll()
                let name = Self.dotted(tablePath)
                if let frozenAt = frozenPrefix(of: tablePath) {
                    throw error("[\(name)] adds to '\(Self.dotted(frozenAt))', which is \(describeFrozen(frozenAt, in: document)) written in full on line \(document.lines[Self.dotted(frozenAt)] ?? 0); an inline table or array cannot be extended later: write '\(Self.dotted(frozenAt))' as a [\(Self.dotted(frozenAt))] section instead")
                }
                if explicitTables.contains(tablePath) {
                    let first = document.lines[name].map { " (first on line \($0))" } ?? ""
                    if dottedTables.contains(tablePath) {
                        throw error("table [\(name)] was already defined by dotted keys such as \(name).key = …\(first); define its keys in one place")
                    }
                    throw error("table [\(name)] is defined twice\(first); merge the two sections into one")
                }
                explicitTables.insert(tablePath)
                try ensureTable(at: tablePath, in: &document.root)
                if document.lines[name] == nil { document.lines[name] = headerLine }
                for end in 1 ..< max(tablePath.count, 1) where document.lines[Self.dotted(Array(tablePath[..<end]))] == nil {
                    document.lines[Self.dotted(Array(tablePath[..<end]))] = headerLine
                }
                try expectLineEnd()
            } else {
                let keyLine = line
                let keyPath = try parseKeyPath()
                skipWhitespace()
                try expect("=", "a key is followed by '='")
                skipWhitespace()
                let value = try parseValue()
                let fullPath = tablePath + keyPath
                for end in 1 ..< keyPath.count {
                    let table = tablePath + keyPath[..<end]
                    if explicitTables.contains(table) {
                        let name = Self.dotted(table)
                        throw error("'\(Self.dotted(keyPath))' adds to table '\(name)', which is already defined\(document.lines[name].map { " on line \($0)" } ?? ""); add the key in that table's section instead")
                    }
                    pendingTables.insert(table)
                    if document.lines[Self.dotted(table)] == nil { document.lines[Self.dotted(table)] = keyLine }
                }
                if let frozenAt = frozenPrefix(of: Array(fullPath.dropLast())) {
                    throw error("'\(Self.dotted(keyPath))' adds to '\(Self.dotted(frozenAt))', which is \(describeFrozen(frozenAt, in: document)) written in full on line \(document.lines[Self.dotted(frozenAt)] ?? 0); an inline table cannot be extended later: put the key inside its braces")
                }
                try insert(value, at: fullPath, in: &document.root, lines: document.lines)
                document.lines[Self.dotted(fullPath)] = keyLine
                switch value {
                case .table, .array: frozen.insert(fullPath)
                default: break
                }
                try expectLineEnd()
            }
        }
    }

    /// The shortest prefix of `path` that is an inline table or array, if any.
    func frozenPrefix(of path: [String]) -> [String]? {
        guard !frozen.isEmpty, !path.isEmpty else { return nil }
        for end in 1 ... path.count where frozen.contains(Array(path[..<end])) { return Array(path[..<end]) }
        return nil
    }

    func describeFrozen(_ path: [String], in document: TOMLDocument) -> String {
        var table = document.root
        for key in path.dropLast() {
            guard case .table(let child) = table[key] else { return "a value" }
            table = child
        }
        if case .array = table[path[path.count - 1]] { return "an array" }
        return "an inline table"
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
            throw error("'\(first)' is already \(other.typeNameWithArticle), not a table; give the table another name")
        }
        defer { table[first] = .table(child) }
        try ensureTable(at: path.dropFirst(), in: &child)
    }

    mutating func ensureTable(at path: [String], in table: inout [String: SettingValue]) throws(TOMLError) {
        try ensureTable(at: path[...], in: &table)
    }

    mutating func insert(_ value: SettingValue, at path: ArraySlice<String>, in table: inout [String: SettingValue], lines: [String: Int], prefix: [String] = []) throws(TOMLError) {
        let key = path[path.startIndex]
        if path.count == 1 {
            guard table[key] == nil else {
                let first = lines[Self.dotted(prefix + [key])].map { " (first on line \($0))" } ?? ""
                throw error("key '\(Self.dotted(prefix + [key]))' is defined twice\(first); keep one of them")
            }
            table[key] = value
            return
        }
        var child: [String: SettingValue] = [:]
        switch table.removeValue(forKey: key) {
        case nil: break
        case .table(let existing): child = existing
        case .some(let other):
            table[key] = other
            throw error("'\(Self.dotted(prefix + [key]))' is already \(other.typeNameWithArticle), not a table; a dotted key cannot go inside it")
        }
        defer { table[key] = .table(child) }
        try insert(value, at: path.dropFirst(), in: &child, lines: lines, prefix: prefix + [key])
    }

    mutating func insert(_ value: SettingValue, at path: [String], in table: inout [String: SettingValue], lines: [String: Int] = [:]) throws(TOMLError) {
        try insert(value, at: path[...], in: &table, lines: lines)
    }

    mutating func skipWhitespace() {
        while let byte = current, byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { index += 1 }
    }

    /// At a carriage return: it must start a CRLF line end.
    func checkCarriageReturn() throws(TOMLError) {
        guard index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\n") else {
            throw error("a carriage return (CR) not followed by a line feed; TOML lines end with LF or CRLF: save the file with Unix (LF) or Windows (CRLF) line endings")
        }
    }

    /// Whether `byte` is a control character TOML allows nowhere outside a newline (tab
    /// is allowed).
    static func isForbiddenControl(_ byte: UInt8) -> Bool {
        (byte < 0x20 && byte != UInt8(ascii: "\t")) || byte == 0x7F
    }

    static func controlName(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "control character U+\(String(repeating: "0", count: 4 - hex.count))\(hex)"
    }

    mutating func skipWhitespaceAndComments(newlines: Bool) throws(TOMLError) {
        while let byte = current {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") {
                index += 1
            } else if byte == UInt8(ascii: "\r") && newlines {
                try checkCarriageReturn()
                index += 1
            } else if byte == UInt8(ascii: "\n") && newlines {
                index += 1
                line += 1
            } else if byte == UInt8(ascii: "#") {
                index += 1
                while let byte = current, byte != UInt8(ascii: "\n") {
                    if byte == UInt8(ascii: "\r") {
                        try checkCarriageReturn()
                        break
                    }
                    if Self.isForbiddenControl(byte) { throw error("a comment contains \(Self.controlName(byte)), which TOML does not allow; remove it") }
                    index += 1
                }
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
        try skipWhitespaceAndComments(newlines: false)
        guard var byte = current else { return }
        if byte == UInt8(ascii: "\r") {
            try checkCarriageReturn()
            index += 1
            byte = UInt8(ascii: "\n")
        }
        guard byte == UInt8(ascii: "\n") else {
            throw error("unexpected \(describeCurrent()) after the value; put one key = value per line, and quote strings")
        }
        index += 1
        line += 1
    }

    func describeCurrent() -> String {
        guard let byte = current else { return "the end of the file" }
        if byte == UInt8(ascii: "\n") { return "the end of the line" }
        if byte == UInt8(ascii: "\r") { return "a carriage return" }
        if byte < 0x20 || byte == 0x7F { return "\(Self.controlName(byte)), which TOML allows only inside strings as an escape such as \\u0000" }
        if byte >= 0x80 {
            // The whole character, not a byte of it.
            var end = index + 1
            while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
            return "'\(String(decoding: bytes[index ..< end], as: UTF8.self))'"
        }
        return "'\(Character(Unicode.Scalar(byte)))'"
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
        if current == UInt8(ascii: "\"") {
            if hasPrefix("\"\"\"") { throw error("a key cannot be a multi-line string; use \"key\"") }
            return try parseBasicString()
        }
        if current == UInt8(ascii: "'") {
            if hasPrefix("'''") { throw error("a key cannot be a multi-line string; use 'key'") }
            return try parseLiteralString()
        }
        let start = index
        while let byte = current, isBareKeyByte(byte) { index += 1 }
        guard index > start else {
            throw error("expected a key, found \(describeCurrent()); bare keys are letters, digits, '_' and '-', anything else goes in quotes")
        }
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
            if hasPrefix("\"\"\"") { return .string(try parseMultilineString(quote: UInt8(ascii: "\""))) }
            return .string(try parseBasicString())
        case UInt8(ascii: "'"):
            if hasPrefix("'''") { return .string(try parseMultilineString(quote: UInt8(ascii: "'"))) }
            return .string(try parseLiteralString())
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "{"): return try parseInlineTable()
        case UInt8(ascii: "t") where hasPrefix("true"):
            index += 4
            return .bool(true)
        case UInt8(ascii: "f") where hasPrefix("false"):
            index += 5
            return .bool(false)
        case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
            throw error("a key has no value; write key = value")
        default:
            return try parseNumber()
        }
    }

    func hasPrefix(_ prefix: String) -> Bool {
        let prefixBytes = Array(prefix.utf8)
        guard index + prefixBytes.count <= bytes.count else { return false }
        return bytes[index ..< index + prefixBytes.count].elementsEqual(prefixBytes)
    }

    // MARK: Numbers

    mutating func parseNumber() throws(TOMLError) -> SettingValue {
        let start = index
        while let byte = current, !(byte == UInt8(ascii: ",") || byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}")
            || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n")
            || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "#"))
        {
            index += 1
        }
        let text = Array(bytes[start..<index])
        let shown = String(decoding: text, as: UTF8.self)
        guard !text.isEmpty else { throw error("expected a value, found \(describeCurrent())") }
        let isDigit = { (at: Int) in at < text.count && text[at] >= 0x30 && text[at] <= 0x39 }
        if (text.count >= 10 && (0 ..< 4).allSatisfy(isDigit) && text[4] == UInt8(ascii: "-")) || (text.count >= 5 && isDigit(0) && isDigit(1) && text[2] == UInt8(ascii: ":")) {
            throw error("'\(shown)' looks like a date or time; dates are not supported in manifests: write it as a string")
        }
        guard text.allSatisfy({ $0 < 0x80 && !Self.isForbiddenControl($0) }) else {
            throw error("expected a value, found '\(shown)'; strings need quotes")
        }
        if let value = try Self.integer(text, shown: shown, error: error) { return .integer(value) }
        if let value = try Self.float(text, shown: shown, error: error) { return .float(value) }
        throw error("expected a value, found '\(shown)'; strings need quotes")
    }

    static func isDigit(_ byte: UInt8, radix: Int) -> Bool {
        switch radix {
        case 2: byte == 0x30 || byte == 0x31
        case 8: byte >= 0x30 && byte <= 0x37
        case 16: (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
        default: byte >= 0x30 && byte <= 0x39
        }
    }

    /// Digits of `radix` with single underscores between them, or nil.
    static func digits(_ text: ArraySlice<UInt8>, radix: Int) -> [UInt8]? {
        guard let first = text.first, let last = text.last, isDigit(first, radix: radix), isDigit(last, radix: radix) else { return nil }
        var result: [UInt8] = []
        var previousUnderscore = false
        for byte in text {
            if byte == UInt8(ascii: "_") {
                if previousUnderscore { return nil }
                previousUnderscore = true
            } else if isDigit(byte, radix: radix) {
                previousUnderscore = false
                result.append(byte)
            } else {
                return nil
            }
        }
        return result
    }

    /// A TOML integer, nil if `text` is not one; throws if it is one that does not fit.
    static func integer(_ text: [UInt8], shown: String, error: (String) -> TOMLError) throws(TOMLError) -> Int64? {
        let underscores = "; underscores go only between digits"
        if text.count > 2, text[0] == UInt8(ascii: "0"), let radix = [UInt8(ascii: "x"): 16, UInt8(ascii: "o"): 8, UInt8(ascii: "b"): 2][text[1]] {
            guard let digits = digits(text[2...], radix: radix) else {
                throw error("'\(shown)' is not a base-\(radix) integer: after '0\(Character(Unicode.Scalar(text[1])))' come only base-\(radix) digits, with no sign\(underscores)")
            }
            guard let value = Int64(String(decoding: digits, as: UTF8.self), radix: radix) else {
                throw error("'\(shown)' does not fit in a 64-bit integer")
            }
            return value
        }
        var body = text[...]
        let negative = body.first == UInt8(ascii: "-")
        if body.first == UInt8(ascii: "-") || body.first == UInt8(ascii: "+") { body = body.dropFirst() }
        guard let digits = digits(body, radix: 10) else { return nil }
        if digits.count > 1 && digits[0] == UInt8(ascii: "0") {
            throw error("'\(shown)' has a leading zero, which TOML does not allow; write it without the zero")
        }
        guard let value = Int64((negative ? "-" : "") + String(decoding: digits, as: UTF8.self)) else {
            throw error("'\(shown)' does not fit in a 64-bit integer")
        }
        return value
    }

    /// A TOML float, nil if `text` is not one.
    static func float(_ text: [UInt8], shown: String, error: (String) -> TOMLError) throws(TOMLError) -> Double? {
        var body = text[...]
        let sign: String = body.first == UInt8(ascii: "-") ? "-" : ""
        if body.first == UInt8(ascii: "-") || body.first == UInt8(ascii: "+") { body = body.dropFirst() }
        if body.elementsEqual("inf".utf8) { return sign == "-" ? -.infinity : .infinity }
        if body.elementsEqual("nan".utf8) { return .nan }
        let exponentAt = body.firstIndex { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
        let mantissa = body[..<(exponentAt ?? body.endIndex)]
        let pointAt = mantissa.firstIndex(of: UInt8(ascii: "."))
        guard pointAt != nil || exponentAt != nil else { return nil }
        let malformed = "'\(shown)' is not a TOML float: write digits on both sides of the point (0.5, not .5 or 5.), an exponent with digits (1e6), and no leading zero"
        guard let whole = digits(mantissa[..<(pointAt ?? mantissa.endIndex)], radix: 10) else { throw error(malformed) }
        if whole.count > 1 && whole[0] == UInt8(ascii: "0") { throw error(malformed) }
        var number = sign + String(decoding: whole, as: UTF8.self)
        if let pointAt {
            guard let fraction = digits(mantissa[(pointAt + 1)...], radix: 10) else { throw error(malformed) }
            number += "." + String(decoding: fraction, as: UTF8.self)
        }
        if let exponentAt {
            var exponent = body[(exponentAt + 1)...]
            var exponentSign = ""
            if exponent.first == UInt8(ascii: "-") || exponent.first == UInt8(ascii: "+") {
                exponentSign = exponent.first == UInt8(ascii: "-") ? "-" : ""
                exponent = exponent.dropFirst()
            }
            guard let digits = digits(exponent, radix: 10) else { throw error(malformed) }
            number += "e" + exponentSign + String(decoding: digits, as: UTF8.self)
        }
        guard let value = Double(number) else { throw error(malformed) }
        return value
    }

    // MARK: Strings

    mutating func parseBasicString() throws(TOMLError) -> String {
        index += 1  // opening quote
        var result: [UInt8] = []
        while true {
            guard let byte = current, byte != UInt8(ascii: "\n") else {
                throw error("a string is not closed on its line; end it with '\"'")
            }
            if Self.isForbiddenControl(byte) {
                throw error("a string contains \(Self.controlName(byte)); write it as an escape such as \\u\(Self.controlName(byte).suffix(4))")
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
        guard let escape = current, escape != UInt8(ascii: "\n") else { throw error("a string ends in the middle of an escape; write \\\\ for a backslash") }
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
            let name = escape == UInt8(ascii: "u") ? "u" : "U"
            guard index + count <= bytes.count, bytes[index ..< index + count].allSatisfy({ Self.isDigit($0, radix: 16) }),
                let code = UInt32(String(decoding: bytes[index..<index + count], as: UTF8.self), radix: 16),
                let scalar = Unicode.Scalar(code)
            else { throw error("\\\(name) needs exactly \(count) hex digits naming a Unicode scalar value (not a surrogate), such as \\\(name)\(String(repeating: "0", count: count - 2))e9") }
            index += count
            result.append(contentsOf: Array(String(Character(scalar)).utf8))
        default:
            let shown = escape < 0x80 && !Self.isForbiddenControl(escape) ? String(Character(Unicode.Scalar(escape))) : "?"
            throw error("'\\\(shown)' is not a TOML escape; write \\\\ for a backslash (or use a 'literal string', where backslashes are plain)")
        }
    }

    mutating func parseLiteralString() throws(TOMLError) -> String {
        index += 1
        let start = index
        while let byte = current, byte != UInt8(ascii: "'") {
            guard byte != UInt8(ascii: "\n") else { throw error("a string is not closed on its line; end it with \"'\"") }
            if Self.isForbiddenControl(byte) {
                throw error("a literal string contains \(Self.controlName(byte)); use a \"basic string\" with an escape such as \\u\(Self.controlName(byte).suffix(4)) instead")
            }
            index += 1
        }
        guard current != nil else { throw error("a string is not closed; end it with \"'\"") }
        let text = try decodeUTF8(Array(bytes[start..<index]))
        index += 1
        return text
    }

    /// A `"""` or `'''` string. It may hold newlines (LF or CRLF, the one right after the
    /// opening quotes dropped) and up to two quotes of its kind in a row, also just before
    /// the closing three; a basic one takes escapes and line-ending backslashes.
    mutating func parseMultilineString(quote: UInt8) throws(TOMLError) -> String {
        let basic = quote == UInt8(ascii: "\"")
        let delimiter = basic ? "\"\"\"" : "'''"
        index += 3
        if current == UInt8(ascii: "\r") { try checkCarriageReturn(); index += 1 }
        if current == UInt8(ascii: "\n") {
            index += 1
            line += 1
        }
        var result: [UInt8] = []
        while true {
            guard let byte = current else { throw error("a multi-line string is not closed; end it with \(delimiter)") }
            if byte == quote && hasPrefix(delimiter) {
                var run = 3
                while index + run < bytes.count, bytes[index + run] == quote { run += 1 }
                guard run <= 5 else { throw error("a multi-line string is followed by \(run - 3) more quotes than it can end with; escape the quotes inside it") }
                result += [UInt8](repeating: quote, count: run - 3)
                index += run
                return try decodeUTF8(result)
            }
            index += 1
            switch byte {
            case UInt8(ascii: "\n"):
                line += 1
                result.append(byte)
            case UInt8(ascii: "\r"):
                // CRLF is read as LF, as tomllib does and the spec allows.
                index -= 1
                try checkCarriageReturn()
                index += 1
            case UInt8(ascii: "\\") where basic:
                var look = index
                while look < bytes.count, bytes[look] == UInt8(ascii: " ") || bytes[look] == UInt8(ascii: "\t") { look += 1 }
                let endsLine = look < bytes.count && (bytes[look] == UInt8(ascii: "\n") || (bytes[look] == UInt8(ascii: "\r") && look + 1 < bytes.count && bytes[look + 1] == UInt8(ascii: "\n")))
                if endsLine {
                    // A line-ending backslash trims the newline and the whitespace after it.
                    index = look
                    while let space = current, space == UInt8(ascii: " ") || space == UInt8(ascii: "\t") || space == UInt8(ascii: "\n") || space == UInt8(ascii: "\r") {
                        if space == UInt8(ascii: "\r") { try checkCarriageReturn() }
                        if space == UInt8(ascii: "\n") { line += 1 }
                        index += 1
                    }
                } else if look > index {
                    throw error("a backslash followed by spaces must end its line; remove the spaces after it, or write \\\\ for a backslash")
                } else {
                    try appendEscape(to: &result)
                }
            default:
                if Self.isForbiddenControl(byte) {
                    throw error("a multi-line string contains \(Self.controlName(byte)); \(basic ? "write it as an escape such as \\u\(Self.controlName(byte).suffix(4))" : "use a \"\"\"basic string\"\"\" with an escape instead")")
                }
                result.append(byte)
            }
        }
    }

    func decodeUTF8(_ bytes: [UInt8]) throws(TOMLError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw error("a string is not valid UTF-8; save the file as UTF-8") }
        return text
    }

    // MARK: Arrays and inline tables

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
            try skipWhitespaceAndComments(newlines: true)
            if current == UInt8(ascii: "]") {
                index += 1
                return .array(values)
            }
            values.append(try parseValue())
            try skipWhitespaceAndComments(newlines: true)
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
        // Within the braces, as in a document: a table or array value is complete, so no
        // later dotted key may add to it.
        var complete: Set<[String]> = []
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
            let value = try parseValue()
            for end in 1 ..< max(path.count, 1) where complete.contains(Array(path[..<end])) {
                throw error("'\(Self.dotted(path))' adds to '\(Self.dotted(Array(path[..<end])))', which is already complete in this inline table; put the key inside that value")
            }
            try insert(value, at: path, in: &table)
            switch value {
            case .table, .array: complete.insert(path)
            default: break
            }
            skipWhitespace()
            if current == UInt8(ascii: "}") {
                index += 1
                return .table(table)
            }
            if current == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                if current == UInt8(ascii: "}") { throw error("an inline table ends with a ',' before '}', which TOML 1.0 does not allow; remove the last comma") }
                continue
            }
            throw error("expected ',' or '}' in an inline table, found \(describeCurrent()); an inline table stays on one line, its entries separated by ','")
        }
    }
}
