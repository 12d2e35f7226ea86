import ArgumentParser
import Foundation
import KizunaHost
import KizunaSDK

struct PluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin", abstract: "Write plugins: generate a new plugin package, install a build.", subcommands: [New.self, Install.self])

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put a built plugin (a manifest and the library beside it) into a plugins directory, made if missing.",
            discussion: "The library must match the manifest's sha256 pin. Each file is written under a temporary name and renamed, the library first, so a host never reads a half-copied plugin.")
        @Argument(help: "The plugin's manifest, such as dist/lan-beacon.toml.") var manifest: String
        @Option(name: .long, help: "The plugins directory (default: ~/.kizuna/plugins).") var pluginsDir: String?

        func run() throws {
            let directory = pluginsDir ?? HostConfiguration.defaultPluginsDirectory
            let installed: PluginInstall.Installed
            do { installed = try PluginInstall.install(manifest: manifest, into: directory) } catch { throw CommandFailure("\(error)") }
            let plugin = installed.manifest
            print("installed \(plugin.name) (\(plugin.kind.rawValue) \(plugin.version)) in \(directory): \((installed.libraryPath as NSString).lastPathComponent), \((installed.manifestPath as NSString).lastPathComponent)")
            print("a host on \(directory) loads it at start; one already running: kizuna plugins load \(plugin.name)")
        }
    }

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a ready plugin package: Package.swift, source, manifest, a conformance test and build.sh.")

        @Argument(help: "The plugin's name: lowercase letters, digits and dashes, such as lan-beacon.") var name: String
        @Option(name: .customLong("kind"), help: "discovery, transport, file-transfer or streaming.") var kindName: String
        @Option(name: .long, help: "The folder to create (default: ./NAME).") var output: String?
        @Option(name: .long, help: "The Kizuna plugin-sdk package to build against (default: found from this kizuna's location).") var sdk: String?

        var kind: PluginKind { PluginKind(rawValue: kindName)! }

        func validate() throws {
            guard PluginKind(rawValue: kindName) != nil else {
                throw ValidationError("'\(kindName)' is not a plugin kind; use \(PluginKind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard name.range(of: #"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"#, options: .regularExpression) != nil else {
                throw ValidationError("'\(name)' is not a plugin name; use lowercase letters, digits and single dashes, starting with a letter (such as lan-beacon)")
            }
        }

        func run() throws {
            let folder = URL(fileURLWithPath: output ?? name).standardizedFileURL.path
            guard !FileManager.default.fileExists(atPath: folder) else {
                throw CommandFailure("\(folder) already exists; choose another name or --output")
            }
            let sdkPath = try sdk.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? Self.findSDK()
            guard FileManager.default.fileExists(atPath: sdkPath + "/Package.swift"), FileManager.default.fileExists(atPath: sdkPath + "/TestKit/Package.swift") else {
                throw CommandFailure("\(sdkPath) is not the Kizuna plugin-sdk package (it needs Package.swift and TestKit/); pass --sdk PATH")
            }
            let type = name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
            let kindCase: String =
                switch kind {
                case .discovery: "discovery"
                case .transport: "transport"
                case .fileTransfer: "fileTransfer"
                case .streaming: "streaming"
                }
            let source: String =
                switch kind {
                case .discovery: KindTemplates.discovery
                case .transport: KindTemplates.transport
                case .fileTransfer: KindTemplates.fileTransfer
                case .streaming: KindTemplates.streaming
                }
            let needsTransport = kind == .fileTransfer || kind == .streaming
            let settings: String =
                switch kind {
                case .discovery: "# Peers to report, as name@host:port.\npeers = [\"aiko@127.0.0.1:7000\"]\n"
                case .fileTransfer: "# Where received files go.\nreceive-dir = \"~/.kizuna/received\"\n"
                default: ""
                }
            let testSettings = kind == .discovery ? #"PluginSettings(["peers": .array([.string("aiko@127.0.0.1:7000")])])"# : "PluginSettings()"
            let replacements = [
                "__NAME__": name, "__TYPE__": type, "__KIND__": kind.rawValue, "__KINDCASE__": kindCase, "__SDK__": sdkPath,
                "__REQUIRES__": needsTransport ? "provides = [\"\(kind.rawValue)\"]\nrequires = [\"transport\"]\n" : "provides = [\"\(kind.rawValue)\"]\n",
                "__SETTINGS__": settings, "__TESTSETTINGS__": testSettings,
                "__TESTTRANSPORT__": needsTransport ? ", transport: .inProcess" : "",
            ]
            func fill(_ template: String) -> String {
                replacements.reduce(template) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
            }
            let files: [(String, String)] = [
                ("Package.swift", PackageTemplates.packageSwift),
                ("Sources/\(type)/\(type).swift", source),
                ("Tests/\(type)Tests/ConformanceTests.swift", PackageTemplates.conformanceTest),
                ("\(name).toml", PackageTemplates.manifest),
                ("build.sh", PackageTemplates.buildScript),
                ("README.md", PackageTemplates.readme),
                (".gitignore", PackageTemplates.gitignore),
            ]
            for (path, template) in files {
                let full = folder + "/" + path
                try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try fill(template).write(toFile: full, atomically: true, encoding: .utf8)
            }
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder + "/build.sh")
            print("created \(folder): a \(kind) plugin '\(name)' (type \(type)) against \(sdkPath)")
            let kizuna = Self.invocation
            print("next: cd \(folder) && swift test && ./build.sh && \(kizuna) conformance dist/\(name).toml && \(kizuna) plugin install dist/\(name).toml")
        }

        /// How to run this `kizuna`: `kizuna` when that name on PATH is this binary, else
        /// its full path (a build in a checkout is on no PATH).
        static var invocation: String {
            let me = CommandLine.executablePath
            for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
                let candidate = URL(fileURLWithPath: "\(folder)/kizuna").resolvingSymlinksInPath().path
                if candidate == URL(fileURLWithPath: me).resolvingSymlinksInPath().path { return "kizuna" }
                if FileManager.default.isExecutableFile(atPath: "\(folder)/kizuna") { break }  // another kizuna comes first
            }
            return me
        }

        /// The plugin-sdk folder of the Kizuna checkout this binary was built in (it lives
        /// in CHECKOUT/.build/CONFIGURATION/).
        static func findSDK() throws -> String {
            var folder = URL(fileURLWithPath: CommandLine.executablePath).deletingLastPathComponent()
            for _ in 0..<6 {
                let candidate = folder.appendingPathComponent("plugin-sdk").path
                if FileManager.default.fileExists(atPath: candidate + "/Package.swift") { return candidate }
                folder.deleteLastPathComponent()
            }
            throw CommandFailure("cannot find the Kizuna plugin-sdk package near \(CommandLine.executablePath); pass --sdk PATH")
        }
    }
}
