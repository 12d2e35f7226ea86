import Foundation

/// The Python packages the tests use beside Python's standard library, installed on first
/// use into the build folder (never into the machine's Python), so that `swift test` alone
/// passes on a fresh machine: nothing is to be installed by hand first.
enum TestPython {
    /// Where the packages go: beside the build, removed with it, never committed.
    static let packages = "\(BuiltinHost.repository)/.build/test-python"

    /// python-zeroconf, the independent mDNS implementation the discovery tests
    /// interoperate with; the version they were written against.
    static let zeroconf = "zeroconf==0.154.0"

    /// Installed once per test process; every test that needs it waits for the same try.
    private static let installedZeroconf = Result { () throws(HostFailure) in try install(zeroconf, importing: "zeroconf") }

    /// Throws, saying why and what to do, if python-zeroconf cannot be had.
    static func requireZeroconf() throws { try installedZeroconf.get() }

    /// The environment for `python3` with these packages importable.
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONPATH"] = [packages, environment["PYTHONPATH"]].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ":")
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        return environment
    }

    /// Installs `requirement` with pip into a fresh folder and moves it into place, unless
    /// `module` can already be imported.
    private static func install(_ requirement: String, importing module: String) throws(HostFailure) {
        if (try? run(["python3", "-c", "import \(module)"]))?.status == 0 { return }
        let staging = "\(packages).staging-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let pip: (status: Int32, output: String)
        do {
            pip = try run(["python3", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--no-warn-script-location", "--root-user-action=ignore", "--target", staging, requirement])
        } catch {
            throw HostFailure("cannot run python3 to install \(requirement) for the discovery tests: \(error); install Python 3 with pip")
        }
        guard pip.status == 0 else {
            throw HostFailure(
                "`python3 -m pip install --target \(staging) \(requirement)` failed (exit \(pip.status)): \(pip.output.suffix(2000)); "
                    + "the discovery tests need it: give the machine access to PyPI, or install \(requirement) into Python yourself")
        }
        // Another test process may have put its copy in place meanwhile; either will do.
        try? FileManager.default.removeItem(atPath: packages)
        try? FileManager.default.moveItem(atPath: staging, toPath: packages)
        let check = try? run(["python3", "-c", "import \(module)"])
        guard check?.status == 0 else {
            throw HostFailure("\(requirement) was installed into \(packages), but python3 cannot import \(module): \(check?.output ?? "python3 did not run")")
        }
    }

    /// Runs a command with ``environment``; its exit status and output (both streams).
    private static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
