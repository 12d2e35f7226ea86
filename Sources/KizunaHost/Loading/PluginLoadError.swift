/// Why a plugin could not be loaded, with what to do about it.
public struct PluginLoadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of load failure, for code that handles them.
    public enum Code: String, Sendable, Hashable, Codable {
        case manifestInvalid, libraryMissing, libraryUnreadable, notASharedLibrary, checksumMismatch, dlopenFailed
        case entrySymbolMissing, badMagic, abiMismatch, sdkMismatch, compilerMismatch, duplicateSDK, kindMismatch
        case notAPlugin, nameClash, requirementMissing, notFound, hostShutDown, probeFailed
        case actionUnknown, actionArguments, actionSymbolMissing
    }

    /// What kind of failure this is.
    public var code: Code
    /// The plugin's name, when the manifest got that far.
    public var plugin: String?
    /// The file at fault (manifest or library); empty for errors about the host itself.
    public var file: String
    /// What is wrong and how to fix it.
    public var message: String

    public init(_ code: Code, plugin: String?, file: String, _ message: String) {
        self.code = code
        self.plugin = plugin
        self.file = file
        self.message = message
    }

    public var description: String {
        switch (plugin, file.isEmpty) {
        case (let plugin?, false): "plugin '\(plugin)' (\(file)): \(message)"
        case (let plugin?, true): "plugin '\(plugin)': \(message)"
        case (nil, false): "\(file): \(message)"
        case (nil, true): message
        }
    }
}
