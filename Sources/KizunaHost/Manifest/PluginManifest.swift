import Foundation
import CoreFoundation
import Glibc
public import KizunaSDK

/// A plugin's manifest: the hand-edited TOML file that says what the plugin is, where its
/// library is, and what it provides and needs.
///
/// ```toml
/// schema = 1
/// name = "tcp-transport"
/// version = "1.0.0"
/// kind = "transport"
/// library = "libTCPTransport.so"
/// sha256 = "…"                   # optional pin, checked before the library is opened
/// description = "TCP on SwiftNIO"
/// license = "Apache-2.0"
/// authors = ["Kizuna team"]
/// provides = ["transport"]
/// requires = []
///
/// [settings]
/// port = 0
/// ```
public struct PluginManifest: Sendable, Hashable {
    /// The manifest format this host reads.
    public static let schemaVersion: Int64 = 1

    /// The manifest file.
    public var path: String
    /// The plugin's unique name: lowercase letters, digits and dashes.
    public var name: String
    /// The plugin's semantic version.
    public var version: String
    /// What kind of subsystem it is.
    public var kind: PluginKind
    /// The shared library, resolved against the manifest's folder.
    public var libraryPath: String
    /// `library` is a bare file name (no `/`): then it may also be found in the host's
    /// install directory (how the built-in manifests name their libraries). A path is
    /// only ever that path.
    public var libraryIsFileName: Bool
    /// The library's expected SHA-256, lowercase hex, if pinned.
    public var sha256: String?
    public var description: String?
    public var license: String?
    public var authors: [String]
    /// Services it offers (inbound connections for these are routed to it).
    public var provides: [String]
    /// Kinds of plugin that must be loaded before it (besides those its kind needs).
    public var requires: [PluginKind]
    /// The `[settings]` table, handed to the plugin.
    public var settings: PluginSettings
    /// The actions the plugin exports, by name (`[actions.NAME]` tables).
    public var actions: [String: PluginAction]

    /// Every kind this plugin needs loaded first.
    public var requiredKinds: [PluginKind] {
        var kinds = kind.requiredKinds
        for kind in requires where !kinds.contains(kind) { kinds.append(kind) }
        return kinds
    }

    /// The keys a manifest may have.
    static let knownKeys = [
        "schema", "name", "version", "kind", "library", "sha256", "description", "license", "authors", "provides",
        "requires", "settings", "actions",
    ]

    /// The keys an `[actions.NAME]` table may have.
    static let actionKeys = ["symbol", "parameters", "returns", "description"]

    /// Reads and checks the manifest at `path`.
    /// - Throws: ``ManifestError`` naming the file, the line where known, the field and the fix.
    public init(contentsOf path: String) throws(ManifestError) {
        let data = try Self.read(path)
        guard let text = String(data: data, encoding: .utf8) else {
            throw ManifestError(file: path, message: "the manifest is not UTF-8 text; save it as UTF-8")
        }
        try self.init(parsing: text, path: path)
    }

    /// The longest manifest read: far more than any manifest needs.
    public static let maxBytes = 1 << 20

