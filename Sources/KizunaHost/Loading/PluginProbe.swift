import CKizunaHost
import Foundation
import Glibc
public import KizunaSDK

/// What probing a library found: it opens cleanly, or why it must not be loaded.
enum ProbeVerdict: Sendable, Hashable, Codable {
    case passed
    case refused(code: PluginLoadError.Code, message: String)
}

/// Opens plugin libraries in a child process before the host maps them, as GStreamer's
/// plugin scanner does: a library constructor that calls `abort()` or `exit()`, never
/// returns, or an entry symbol that crashes, ends or stalls the child, not the host.
///
/// The child is `kizuna probe-plugin LIBRARY` (a copy of the running `kizuna`), which opens
/// the library with the host's flags, runs every check of ``PluginLibrary`` and makes the
/// plugin object once, then writes one JSON report on descriptor 3.
public struct PluginProbe: Sendable {
    /// The `kizuna` executable to run.
    let executable: String
    /// How long the child may take.
    let timeout: Duration

    /// The report the child writes.
    struct Report: Codable {
        var code: PluginLoadError.Code?
        var message: String?
    }

    /// Probes `library` (the host's private copy) on a thread of its own, so neither the
    /// host's actor nor its workers wait on the child.
    func probe(_ library: String) async -> ProbeVerdict {
        await onOwnThread(named: "kizuna-probe") { self.run(library) }
    }

    private func run(_ library: String) -> ProbeVerdict {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let how = "look into it with `kizuna conformance MANIFEST`, or open it under a debugger (`gdb --args \(executable) probe-plugin \(library)`); the host did not load it"
        func refused(_ message: String) -> ProbeVerdict { .refused(code: .probeFailed, message: "\(message); \(how)") }

        var reportPipe: [Int32] = [-1, -1]
        var outputPipe: [Int32] = [-1, -1]
        guard kizuna_pipe_cloexec(&reportPipe) == 0 else { return refused("could not be probed (pipe: \(String(cString: strerror(errno))))") }
        guard kizuna_pipe_cloexec(&outputPipe) == 0 else {
            close(reportPipe[0])
            close(reportPipe[1])
            return refused("could not be probed (pipe: \(String(cString: strerror(errno))))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
        posix_spawn_file_actions_adddup2(&actions, reportPipe[1], 3)
        // A new process group: a library that forks leaves nothing behind when the group
        // is killed.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attributes, 0)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var unblocked = sigset_t()
        sigemptyset(&unblocked)
        posix_spawnattr_setsigmask(&attributes, &unblocked)

        let arguments = [executable, "probe-plugin", library]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        // No Swift backtrace: the child's crash is reported by its signal, and its last
        // line of output is the library's own.
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, &argv, &envp)
        close(reportPipe[1])
        close(outputPipe[1])
        defer {
            close(reportPipe[0])
            close(outputPipe[0])
        }
        guard spawned == 0 else {
            return refused("could not be probed: \(executable) did not start (\(String(cString: strerror(spawned))))")
        }

        let processFD = kizuna_pidfd_open(pid)
        defer { if processFD >= 0 { close(processFD) } }
        var report: [UInt8] = []
        var output: [UInt8] = []
        var open = [reportPipe[0], outputPipe[0]]
        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        var ended = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !ended || !open.isEmpty {
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else {
                timedOut = true
                break
            }
            var watched = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if !ended, processFD >= 0 { watched.append(pollfd(fd: processFD, events: Int16(POLLIN), revents: 0)) }
            // Once the child has ended, take only what its pipes already hold: something it
            // forked may keep them open.
            let milliseconds = ended ? 0 : Int32(min(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1, 1000))
            // Without a pidfd, the child's end is noticed when it closes its pipes.
            if watched.isEmpty { break }
            let ready = poll(&watched, nfds_t(watched.count), milliseconds)
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 || (ready == 0 && !ended) else { break }
            for entry in watched where entry.revents != 0 {
                if entry.fd == processFD {
                    ended = true
                    continue
                }
                let count = read(entry.fd, &buffer, buffer.count)
                if count > 0 {
                    if entry.fd == reportPipe[0] {
                        if report.count < 1 << 20 { report += buffer[0 ..< count] }
                    } else {
                        output += buffer[0 ..< count]
                        if output.count > 8192 { output.removeFirst(output.count - 4096) }
                    }
                } else if count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == entry.fd }
                }
            }
            if processFD < 0, open.isEmpty { ended = true }
        }
        if timedOut { kill(-pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        // Whatever the library started in the child's process group ends with it.
        kill(-pid, SIGKILL)

        let said = Self.lastLine(of: output)
        let saying = said.map { " (it printed: \"\($0)\")" } ?? ""
        if timedOut {
            return refused("did not return within \(Self.format(seconds)) s of being opened: a library constructor or its entry symbol never returns\(saying)")
        }
        let signalled = status & 0x7F
        if signalled != 0 {
            return refused("crashed when it was opened, with signal \(signalled) (\(Self.signalName(signalled)))\(saying)")
        }
        let exitStatus = (status >> 8) & 0xFF
        guard let parsed = try? JSONDecoder().decode(Report.self, from: Data(report)) else {
            return refused("ended the process (exit status \(exitStatus)) when it was opened, before it could be checked: a library constructor or its entry symbol calls exit()\(saying)")
        }
        if let code = parsed.code { return .refused(code: code, message: parsed.message ?? "refused") }
        return .passed
    }

    /// What the child does: opens `library` and reports on descriptor 3. Returns the exit
    /// status (0 whenever a report was written).
    public static func runChild(library: String) -> Int32 {
        var report = Report()
        do throws(PluginLoadError) {
            let (_, descriptor) = try PluginLibrary.openImage(library, plugin: nil, file: library)
            if descriptor.makePlugin() == nil {
                throw PluginLoadError(.notAPlugin, plugin: nil, file: library, "its factory made no plugin; export it with exportPlugin { YourPlugin() }")
            }
        } catch {
            report.code = error.code
            report.message = error.message
        }
        guard let data = try? JSONEncoder().encode(report) else { return 1 }
        let written = data.withUnsafeBytes { write(3, $0.baseAddress, $0.count) }
        return written == data.count ? 0 : 1
    }

    static func lastLine(of output: [UInt8]) -> String? {
        let text = String(decoding: output, as: UTF8.self)
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let last = lines.last else { return nil }
        let escaped = String(last.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        return escaped.count > 300 ? String(escaped.prefix(300)) + "…" : escaped
    }

    static func signalName(_ number: Int32) -> String {
        switch number {
        case SIGSEGV: "SIGSEGV, a bad memory access"
        case SIGBUS: "SIGBUS, a bad memory access"
        case SIGABRT: "SIGABRT, abort() or a Swift runtime trap"
        case SIGILL: "SIGILL, an illegal instruction or a Swift trap"
        case SIGTRAP: "SIGTRAP, a Swift trap"
        case SIGFPE: "SIGFPE, an arithmetic error"
        case SIGKILL: "SIGKILL"
        case SIGTERM: "SIGTERM"
        default: String(cString: strsignal(number))
        }
    }

    static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(format: "%.1f", seconds)
    }
}

/// What the host remembers about plugin libraries between starts, in
/// `STATE/plugin-probes.json`: which copy each library file (by device, inode, size and
/// modification time) was, and what probing each copy found. A file that changes gets a
/// new identity, so it is copied and probed again; a result is kept only for the host
/// build that found it (its executable and SDK library).
struct PluginLoadMemory: Sendable {
    struct File: Codable, Hashable {
        var source: String
        var identity: FileIdentity
        var sha256: String
    }

