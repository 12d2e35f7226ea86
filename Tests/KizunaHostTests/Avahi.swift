import Foundation
import Glibc

/// Avahi, the mDNS implementation of most Linux desktops, for interoperability tests:
/// `avahi-daemon` instances in network namespaces, each with a private D-Bus (its socket
/// in the test's folder, so nothing of the machine's is used) and a /run/avahi-daemon of
/// its own. The Debian packages are installed on first use where missing
/// (``DebianPackages``), so no Avahi of the machine's own runs.
final class Avahi: @unchecked Sendable {
    static let installed: Result<Void, HostFailure> = {
        if FileManager.default.isExecutableFile(atPath: "/usr/sbin/avahi-daemon"), FileManager.default.isExecutableFile(atPath: "/usr/bin/avahi-browse") {
            return .success(())
        }
        DebianPackages.install(["avahi-daemon", "avahi-utils", "dbus"])
        return FileManager.default.isExecutableFile(atPath: "/usr/sbin/avahi-daemon")
            ? .success(()) : .failure(HostFailure("avahi-daemon is missing and apt-get install avahi-daemon avahi-utils dbus did not install it"))
    }()

    let work: String
    /// Spawned with posix_spawn and reaped here, not with Foundation's Process: once an
    /// avahi-daemon started by Process runs, Process stops noticing that other children
    /// exit (seen with swift-corelibs-foundation 6.3), and every later wait would hang.
    private var processes: [pid_t] = []

    /// Daemons will keep their files in `work` (a folder of the test's).
    init(work: String) throws {
        try Self.installed.get()
        self.work = work
    }

    private func bus(_ daemon: String) -> String { "unix:path=\(work)/\(daemon).bus" }

    /// Starts the private bus of `daemon`.
    private func startBus(_ daemon: String) throws {
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>\(bus(daemon))</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow user="*"/>
                <allow own="*"/>
                <allow send_destination="*"/>
                <allow receive_sender="*"/>
              </policy>
            </busconfig>
            """
        try config.write(toFile: "\(work)/\(daemon).bus.conf", atomically: true, encoding: .utf8)
        try start("/usr/bin/dbus-daemon", ["--config-file=\(work)/\(daemon).bus.conf", "--nofork"], bus: daemon, log: "\(daemon)-dbus")
        let deadline = Date(timeIntervalSinceNow: 10)
        while !FileManager.default.fileExists(atPath: "\(work)/\(daemon).bus"), Date() < deadline { usleep(20_000) }
        guard FileManager.default.fileExists(atPath: "\(work)/\(daemon).bus") else { throw HostFailure("the private D-Bus did not start: \(log("\(daemon)-dbus"))") }
    }

    /// Starts `executable` with `arguments` on the bus of `daemon`, its output in `log(name)`.
    @discardableResult
    private func start(_ executable: String, _ arguments: [String], bus daemon: String, log name: String) throws -> pid_t {
        let environment = ProcessInfo.processInfo.environment.merging(["DBUS_SYSTEM_BUS_ADDRESS": bus(daemon)]) { $1 }.map { "\($0.key)=\($0.value)" }
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "\(work)/\(name).log", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, nil, &argv, &envp)
        guard status == 0 else { throw HostFailure("cannot start \(executable): \(String(cString: strerror(status)))") }
        processes.append(pid)
        return pid
    }

    /// Waits for `pid` to exit; false if it is still running after `seconds`.
    private func wait(_ pid: pid_t, seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        var status: Int32 = 0
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                processes.removeAll { $0 == pid }
                return true
            }
            usleep(20_000)
        }
        return false
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: "\(work)/\(name).log", encoding: .utf8)) ?? "" }

    /// Starts `avahi-daemon` in `namespace` as host `hostName`, on eth0, IPv4 and IPv6;
    /// returns once it says its startup is complete. Its log is `log(hostName)`.
    func daemon(in namespace: String, hostName: String) throws {
        try startBus(hostName)
        let config = """
            [server]
            host-name=\(hostName)
            use-ipv4=yes
            use-ipv6=yes
            allow-interfaces=eth0
            enable-dbus=yes
            [publish]
            publish-hinfo=no
            publish-workstation=no
            """
        try config.write(toFile: "\(work)/\(hostName).conf", atomically: true, encoding: .utf8)
        // A mount namespace of its own, so each daemon has its own pid file and socket.
        let script = "mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f \(work)/\(hostName).conf"
        try start(NetworkNamespaces.ipTool, ["netns", "exec", namespace, "unshare", "-m", "sh", "-c", script], bus: hostName, log: hostName)
        let deadline = Date(timeIntervalSinceNow: 20)
        while !log(hostName).contains("Server startup complete"), Date() < deadline { usleep(50_000) }
        guard log(hostName).contains("Server startup complete") else { throw HostFailure("avahi-daemon \(hostName) did not start:\n\(log(hostName))") }
    }

    /// Runs an Avahi client (`avahi-browse`, `avahi-publish`, ...) of `daemon`, in
    /// `namespace`, in the background; stop it with `stopAll`.
    func background(in namespace: String, of daemon: String, _ tool: String, _ arguments: [String], log name: String) throws {
        try start(NetworkNamespaces.ipTool, ["netns", "exec", namespace, tool] + arguments, bus: daemon, log: name)
    }

    /// Runs an Avahi client of `daemon` in `namespace` to completion (at most `seconds`); its output.
    func run(in namespace: String, of daemon: String, _ tool: String, _ arguments: [String], seconds: Int = 15) throws -> String {
        let name = "\(tool)-\(UUID().uuidString.prefix(8))"
        let pid = try start(NetworkNamespaces.ipTool, ["netns", "exec", namespace, "timeout", String(seconds), tool] + arguments, bus: daemon, log: name)
        guard wait(pid, seconds: Double(seconds) + 5) else { throw HostFailure("\(tool) did not end within \(seconds) s") }
        return log(name)
    }

    func stopAll() {
        for pid in processes.reversed() {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        processes = []
    }
}