    /// Reads the manifest at `path`: a regular file (checked on the opened descriptor, so a
    /// FIFO or a device is never read from) of at most ``maxBytes``.
    static func read(_ path: String) throws(ManifestError) -> Data {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let fix = code == ENOENT ? "check the path" : code == EACCES ? "make it readable by this user" : "check that it is a readable file"
            throw ManifestError(file: path, message: "cannot read the manifest (\(String(cString: strerror(code)))); \(fix)")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw ManifestError(file: path, message: "cannot read the manifest (\(String(cString: strerror(errno))))") }
        let type = status.st_mode & S_IFMT
        guard type == S_IFREG else {
            let what = type == S_IFDIR ? "a directory" : type == S_IFIFO ? "a FIFO" : type == S_IFCHR || type == S_IFBLK ? "a device" : type == S_IFSOCK ? "a socket" : "not a regular file"
            throw ManifestError(file: path, message: "the manifest is \(what); give the path of a .toml file")
        }
        guard status.st_size <= maxBytes else {
            throw ManifestError(file: path, message: "the manifest is \(status.st_size) bytes; the limit is \(maxBytes) (1 MiB); a manifest needs a few kilobytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var done = 0
        while done < bytes.count {
            let got = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else { break }
            done += got
        }
        return Data(bytes[..<done])
    }

    /// Checks manifest `text` as if it were read from `path`.
    public init(parsing text: String, path: String) throws(ManifestError) {
        let document: TOMLDocument
        do {
            document = try TOMLDocument(parsing: text)
        } catch {
            throw ManifestError(file: path, line: error.line, message: "\(error.message)")
        }
        let reader = FieldReader(document: document, path: path)
        // The schema first: a manifest for a newer Kizuna may have keys this host does
        // not know, and that is what the user needs to hear.
        let schema = try reader.integer("schema", fix: "add 'schema = \(Self.schemaVersion)' at the top")
        guard schema == Self.schemaVersion else {
            if schema > Self.schemaVersion {
                throw reader.error("schema", "is \(schema): this manifest is for a newer Kizuna, and this host reads schema \(Self.schemaVersion); upgrade Kizuna, or get a build of the plugin made for schema \(Self.schemaVersion)")
            }
            throw reader.error("schema", "is \(schema), but this host reads schema \(Self.schemaVersion); write the manifest for schema \(Self.schemaVersion)")
        }
        try reader.refuseUnknownKeys()
        self.path = path
        name = try reader.string("name", fix: "add name = \"your-plugin\"")
        guard Self.isValidName(name) else {
            throw reader.error("name", "'\(name)' is not a valid plugin name; use 1 to 63 lowercase letters, digits and dashes, starting with a letter")
        }
        version = try reader.string("version", fix: "add version = \"1.0.0\"")
        guard Self.isSemanticVersion(version) else {
            throw reader.error("version", "'\(version)' is not a semantic version (semver.org 2.0.0); write MAJOR.MINOR.PATCH such as \"1.0.0\", optionally with -PRERELEASE and +BUILD of ASCII letters, digits and '-' (\"1.0.0-beta.2+build.5\")")
        }
        let kindText = try reader.string("kind", fix: "add kind = \"discovery\" (or transport, file-transfer, streaming)")
        guard let kind = PluginKind(rawValue: kindText) else {
            throw reader.error("kind", "'\(kindText)' is not a plugin kind; use one of \(PluginKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.kind = kind
        let library = try reader.string("library", fix: "add library = \"libYourPlugin.so\", the file name of the plugin's shared library")
        guard !library.isEmpty else { throw reader.error("library", "is empty; give the file name of the plugin's shared library") }
        let folder = (path as NSString).deletingLastPathComponent
        libraryPath = library.hasPrefix("/") ? library : ((folder.isEmpty ? "." : folder) as NSString).appendingPathComponent(library)
        libraryIsFileName = !library.contains("/")
        sha256 = try reader.optionalString("sha256")
        if let sha256 {
            guard sha256.count == 64, sha256.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw reader.error("sha256", "'\(sha256)' is not a SHA-256; write 64 lowercase hex digits, as printed by `sha256sum \(library)`")
            }
        }
        description = try reader.optionalString("description")
        license = try reader.optionalString("license")
        authors = try reader.stringArray("authors")
        provides = try reader.stringArray("provides")
        requires = try reader.stringArray("requires").map { (text: String) throws(ManifestError) -> PluginKind in
            guard let kind = PluginKind(rawValue: text) else {
                throw reader.error("requires", "'\(text)' is not a plugin kind; list kinds from \(PluginKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return kind
        }
        settings = PluginSettings(try reader.table("settings"))
        actions = try reader.actions()
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.properties.isLowercase, first.isASCII, name.utf8.count <= 63 else { return false }
        return name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isLowercase || ("0"..."9").contains($0))) || $0 == "-" }
    }

    /// Semantic Versioning 2.0.0 exactly: MAJOR.MINOR.PATCH of ASCII digits without leading
    /// zeros, then an optional `-PRERELEASE` and `+BUILD`, each of dot-separated non-empty
    /// identifiers of ASCII letters, digits and '-' (numeric pre-release identifiers
    /// without leading zeros).
    static func isSemanticVersion(_ version: String) -> Bool {
        let bytes = Array(version.utf8)
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "-")
        }
        func isNumber(_ part: ArraySlice<UInt8>) -> Bool { !part.isEmpty && part.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        func identifiers(_ text: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] { text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) }
        let plus = bytes.firstIndex(of: UInt8(ascii: "+"))
        let beforeBuild = bytes[..<(plus ?? bytes.endIndex)]
        let dash = beforeBuild.firstIndex(of: UInt8(ascii: "-"))
        let core = identifiers(beforeBuild[..<(dash ?? beforeBuild.endIndex)])
        guard core.count == 3, core.allSatisfy({ isNumber($0) && ($0.count == 1 || $0.first != UInt8(ascii: "0")) }) else { return false }
        if let dash {
            let prerelease = identifiers(beforeBuild[(dash + 1)...])
            guard prerelease.allSatisfy({ !$0.isEmpty && $0.allSatisfy(isAlphanumeric) && (!isNumber($0) || $0.count == 1 || $0.first != UInt8(ascii: "0")) }) else { return false }
        }
        if let plus {
            guard identifiers(bytes[(plus + 1)...]).allSatisfy({ !$0.isEmpty && $0.allSatisfy(isAlphanumeric) }) else { return false }
        }
        return true
    }

    static func reason(_ error: any Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }
}

