import ArgumentParser
import Foundation
import KizunaSDK
import Synchronization

/// How `kizuna` prints the host's and the plugins' log: for people by default (one line,
/// `kizuna: [LEVEL: ]SOURCE: message key=value…`, warnings and worse only), or as one JSON
/// object per line when asked (`--log-format json`). Both go to stderr.
struct LogOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print more of the log: -v for info, -vv for debug, -vvv for trace.") var verbose: Int

    @Option(name: .long, help: "The least severe log lines printed: trace, debug, info, notice, warning (the default), error or critical.")
    var logLevel: LogLevel?

    @Option(name: .long, help: "text (for people, the default) or json (one object per line, for log collectors).") var logFormat: LogFormat = .text

    enum LogLevel: String, ExpressibleByArgument, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
        var level: Logger.Level { Logger.Level(rawValue: rawValue)! }
    }

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

    var level: Logger.Level {
        if let logLevel { return logLevel.level }
        switch verbose {
        case 0: return .warning
        case 1: return .info
        case 2: return .debug
        default: return .trace
        }
    }

    /// Sends every logger of this process, the plugins' too, to ``KizunaLogHandler``.
    /// Once per process; later calls change nothing.
    func bootstrap() {
        let level = level, format = logFormat
        LoggingBootstrap.once.withLock { done in
            guard !done else { return }
            done = true
            LoggingSystem.bootstrap { label in KizunaLogHandler(label: label, logLevel: level, format: format) }
        }
    }
}

private enum LoggingBootstrap {
    static let once = Mutex(false)
}

struct KizunaLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    let format: LogOptions.LogFormat
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, logLevel: Logger.Level, format: LogOptions.LogFormat) {
        self.label = label
        self.logLevel = logLevel
        self.format = format
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// "kizuna.plugin.file-transfer" → "file-transfer"; "kizuna.host" → "host".
    var source: String {
        if label.hasPrefix("kizuna.plugin.") { return String(label.dropFirst("kizuna.plugin.".count)) }
        if label.hasPrefix("kizuna.") { return String(label.dropFirst("kizuna.".count)) }
        return label
    }

    func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let line: String
        switch format {
        case .text:
            let level = [.info, .notice].contains(event.level) ? "" : "\(event.level): "
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            line = "kizuna: \(level)\(source): \(event.message)" + (fields.isEmpty ? "" : " (\(fields.joined(separator: ", ")))")
        case .json:
            var object: [String: String] = ["time": ISO8601DateFormatter().string(from: Date()), "level": event.level.rawValue, "source": source, "message": "\(event.message)"]
            for (key, value) in all where object[key] == nil { object[key] = "\(value)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            line = String(decoding: data, as: UTF8.self)
        }
        // One write per line, so lines from several threads never interleave.
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