    struct Contents: Codable {
        var host: String
        var files: [File]
        var verdicts: [String: ProbeVerdict]
    }

    let path: String
    private(set) var contents: Contents
    /// The most files remembered; the oldest are forgotten first.
    static let maxFiles = 512

    /// Reads what was remembered; anything unreadable, or remembered by another host build,
    /// counts as nothing.
    init(stateDirectory: String, probe: String?) {
        path = stateDirectory + "/plugin-probes.json"
        let host = Self.hostKey(probe: probe)
        if let data = FileManager.default.contents(atPath: path), let stored = try? JSONDecoder().decode(Contents.self, from: data) {
            contents = Contents(host: host, files: stored.files, verdicts: stored.host == host ? stored.verdicts : [:])
        } else {
            contents = Contents(host: host, files: [], verdicts: [:])
        }
    }

    func digest(of identity: FileIdentity) -> String? {
        contents.files.last { $0.identity == identity }?.sha256
    }

    func verdict(for digest: String) -> ProbeVerdict? { contents.verdicts[digest] }

    var digests: Set<String> { Set(contents.files.map(\.sha256)).union(contents.verdicts.keys) }

    mutating func remember(_ image: PluginImage, verdict: ProbeVerdict?) {
        contents.files.removeAll { $0.source == image.source || $0.identity == image.sourceIdentity }
        contents.files.append(File(source: image.source, identity: image.sourceIdentity, sha256: image.sha256))
        if contents.files.count > Self.maxFiles { contents.files.removeFirst(contents.files.count - Self.maxFiles) }
        if let verdict { contents.verdicts[image.sha256] = verdict }
        let kept = Set(contents.files.map(\.sha256))
        contents.verdicts = contents.verdicts.filter { kept.contains($0.key) }
    }

    mutating func forgetVerdicts() { contents.verdicts.removeAll() }

    /// Writes the file atomically (a temporary file renamed over it), owner-only.
    func save() {
        guard let data = try? JSONEncoder().encode(contents) else { return }
        let temporary = "\(path).\(getpid())-\(UInt32.random(in: 0 ... .max))"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else { return }
        if rename(temporary, path) != 0 { unlink(temporary) }
    }

    /// Which host build this is: the probe's executable and the SDK library, by file
    /// identity.
    static func hostKey(probe: String?) -> String {
        func identity(_ path: String?) -> String {
            guard let path, let file = FileIdentity(path: path) else { return "?" }
            return "\(file.device):\(file.inode):\(file.size):\(file.modifiedSeconds).\(file.modifiedNanoseconds)"
        }
        let sdk = kizuna_image_containing(unsafeBitCast(PluginContext.self as Any.Type, to: UnsafeRawPointer.self)).map { String(cString: $0) }
        return "sdk \(SDKInfo.version) \(identity(sdk)); probe \(identity(probe))"
    }
}

/// Runs blocking work (file reads, waiting on a child) on a thread of its own, so it holds
/// up neither the host's actor nor a runtime worker (of which there may be two).
func onOwnThread<T: Sendable, E: Error>(named name: String, _ work: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
    let result: Result<T, E> = await withCheckedContinuation { continuation in
        let thread = Thread {
            do throws(E) {
                continuation.resume(returning: .success(try work()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
        thread.name = name
        thread.start()
    }
    return try result.get()
}