/// A manifest that cannot be used: which file, which line and field, what is wrong, and the fix.
public struct ManifestError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The manifest file.
    public var file: String
    /// The line the problem is on, where known.
    public var line: Int?
    /// The field at fault, where there is one.
    public var field: String?
    /// What is wrong and how to fix it.
    public var message: String

    public init(file: String, line: Int? = nil, field: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.field = field
        self.message = message
    }

    /// `FILE:LINE`, or the file alone when the line is not known.
    public var location: String { line.map { "\(file):\($0)" } ?? file }

    /// What is wrong with which field, without the location.
    public var detail: String { field.map { "field '\($0)' \(message)" } ?? message }

    public var description: String { "\(location): \(detail)" }
}

/// Reads typed fields from a parsed manifest, with errors that point at them.
private struct FieldReader {
    let document: TOMLDocument
    let path: String

    func error(_ field: String, _ message: String) -> ManifestError {
        ManifestError(file: path, line: document.lines[field], field: field, message: message)
    }

    func refuseUnknownKeys() throws(ManifestError) {
        for key in document.root.keys.sorted() where !PluginManifest.knownKeys.contains(key) {
            let suggestion = PluginManifest.knownKeys.min { distance($0, key) < distance($1, key) }
            let hint = suggestion.map { distance($0, key) <= 2 ? "; did you mean '\($0)'?" : "" } ?? ""
            throw ManifestError(
                file: path, line: document.lines[key], field: key,
                message: "is not a manifest key\(hint.isEmpty ? "." : hint) Known keys: \(PluginManifest.knownKeys.joined(separator: ", ")); put plugin-specific values under [settings]")
        }
    }

    func integer(_ key: String, fix: String) throws(ManifestError) -> Int64 {
        switch document.root[key] {
        case .integer(let value): return value
        case nil: throw ManifestError(file: path, field: key, message: "is missing; \(fix)")
        case .some(let other): throw error(key, "must be an integer, not \(other.typeNameWithArticle); \(fix)")
        }
    }

    func string(_ key: String, fix: String) throws(ManifestError) -> String {
        switch document.root[key] {
        case .string(let value): return value
        case nil: throw ManifestError(file: path, field: key, message: "is missing; \(fix)")
        case .some(let other): throw error(key, "must be a string, not \(other.typeNameWithArticle); \(fix)")
        }
    }

