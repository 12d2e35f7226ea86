import ArgumentParser
import Foundation
import KizunaHost
import KizunaPluginTestKit
import KizunaSDK

struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run the conformance suite against a plugin build; each check runs in a child process with a time limit.")

    @Argument(help: "The plugin: a manifest path, or a name found in the search directories.") var plugin: String
    @Option(name: .long, help: "The plugins directory to search (default: ~/.kizuna/plugins).") var pluginsDir: String?
    @Option(name: .long, help: "The transport to run file-transfer, streaming and discovery plugins over: a name or a manifest path (default: tcp-transport, from the plugin's folder, the search directories, or the manifests that came with this kizuna).") var transport: String?
    @Flag(name: .long, help: "Exit 0 even when checks were skipped (by default a skipped check fails the run: the suite did not check what it skipped).") var allowSkipped = false
    @Flag(name: .long, help: "List the checks for this plugin and exit.") var list = false
    @Option(name: .long, parsing: .singleValue, help: "Run only these checks: an id, a group such as lifecycle, or a pattern such as 'transport.*'. Repeatable.") var include: [String] = []
    @Option(name: .long, parsing: .singleValue, help: "Skip these checks (same forms as --include). Repeatable.") var exclude: [String] = []
    @Option(name: .long, help: "Seconds each check may take before it is stopped and reported timed out.") var timeout: Double = 90
    @Flag(name: .long, help: "Print the results as JSON for CI.") var json = false

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0") }
    }

    func run() throws {
        let suite = try ConformanceSuite(plugin, transportName: transport, configuration: HostConfiguration(pluginsDirectory: pluginsDir))
        let selected = suite.checks.filter {
            (include.isEmpty || ConformanceSuite.matches($0.id, include)) && !ConformanceSuite.matches($0.id, exclude)
        }
        if list {
            if json { return print(try encodeJSON(selected)) }
            return printTable(["CHECK", "WHAT IT CHECKS"], selected.map { [$0.id, $0.summary] })
        }
        guard !selected.isEmpty else { throw CommandFailure("no check matches --include/--exclude; `kizuna conformance \(plugin) --list` shows them") }
        if !json { printError("conformance of \(suite.manifest.name) (\(suite.manifest.kind)) from \(suite.manifest.path), \(selected.count) check\(selected.count == 1 ? "" : "s")") }
        var results: [CheckResult] = []
        let showRunning = !json && isatty(1) == 1
        for check in selected {
            // A check can take a while: say which one runs, then overwrite the line.
            if showRunning { FileHandle.standardOutput.write(Data("… \(check.id)\r".utf8)) }
            let result = runChild(check.id, suite: suite)
            if showRunning { FileHandle.standardOutput.write(Data("\u{1B}[K".utf8)) }
            // A reason already given for an earlier skip is not repeated.
            let repeated = result.status == .skipped && results.contains { $0.status == .skipped && $0.message == result.message }
            results.append(result)
            if !json { writeLine(format(result, repeated: repeated)) }
        }
        let counts = CheckStatus.allCases.map { status in (status, results.filter { $0.status == status }.count) }.filter { $0.1 > 0 }
        let skipped = results.filter { $0.status == .skipped }
        if json {
            print(try encodeJSON(Report(plugin: suite.manifest.name, kind: suite.manifest.kind, results: results)))
        } else {
            writeLine(counts.map { "\($0.1) \($0.0.rawValue)" }.joined(separator: ", "))
        }
        if results.contains(where: { !$0.status.isSuccess }) { throw ExitCode(1) }
        if !skipped.isEmpty, !allowSkipped {
            let needsTransport = skipped.contains { $0.message.contains("transport") }
            printError(
                "kizuna: \(skipped.count) of \(results.count) checks were skipped, so the plugin is not shown to conform"
                    + (needsTransport ? "; give a transport to run them over with --transport NAME_OR_MANIFEST (such as a checkout's manifests/tcp-transport.toml)" : "")
                    + "; --allow-skipped accepts a partial run")
            throw ExitCode(1)
        }
    }

    struct Report: Codable {
        var plugin: String
        var kind: PluginKind
        var results: [CheckResult]
    }

    private func format(_ result: CheckResult, repeated: Bool = false) -> String {
        let status = result.status.rawValue.uppercased().padding(toLength: 9, withPad: " ", startingAt: 0)
        let message = repeated ? ": (the same reason)" : result.message.isEmpty ? "" : ": \(result.message)"
        return "\(status) \(result.id) (\(String(format: "%.1f", result.seconds)) s)\(message)"
    }

    /// Runs one check in a child `kizuna conformance-check`, killing it at the time limit.
    private func runChild(_ id: String, suite: ConformanceSuite) -> CheckResult {
        let started = Date()
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.executablePath)
        child.arguments = ["conformance-check", suite.manifest.path, "--check", id, "--timeout", String(timeout)]
            + (suite.transport.map { ["--transport", $0.path] } ?? [])
        // A crash is reported from the runtime's message; the backtrace would only slow it.
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        child.environment = environment
        let output = Pipe(), errors = Pipe()
        child.standardOutput = output
        child.standardError = errors
        do {
            try child.run()
        } catch {
            return CheckResult(id: id, status: .crashed, message: "cannot start a child process: \(error)", seconds: 0)
        }
        let timedOut = OnceFlag()
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout + 5) {
            if child.isRunning {
                timedOut.set()
                kill(child.processIdentifier, SIGKILL)
            }
        }
        // Read stderr concurrently so a chatty child never blocks on a full pipe.
        let stderrText = Box()
        let reader = Thread { stderrText.value = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        reader.start()
        let stdout = output.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        let seconds = Date().timeIntervalSince(started)
        if timedOut.isSet {
            return CheckResult(id: id, status: .timedOut, message: "the check did not finish within \(Int(timeout)) s and was killed", seconds: seconds)
        }
        if child.terminationReason == .uncaughtSignal {
            let lines = stderrText.value.split(separator: "\n")
            let last = (lines.first { $0.contains("Fatal error") || $0.contains("fatal error") } ?? lines.last { !$0.isEmpty }).map { ": \($0)" } ?? ""
            return CheckResult(id: id, status: .crashed, message: "the process died of signal \(child.terminationStatus) (\(signalName(child.terminationStatus)))\(last)", seconds: seconds)
        }
        let lines = String(decoding: stdout, as: UTF8.self).split(separator: "\n")
        guard let line = lines.last, var result = try? JSONDecoder().decode(CheckResult.self, from: Data(line.utf8)) else {
            let last = stderrText.value.split(separator: "\n").last { !$0.isEmpty }.map(String.init) ?? "no output"
            return CheckResult(id: id, status: .crashed, message: "the process exited with status \(child.terminationStatus) without a result: \(last)", seconds: seconds)
        }
        result.seconds = seconds
        return result
    }
}

/// `kizuna conformance-check MANIFEST --check ID`: one check, in this process, printed as
/// a JSON line. `kizuna conformance` runs it as a child.
struct ConformanceCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "conformance-check", abstract: "Run one conformance check in this process (used by `kizuna conformance`).", shouldDisplay: false)
    @Argument var manifest: String
    @Option(name: .long) var check: String
    @Option(name: .long) var transport: String?
    @Option(name: .long) var timeout: Double = 90

    func run() async throws {
        let suite = try ConformanceSuite(manifest, transportName: transport)
        let result = await suite.runHere(check, timeLimit: .milliseconds(Int64(timeout * 1000)))
        writeLine(try encodeJSON(result, pretty: false))
    }
}

private final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

private final class Box: @unchecked Sendable {
    var value = ""
}

private func signalName(_ number: Int32) -> String {
    switch number {
    case SIGABRT: "SIGABRT"
    case SIGSEGV: "SIGSEGV"
    case SIGILL: "SIGILL (a Swift runtime trap)"
    case SIGTRAP: "SIGTRAP (a Swift runtime trap)"
    case SIGBUS: "SIGBUS"
    case SIGKILL: "SIGKILL"
    case SIGFPE: "SIGFPE"
    default: "signal \(number)"
    }
}
