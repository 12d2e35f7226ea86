import Foundation

/// Debian packages some tests use (iproute2, Avahi), installed with apt-get on first use
/// where the machine lacks them, as CI's fresh machine does: `swift test` sets up what it
/// uses. Services the packages bring are kept from starting (policy-rc.d), so nothing is
/// left running on the machine's own network.
enum DebianPackages {
    /// Runs `apt-get update` and `apt-get install PACKAGES`; whether the packages are
    /// there is for the caller to check afterwards.
    static func install(_ packages: [String]) {
        let policy = "/usr/sbin/policy-rc.d"
        let ownPolicy = !FileManager.default.fileExists(atPath: policy)
        if ownPolicy {
            _ = FileManager.default.createFile(atPath: policy, contents: Data("#!/bin/sh\nexit 101\n".utf8), attributes: [.posixPermissions: 0o755])
        }
        defer { if ownPolicy { try? FileManager.default.removeItem(atPath: policy) } }
        for arguments in [["update", "-qq"], ["install", "-y", "-qq"] + packages] {
            let apt = Process()
            apt.executableURL = URL(fileURLWithPath: "/usr/bin/apt-get")
            apt.arguments = arguments
            apt.environment = ProcessInfo.processInfo.environment.merging(["DEBIAN_FRONTEND": "noninteractive"]) { $1 }
            apt.standardOutput = FileHandle.nullDevice
            apt.standardError = FileHandle.nullDevice
            try? apt.run()
            apt.waitUntilExit()
        }
    }
}