    func optionalString(_ key: String) throws(ManifestError) -> String? {
        switch document.root[key] {
        case .string(let value): return value
        case nil: return nil
        case .some(let other): throw error(key, "must be a string, not \(other.typeNameWithArticle); put the value in quotes")
        }
    }

    func stringArray(_ key: String) throws(ManifestError) -> [String] {
        switch document.root[key] {
        case nil: return []
        case .array(let values):
            return try values.map { (value: SettingValue) throws(ManifestError) -> String in
                guard case .string(let text) = value else {
                    throw error(key, "must be an array of strings, but holds \(value.typeNameWithArticle); write [\"a\", \"b\"]")
                }
                return text
            }
        case .some(let other): throw error(key, "must be an array of strings, not \(other.typeNameWithArticle); write [\"a\", \"b\"]")
        }
    }

    func table(_ key: String) throws(ManifestError) -> [String: SettingValue] {
        switch document.root[key] {
        case nil: return [:]
        case .table(let table): return table
        case .some(let other): throw error(key, "must be a table, not \(other.typeNameWithArticle); write [settings] on its own line and the values below it")
        }
    }

    /// Reads the `[actions.NAME]` tables.
    func actions() throws(ManifestError) -> [String: PluginAction] {
        var actions: [String: PluginAction] = [:]
        for (name, value) in try table("actions").sorted(by: { $0.key < $1.key }) {
            let field = "actions.\(name)"
            func fail(_ key: String?, _ message: String) -> ManifestError {
                let path = key.map { "\(field).\($0)" } ?? field
                return ManifestError(file: self.path, line: document.lines[path] ?? document.lines[field], field: path, message: message)
            }
            guard PluginManifest.isValidName(name) else {
                throw fail(nil, "'\(name)' is not a valid action name; use lowercase letters, digits and dashes, starting with a letter")
            }
            guard case .table(let entry) = value else {
                throw fail(nil, "must be a table; write [actions.\(name)] with symbol, parameters and returns below it")
            }
            for key in entry.keys.sorted() where !PluginManifest.actionKeys.contains(key) {
                throw fail(key, "is not an action key; use \(PluginManifest.actionKeys.joined(separator: ", "))")
            }
            guard case .string(let symbol)? = entry["symbol"] else {
                throw fail("symbol", "is missing or not a string; give the exported C symbol, as in symbol = \"my_plugin_\(name.replacingOccurrences(of: "-", with: "_"))\"")
            }
            guard let first = symbol.unicodeScalars.first, first == "_" || first.properties.isAlphabetic, first.isASCII,
                symbol.unicodeScalars.allSatisfy({ $0.isASCII && ($0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0)) })
            else {
                throw fail("symbol", "'\(symbol)' is not a C identifier; export the function with @_cdecl(\"name\") and give that name")
            }
            let known = ActionType.allCases.filter { $0 != .void }.map(\.rawValue).joined(separator: ", ")
            var parameters: [ActionType] = []
            switch entry["parameters"] {
            case nil: break
            case .array(let values):
                for value in values {
                    guard case .string(let text) = value, let type = ActionType(rawValue: text), type != .void else {
                        throw fail("parameters", "holds \(value); parameter types are \(known)")
                    }
                    parameters.append(type)
                }
            case .some(let other):
                throw fail("parameters", "must be an array of type names, not \(other.typeNameWithArticle); write parameters = [\"int32\", \"string\"]")
            }
            var returns = ActionType.void
            switch entry["returns"] {
            case nil: break
            case .string(let text):
                guard let type = ActionType(rawValue: text) else {
                    throw fail("returns", "'\(text)' is not a result type; use \(known) or void")
                }
                returns = type
            case .some(let other):
                throw fail("returns", "must be a type name, not \(other.typeNameWithArticle)")
            }
            var description: String?
            if case .string(let text)? = entry["description"] { description = text }
            actions[name] = PluginAction(name: name, symbol: symbol, parameters: parameters, returns: returns, description: description)
        }
        return actions
    }

    func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
