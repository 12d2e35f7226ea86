// Host benchmarks of shared/bench/WORKLOADS.md, each printed as a JSON line beside the
// reference it is compared with, measured in the same run:
//   plugin_load      manifest on disk → running plugin, per plugin, over 50 distinct files
//                    (each library probed in a child process first, as a host does cold)
//   plugin_load_dlopen_reference   a bare dlopen of 50 other distinct copies of the same library
//   plugin_load_remembered   the same 50 manifests loaded by a new host process that
//                    remembers the probes (no child, no copy), beside a bare dlopen of 50
//                    more copies in that process
//   plugin_call      one call into a loaded plugin through its SDK protocol
//   plugin_call_compiled_reference the same call on the same type compiled into the host
//   host_start_stop  start a host with the four test plugins, then a graceful shutdown
// Usage: kizuna-host-bench [ROUNDS] [WORKLOAD...]   (run the release build: swift build -c release)
import Foundation
import Glibc
import KizunaHost
import KizunaSDK

let clock = ContinuousClock()
let buildDirectory: String = (((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]) as NSString).deletingLastPathComponent

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func report(_ workload: String, _ n: Int, _ elapsed: Duration, _ extra: String = "") {
    let total = seconds(elapsed)
    print(String(format: "{\"workload\":\"%@\",\"n\":%d,\"seconds\":%.6f,\"per_second\":%.0f%@}", workload, n, total, Double(n) / total, extra))
}

func library(_ name: String) -> String { buildDirectory + "/lib\(name).so" }

/// `count` distinct copies of a library (bytes appended past its ELF contents), so each is
/// a file dlopen has not seen.
func distinctCopies(of source: String, count: Int, in directory: String, tag: String) throws -> [String] {
    let bytes = try Data(contentsOf: URL(fileURLWithPath: source))
    return try (0..<count).map { index in
        let path = "\(directory)/lib\(tag)\(index).so"
        try (bytes + Data("\(tag)-\(index)-\(UUID())".utf8)).write(to: URL(fileURLWithPath: path))
        return path
    }
}

func makeHost(pluginsDirectory: String) throws -> KizunaHost {
    try KizunaHost(configuration: HostConfiguration(
        runtime: RuntimeConfiguration(workerThreads: 2, metricsInterval: nil), pluginsDirectory: pluginsDirectory, searchPath: [],
        controlSocketPath: pluginsDirectory + "/control.sock", stopGracePeriod: .seconds(2), stateDirectory: pluginsDirectory + "/state"))
}

func pluginLoad(count: Int) async throws {
    let directory = NSTemporaryDirectory() + "kizuna-bench-\(UUID())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let source = library("FixtureDiscovery")
    let forHost = try distinctCopies(of: source, count: count, in: directory, tag: "host")
    let forDlopen = try distinctCopies(of: source, count: count, in: directory, tag: "bare")
    var manifests: [String] = []
    for (index, path) in forHost.enumerated() {
        let manifest = "\(directory)/plugin\(index).toml"
        try "schema = 1\nname = \"plugin\(index)\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"\((path as NSString).lastPathComponent)\"\n"
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        manifests.append(manifest)
    }
    let host = try makeHost(pluginsDirectory: directory)

    // Alternate the two, half each at a time, so drift on a shared machine hits both alike.
    var hostTime = Duration.zero, bareTime = Duration.zero
    for half in [0..<count / 2, count / 2..<count] {
        var start = clock.now
        for index in half { _ = try await host.load(manifests[index]) }
        hostTime += clock.now - start
        start = clock.now
        for index in half {
            guard dlopen(forDlopen[index], RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) != nil else { fatalError("dlopen failed") }
        }
        bareTime += clock.now - start
    }
    report("plugin_load", count, hostTime, String(format: ",\"ratio_to_dlopen\":%.2f", seconds(hostTime) / seconds(bareTime)))
    report("plugin_load_dlopen_reference", count, bareTime)
    await host.shutdown()

    // A new process (nothing dlopen'd yet) with the same state: the probes are remembered.
    _ = try distinctCopies(of: source, count: count, in: directory, tag: "again")
    fflush(nil)  // this process's lines first
    let child = Process()
    child.executableURL = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
    child.arguments = ["--remembered", directory, "\(count)"]
    try child.run()
    child.waitUntilExit()
    precondition(child.terminationStatus == 0, "the remembered-load process failed")
    try? FileManager.default.removeItem(atPath: directory)
}

