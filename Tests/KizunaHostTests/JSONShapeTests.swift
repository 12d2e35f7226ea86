import Foundation
import KizunaHost
import KizunaSDK
import Testing

/// One plugin as `plugins list --json` and `plugins info --json` print it (README, "JSON output").
struct ListedPlugin: Decodable {
    var name: String
    var kind: String?
    var version: String
    var state: String
    var reason: String?
    var manifest: String
    var library: String
    var image: String?
    var sha256: String?
    var provides: [String]
    var requires: [String]
    var tasks: Int
    var permitsHeld: Int
    var eventsPublished: Int
    var leftoverTasks: Int
}

/// The JSON shapes the README documents, pinned against the real binary: a change to one
/// of them is a change to a public contract and must show up here.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(2))) struct JSONShapeTests {
        typealias Object = [String: Any]

        func object(_ text: String) throws -> Object { try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? Object, "\(text)") }
        func array(_ text: String) throws -> [Object] { try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Object], "\(text)") }

        /// Every key of `value` is one of `allowed`, and all of `required` are there.
        func expectKeys(_ value: Object, required: Set<String>, optional: Set<String> = [], _ what: String) {
            let keys = Set(value.keys)
            #expect(required.isSubset(of: keys), "\(what): missing \(required.subtracting(keys).sorted())")
            #expect(keys.isSubset(of: required.union(optional)), "\(what): undocumented \(keys.subtracting(required.union(optional)).sorted())")
        }

        func isTime(_ value: Any?) -> Bool {
            guard let text = value as? String else { return false }
            return ISO8601DateFormatter().date(from: text) != nil
        }

        @Test func everyJSONOutputHasItsDocumentedFlatShape() throws {
            let directory = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            Fixtures.writeManifest(in: directory, name: "finder", kind: .discovery, library: Fixtures.library("FixtureDiscovery"), extra: "[settings]\npeers = [\"aiko@127.0.0.1:7000\"]")
            Fixtures.writeManifest(in: directory, name: "memory", kind: .transport, library: Fixtures.library("FixtureTransport"))
            let socket = "\(directory)/control.sock"
            let host = try BackgroundCLI(["run", "--plugins-dir", directory, "--socket", socket, "--state-dir", "\(directory)/state", "--quiet"])
            defer { _ = host.terminate() }
            #expect(host.waitForLine(containing: "host running").last?.contains("host running") == true)
            func json(_ arguments: [String]) throws -> String {
                let outcome = try CLI.run(arguments + ["--json", "--socket", socket])
                #expect(outcome.status == 0, "\(arguments): \(outcome.stderr)")
                #expect(!outcome.stdout.contains("\\/"), "\(arguments): escaped slashes in \(outcome.stdout)")
                return outcome.stdout
            }
            let pluginKeys: Set = ["name", "version", "state", "manifest", "library", "provides", "requires", "tasks", "permitsHeld", "eventsPublished", "leftoverTasks"]
            let pluginOptional: Set = ["kind", "reason", "description", "image", "sha256", "descriptor"]

            // Followed from the start, so the plugin events below are seen.
            let events = try BackgroundCLI(["events", "--json", "--socket", socket], limit: 60)
            defer { _ = events.terminate() }

            let plugins = try array(try json(["plugins", "list"]))
            #expect(plugins.count == 2)
            for plugin in plugins {
                expectKeys(plugin, required: pluginKeys, optional: pluginOptional, "plugins list")
                #expect(plugin["state"] as? String == "running" && plugin["kind"] is String && plugin["requires"] is [String])
            }
            let memory = try object(try json(["plugins", "info", "memory"]))
            expectKeys(memory, required: pluginKeys, optional: pluginOptional, "plugins info")
            #expect(memory["kind"] as? String == "transport" && (memory["library"] as? String)?.hasPrefix("/") == true)

            let status = try object(try json(["status"]))
            expectKeys(
                status,
                required: [
                    "pluginCount", "running", "failed", "peers", "connections", "tasksAlive", "workerThreads", "workerQueueDepth", "permitsInUse",
                    "refusedInbound", "violations", "controlSocket", "sdkVersion", "swiftVersion",
                ], "status")
            #expect(status["violations"] is [String: Any] && status["controlSocket"] as? String == socket)

            let peers = try array(try json(["peers"]))
            #expect(peers.count == 1)
            expectKeys(peers[0], required: ["id", "name", "addresses", "services"], "peers")
            #expect(peers[0]["id"] is String && (peers[0]["addresses"] as? [Object])?.first?["port"] as? Int == 7000)

            #expect(try array(try json(["transfers"])).isEmpty)
            let printed = try CLI.run(["id", "--json", "--state-dir", "\(directory)/state"])
            let identity = try object(printed.stdout)
            expectKeys(identity, required: ["id", "fingerprint"], optional: ["name"], "id")
            #expect(try array(try json(["trust", "list"])).isEmpty)
            #expect(try array(try json(["pair", "--pending"])).isEmpty)

            // Events: a type in kebab case, a time, flat fields.
            #expect(try CLI.run(["plugins", "unload", "finder", "--socket", socket]).status == 0)
            let lines = events.waitForLine(containing: "\"stopped\"")
            let changes = try lines.filter { $0.hasPrefix("{") }.map(object)
            let stopped = try #require(changes.last)
            expectKeys(stopped, required: ["type", "time", "name", "state"], optional: ["reason"], "events")
            #expect(stopped["type"] as? String == "plugin-state-changed" && stopped["name"] as? String == "finder")
            #expect(isTime(stopped["time"]), "\(stopped)")
            let lost = try #require(try lines.filter { $0.contains("\"peer-lost\"") }.last.map(object), "\(lines)")
            expectKeys(lost, required: ["type", "time", "peer"], "peer-lost")
            #expect(lost["peer"] as? String == peers[0]["id"] as? String)

            // A failed plugin: state and reason as plain strings.
            Fixtures.writeManifest(in: directory, name: "thrower", kind: .discovery, library: Fixtures.library("FixtureThrowing"))
            _ = try CLI.run(["plugins", "load", "\(directory)/thrower.toml", "--socket", socket])
            let thrower = try object(try json(["plugins", "info", "thrower"]))
            #expect(thrower["state"] as? String == "failed" && (thrower["reason"] as? String)?.isEmpty == false, "\(thrower)")
        }

        @Test func sendPrintsOneJSONObjectPerLine() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let (a, b) = try BuiltinHost.pair(work: work, plugins: plugins)
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let file = "\(work)/note.txt"
            try Data("twelve bytes".utf8).write(to: URL(fileURLWithPath: file))
            let sent = try a.cli(["send", file, "--to", b.id, "--json"])
            #expect(sent.status == 0, "\(sent.stderr)")
            let lines = try sent.stdout.split(separator: "\n").map { try object(String($0)) }
            let required: Set = ["type", "time", "id", "peer", "name", "bytesDone", "bytesTotal", "resumedFrom", "skippedFiles", "waiting"]
            for line in lines { expectKeys(line, required: required, "send --json") }
            #expect(lines.last?["type"] as? String == "sent" && lines.last?["bytesDone"] as? Int == 12 && lines.last?["peer"] as? String == b.id)
            #expect(lines.dropLast().allSatisfy { $0["type"] as? String == "progress" })
            #expect(lines.allSatisfy { isTime($0["time"]) })

            let transfers = try array(try a.cli(["transfers", "--json"]).stdout)
            let record = try #require(transfers.first)
            expectKeys(
                record, required: ["id", "direction", "peer", "name", "state", "bytesDone", "bytesTotal", "resumedFrom", "skippedFiles", "started", "updated"], optional: ["reason"],
                "transfers")
            #expect(record["state"] as? String == "done" && record["direction"] as? String == "outgoing" && isTime(record["updated"]))

            // With its only discovery plugin unloaded, a host lists no peers it can no longer vouch for.
            #expect(try a.cli(["plugins", "unload", "mdns-discovery"]).status == 0)
            #expect(try array(try a.cli(["peers", "--json"]).stdout).isEmpty)
        }
    }
}
