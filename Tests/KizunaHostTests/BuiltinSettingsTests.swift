import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// Each built-in plugin refuses a bad setting when it starts: the host reports it failed
/// with the setting's name and what to give instead, and goes on.
extension ProcessSuites {
    @Suite(.timeLimit(.minutes(2))) struct BuiltinSettingsTests {
        /// The built-in manifest `name`, with `old` replaced by `new`, written as `file` in `directory`.
        func manifest(_ name: String, _ old: String, _ new: String, in directory: String, as file: String) throws -> String {
            let text = try String(contentsOfFile: "\(BuiltinHost.repository)/manifests/\(name).toml", encoding: .utf8)
            #expect(text.contains(old), "\(name).toml no longer contains \(old)")
            let path = "\(directory)/\(file).toml"
            // Received files, if any, stay in the test's folder.
            // The transport (and so discovery) stays on loopback.
            let local = try BuiltinHost.onlyOnLoopback(text, file: "\(name).toml")
                .replacingOccurrences(of: "receive-dir = \"~/.kizuna/received\"", with: "receive-dir = \"\(directory)/received\"")
            try local.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        @Test(arguments: [
            ("tcp-transport", "port = 0", "port = 70000", "setting 'port' is 70000; give 0 to 65535"),
            ("tcp-transport", "threads = 1", "threads = 0", "setting 'threads' is 0; give 1 to 64"),
            ("mdns-discovery", "port = 5353", "port = 0", "setting 'port' is 0; give a UDP port from 1 to 65535"),
            ("mdns-discovery", "interface = \"auto\"", "interface = \"eth0/1\"", "setting 'interface' has 'eth0/1', which is neither an interface name (such as eth0 or lo) nor an IP address"),
            ("mdns-discovery", "interface = \"auto\"", "interface = [\"auto\", \"lo\"]", "setting 'interface' lists 'auto' with other entries"),
            ("mdns-discovery", "interface = \"auto\"", "interface = [\"lo\", 5]", "setting 'interface' is an array ([\"lo\", 5]); give a string or a list of strings"),
            ("mdns-discovery", "host-ttl-seconds = 120", "host-ttl-seconds = 1", "setting 'host-ttl-seconds' is 1; give 5 to 4500"),
            ("mdns-discovery", "service-type = \"_kizuna._tcp\"", "service-type = \"kizuna\"", "setting 'service-type' is 'kizuna'; give a DNS-SD service type such as _kizuna._tcp"),
            ("file-transfer", "accept = \"trusted\"", "accept = \"maybe\"", "setting 'accept' is 'maybe'; use trusted (accept from paired peers"),
            ("streaming", "accept = \"trusted\"", "accept = \"ask\"", "setting 'accept' is 'ask'; use trusted (streams from paired peers only)"),
            ("file-transfer", "chunk-bytes = 262144", "chunk-bytes = 1", "setting 'chunk-bytes' is 1; give 4096 to 8388608"),
            ("file-transfer", "existing = \"rename\"", "existing = \"replace\"", "setting 'existing' is 'replace'; use rename (keep the existing file"),
            // A wrong type or an unknown key is refused by name, never ignored.
            ("tcp-transport", "port = 0", "port = \"8080\"", "setting 'port' is a string (\"8080\"); give an integer"),
            ("tcp-transport", "threads = 1", "treads = 1", "tcp-transport has no setting 'treads'; did you mean 'threads'?"),
            ("mdns-discovery", "port = 5353", "port = 5353.0", "setting 'port' is a float (5353.0); give an integer"),
            ("file-transfer", "accept = \"trusted\"", "accept = true", "setting 'accept' is a boolean (true); give a string"),
            ("file-transfer", "chunk-bytes = 262144", "chunk-byte = 262144", "file-transfer has no setting 'chunk-byte'; did you mean 'chunk-bytes'?"),
            ("streaming", "window-frames = 256", "window-frames = \"many\"", "setting 'window-frames' is a string (\"many\"); give an integer"),
        ])
        func aBadSettingFailsThePluginWithItsNameAndTheFix(plugin: String, old: String, new: String, reason: String) async throws {
            let (host, directory) = try makeHost()
            let transport = try manifest("tcp-transport", "port = 0", "port = 0", in: directory, as: "good-transport")
            if plugin != "tcp-transport" { #expect(try await host.load(transport).state == .running) }
            let bad = try await host.load(try manifest(plugin, old, new, in: directory, as: "bad"))
            guard case .failed(let why) = bad.state else {
                Issue.record("\(plugin) with \(new) is \(bad.state), not failed")
                await host.shutdown()
                return
            }
            #expect(why.contains(reason), "\(why)")
            // The host goes on: the plugin loads once the setting is fixed.
            _ = try await host.unload(bad.name)
            #expect(try await host.load(try manifest(plugin, old, old, in: directory, as: "fixed")).state == .running)
            await host.shutdown()
        }
    }
}