/// The child of `pluginLoad`: loads the manifests in `directory` with their probes
/// remembered, alternating with bare dlopens of the "again" copies.
func rememberedLoad(in directory: String, count: Int) async throws {
    let host = try makeHost(pluginsDirectory: directory)
    var hostTime = Duration.zero, bareTime = Duration.zero
    for half in [0..<count / 2, count / 2..<count] {
        var start = clock.now
        for index in half { _ = try await host.load("\(directory)/plugin\(index).toml") }
        hostTime += clock.now - start
        start = clock.now
        for index in half {
            guard dlopen("\(directory)/libagain\(index).so", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) != nil else { fatalError("dlopen failed") }
        }
        bareTime += clock.now - start
    }
    report("plugin_load_remembered", count, hostTime, String(format: ",\"ratio_to_dlopen\":%.2f", seconds(hostTime) / seconds(bareTime)))
    await host.shutdown()
}

/// The same type as the FixtureDiscovery plugin, compiled into this executable.
final class CompiledDiscovery: DiscoveryPlugin {
    private let found = ThreadSafe<[Peer]>([])
    func run(context: PluginContext) async throws { await context.shutdown.wait() }
    func currentPeers() async -> [Peer] { (try? await found.read { $0 }) ?? [] }
}

/// Hidden from the optimizer, so calls go through the SDK protocol as they do for the
/// plugin rather than being devirtualized and inlined.
@inline(never) @_optimize(none)
func makeCompiledDiscovery() -> any DiscoveryPlugin { CompiledDiscovery() }

func pluginCall(calls: Int) async throws {
    let directory = NSTemporaryDirectory() + "kizuna-bench-\(UUID())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try "schema = 1\nname = \"finder\"\nversion = \"1.0.0\"\nkind = \"discovery\"\nlibrary = \"\(library("FixtureDiscovery"))\"\n"
        .write(toFile: "\(directory)/finder.toml", atomically: true, encoding: .utf8)
    let host = try makeHost(pluginsDirectory: directory)
    _ = try await host.load("finder")
    guard case .discovery(let loaded)? = await host.subsystem(.discovery) else { fatalError("no discovery plugin") }
    let compiled = makeCompiledDiscovery()

    func time(_ plugin: any DiscoveryPlugin) async -> Duration {
        let start = clock.now
        var total = 0
        for _ in 0..<calls { total &+= await plugin.currentPeers().count }
        precondition(total == 0)
        return clock.now - start
    }
    var pluginTime = Duration.zero, compiledTime = Duration.zero
    for _ in 0..<4 {  // alternate, a quarter of the calls each time
        pluginTime += await time(loaded)
        compiledTime += await time(compiled)
    }
    report("plugin_call", calls * 4, pluginTime, String(format: ",\"ratio_to_compiled\":%.2f", seconds(pluginTime) / seconds(compiledTime)))
    report("plugin_call_compiled_reference", calls * 4, compiledTime)
    await host.shutdown()
}

func hostStartStop(cycles: Int) async throws {
    let directory = NSTemporaryDirectory() + "kizuna-bench-\(UUID())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let plugins: [(String, String, String)] = [
        ("memory", "transport", "FixtureTransport"), ("finder", "discovery", "FixtureDiscovery"),
        ("files", "file-transfer", "FixtureFileTransfer"), ("frames", "streaming", "FixtureStreaming"),
    ]
    for (name, kind, fixture) in plugins {
        try "schema = 1\nname = \"\(name)\"\nversion = \"1.0.0\"\nkind = \"\(kind)\"\nlibrary = \"\(library(fixture))\"\n"
            .write(toFile: "\(directory)/\(name).toml", atomically: true, encoding: .utf8)
    }
    let start = clock.now
    for _ in 0..<cycles {
        let host = try makeHost(pluginsDirectory: directory)
        let failures = await host.loadAll()
        precondition(failures.isEmpty, "\(failures)")
        await host.shutdown()
    }
    report("host_start_stop", cycles, clock.now - start)
}

// Logging off: the figures are the host's work, not writes to a terminal.
LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }

let arguments = CommandLine.arguments.dropFirst()
if arguments.first == "--remembered", arguments.count == 3 {
    try await rememberedLoad(in: arguments[arguments.startIndex + 1], count: Int(arguments[arguments.startIndex + 2])!)
    exit(0)
}
let rounds = arguments.first.flatMap(Int.init) ?? 1
let selected = Set(arguments.filter { Int($0) == nil })
for _ in 0..<rounds {
    if selected.isEmpty || selected.contains("plugin_load") { try await pluginLoad(count: 50) }
    if selected.isEmpty || selected.contains("plugin_call") { try await pluginCall(calls: 250_000) }
    if selected.isEmpty || selected.contains("host_start_stop") { try await hostStartStop(cycles: 20) }
}
