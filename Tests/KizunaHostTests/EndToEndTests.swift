import Foundation
import Glibc
import KizunaHost
import KizunaSDK
import Testing

/// Two real host processes with the built-in plugins, talking over loopback: mDNS
/// discovery, TCP transport, file transfer and streaming, driven through the CLI.
extension ProcessSuites {
    @Suite(.serialized, .timeLimit(.minutes(3))) struct EndToEndTests {
        /// Starts two hosts that have found each other, in a fresh folder.
        func startPair() throws -> (work: String, a: BuiltinHost, b: BuiltinHost) {
            let work = Fixtures.temporaryDirectory()
            let (a, b) = try BuiltinHost.pair(work: work, plugins: try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType()))
            return (work, a, b)
        }

        @Test func hostsDiscoverEachOtherAndSendAFileAndATree() throws {
            let (work, a, b) = try startPair()
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let peers = try a.cli(["peers", "--json"])
            #expect(peers.status == 0, "\(peers.stderr)")
            let listed = try JSONDecoder().decode([Peer].self, from: Data(peers.stdout.utf8))
            let bo = try #require(listed.first { $0.id.rawValue == b.id })
            #expect(bo.name == "bo")
            #expect(bo.services.contains("file-transfer") && bo.services.contains("streaming"))
            #expect(bo.addresses.first?.host == "127.0.0.1")

            // A large file, checked byte for byte.
            let file = "\(work)/large.bin"
            try writeRandomFile(file, bytes: 48 << 20)
            let sent = try a.cli(["send", file, "--to", b.id])
            #expect(sent.status == 0, "\(sent.stderr)")
            #expect(sent.stdout.contains("verified by the peer"))
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: "\(b.receiveDirectory)/large.bin"))

            // A tree, with nested folders; sent by the peer's name.
            let tree = "\(work)/album"
            try FileManager.default.createDirectory(atPath: "\(tree)/2026/summer", withIntermediateDirectories: true)
            try Data("one".utf8).write(to: URL(fileURLWithPath: "\(tree)/cover.txt"))
            try writeRandomFile("\(tree)/2026/summer/beach.raw", bytes: 3 << 20)
            try Data().write(to: URL(fileURLWithPath: "\(tree)/2026/empty.txt"))
            try FileManager.default.createDirectory(atPath: "\(tree)/drafts/unsorted", withIntermediateDirectories: true)
            let sentTree = try a.cli(["send", tree, "--to", "bo"])
            #expect(sentTree.status == 0, "\(sentTree.stderr)")
            for relative in ["cover.txt", "2026/summer/beach.raw", "2026/empty.txt"] {
                #expect(FileManager.default.contentsEqual(atPath: "\(tree)/\(relative)", andPath: "\(b.receiveDirectory)/album/\(relative)"), "\(relative)")
            }
            var isFolder: ObjCBool = false
            #expect(FileManager.default.fileExists(atPath: "\(b.receiveDirectory)/album/drafts/unsorted", isDirectory: &isFolder) && isFolder.boolValue)
            // Nothing is left under a temporary name.
            let leftovers = FileManager.default.enumerator(atPath: b.receiveDirectory)!.compactMap { $0 as? String }.filter { $0.contains("kizuna-partial") }
            #expect(leftovers.isEmpty)

            // Bad requests get clear errors.
            let noPeer = try a.cli(["send", file, "--to", "nobody"])
            #expect(noPeer.status != 0)
            #expect(noPeer.stderr.contains("no peer matches 'nobody'"))
            #expect(noPeer.stderr.contains(b.id))
            let noFile = try a.cli(["send", "\(work)/missing.bin", "--to", b.id])
            #expect(noFile.status != 0)
            #expect(noFile.stderr.contains("does not exist"))
        }

        @Test func anInterruptedTransferResumesFromWhatArrived() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            var (a, b) = try BuiltinHost.pair(work: work, plugins: plugins)
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let file = "\(work)/movie.bin"
            try writeRandomFile(file, bytes: 24 << 20)
            // Slow the sender down so it can be killed halfway.
            #expect(try a.cli(["plugins", "call", "file-transfer", "set-rate-limit", "\(4 << 20)"]).stdout.contains("true"))
            let sending = try BackgroundCLI(["send", file, "--to", b.id, "--socket", a.socket], limit: 60)
            // Wait (on the file system, with a deadline) until some of it has arrived.
            let partial = try #require(try waitForPartial(in: b.receiveDirectory, atLeast: 2 << 20))
            #expect(a.kill(SIGKILL) != 0)
            _ = sending.process.waitUntilExitOrKill()
            try b.waitFor("failed: the connection was lost")
            let kept = try #require(try FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int)
            #expect(kept > 0 && kept < 24 << 20)
            let status = try b.cli(["status"]).stdout
            #expect(status.contains("\(kept) bytes (kept for resuming"), "\(status)")

            // The same host (its state directory, so the same key and id) comes back and sends
            // again: only the rest travels.
            let before = a.id
            a = try BuiltinHost(name: "aiko", work: work, plugins: plugins)
            #expect(a.id == before, "the identity did not survive the restart")
            try a.waitFor("peer found: \(b.id)")
            let resumed = try a.cli(["send", file, "--to", b.id])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let match = resumed.stdout.firstMatch(of: /resumed from [0-9.]+ [KMG]iB \((\d+) bytes\) already there/)
            let from = try #require(match.flatMap { Int($0.1) })
            #expect(from >= kept - (256 << 10) && from <= kept)
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: "\(b.receiveDirectory)/movie.bin"))
            #expect(!FileManager.default.fileExists(atPath: partial))
        }

        @Test func ctrlCOnSendCancelsTheTransferOnBothHosts() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let (a, b) = try BuiltinHost.pair(work: work, plugins: plugins)
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let file = "\(work)/long.bin"
            try writeRandomFile(file, bytes: 24 << 20)
            #expect(try a.cli(["plugins", "call", "file-transfer", "set-rate-limit", "\(4 << 20)"]).stdout.contains("true"))
            let sending = try BackgroundCLI(["send", file, "--to", b.id, "--socket", a.socket], limit: 60)
            let partial = try #require(try waitForPartial(in: b.receiveDirectory, atLeast: 2 << 20))
            kill(sending.process.processIdentifier, SIGINT)
            _ = sending.process.waitUntilExitOrKill()
            // Both hosts end it at once, not after the 6 s the rest would take.
            try a.waitFor("the transfer was cancelled after")
            try b.waitFor("long.bin failed")
            let kept = try #require(try FileManager.default.attributesOfItem(atPath: partial)[.size] as? Int)
            #expect(kept < 24 << 20)
            #expect(try b.status().violations["file-transfer"] == 0)
            // What arrived is kept: sent again, only the rest travels.
            #expect(try a.cli(["plugins", "call", "file-transfer", "set-rate-limit", "0"]).stdout.contains("true"))
            let resumed = try a.cli(["send", file, "--to", b.id])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.stdout.contains("resumed from"), "\(resumed.stdout)")
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: "\(b.receiveDirectory)/long.bin"))
        }

        @Test func partialFilesNothingResumedAreRemovedAfterTheirAge() throws {
            let work = Fixtures.temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: work) }
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let received = "\(work)/bo-received"
            try FileManager.default.createDirectory(atPath: "\(received)/album", withIntermediateDirectories: true)
            let old = "\(received)/album/.photo.jpg.kizuna-partial-0123456789abcdef"
            let fresh = "\(received)/.clip.bin.kizuna-partial-fedcba9876543210"
            try Data(count: 5000).write(to: URL(fileURLWithPath: old))
            try Data(count: 3000).write(to: URL(fileURLWithPath: fresh))
            // Last written eight days ago: more than the default of seven.
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -8 * 86_400)], ofItemAtPath: old)
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins)
            defer { _ = b.kill() }
            // Swept as the plugin starts (its log line may come before "host running").
            if !b.startup.contains(where: { $0.contains("removed partial files no transfer resumed") }) {
                try b.waitFor("removed partial files no transfer resumed")
            }
            #expect(!FileManager.default.fileExists(atPath: old))
            #expect(FileManager.default.fileExists(atPath: fresh))
            #expect(try b.cli(["plugins", "call", "file-transfer", "partial-bytes"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "3000")
        }

        @Test func aReceiverThatAsksAcceptsOrRefusesEachOffer() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let a = try BuiltinHost(name: "aiko", work: work, plugins: plugins)
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins, arguments: ["--accept", "ask"])
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            try a.waitFor("peer found: \(b.id)")
            let file = "\(work)/letter.txt"
            try Data("dear bo".utf8).write(to: URL(fileURLWithPath: file))

            for accept in [true, false] {
                let sending = try BackgroundCLI(["send", file, "--to", b.id, "--socket", a.socket], limit: 60)
                let offered = try b.waitFor("offered by \(a.id)").last ?? ""
                let id = try #require(offered.firstMatch(of: /transfer (\S+) offered/).map { String($0.1) })
                // The sender is told the offer waits, and both hosts list it as waiting.
                #expect(sending.waitForLine(containing: "waiting for bo").last?.contains("waiting for bo (\(PeerID(b.id).short)) to accept letter.txt (7 B)") == true)
                let listed = try b.cli(["transfers"])
                #expect(listed.stdout.contains(id) && listed.stdout.contains("waiting for you"), "\(listed.stdout)")
                #expect(listed.stdout.contains("`kizuna accept \(id)` or `kizuna refuse \(id)`"), "\(listed.stdout)")
                #expect(try a.cli(["transfers"]).stdout.contains("waiting for the peer"))
                let answered = try b.cli([accept ? "accept" : "refuse", id])
                #expect(answered.status == 0, "\(answered.stderr)")
                #expect(answered.stdout.contains("\(accept ? "accepted" : "refused") offer \(id) (letter.txt, 7 B from \(PeerID(a.id).short))"), "\(answered.stdout)")
                let result = sending.waitForLine(containing: accept ? "verified by the peer" : "refused")
                #expect(result.last?.contains(accept ? "verified by the peer" : "refused the transfer: not accepted on the receiving host") == true, "\(result)")
                #expect(sending.process.waitUntilExitOrKill() == (accept ? 0 : 1))
                // Ended transfers stay listed, with how they ended.
                let ended = try JSONSerialization.jsonObject(with: Data(try b.cli(["transfers", "--json"]).stdout.utf8)) as? [[String: Any]]
                let record = try #require(ended?.first { $0["id"] as? String == id })
                #expect(record["state"] as? String == (accept ? "done" : "failed"))
                #expect(record["direction"] as? String == "incoming" && record["peer"] as? String == a.id)
            }
            #expect(FileManager.default.contentsEqual(atPath: file, andPath: "\(b.receiveDirectory)/letter.txt"))
            // An answer to no offer fails and says what waits.
            let nothing = try b.cli(["accept", "nothing-1"])
            #expect(nothing.status == 1)
            #expect(nothing.stderr.contains("no offer 'nothing-1' waits for an answer on this host; none waits now (`kizuna transfers` lists them)"), "\(nothing.stderr)")
        }

        /// `kizuna accept ID --existing rename|skip|overwrite` decides, for one offer, what
        /// becomes of a file whose name the receiver already has; skipped files are not sent.
        @Test func eachOfferChoosesWhatBecomesOfNamesAlreadyTaken() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let a = try BuiltinHost(name: "aiko", work: work, plugins: plugins)
            let b = try BuiltinHost(name: "bo", work: work, plugins: plugins, arguments: ["--accept", "ask"])
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            try a.waitFor("peer found: \(b.id)")
            let album = "\(work)/album"
            try FileManager.default.createDirectory(atPath: album, withIntermediateDirectories: true)
            try Data("new a".utf8).write(to: URL(fileURLWithPath: "\(album)/a.txt"))
            try Data("new b".utf8).write(to: URL(fileURLWithPath: "\(album)/b.txt"))
            let received = "\(b.receiveDirectory)/album"
            try FileManager.default.createDirectory(atPath: received, withIntermediateDirectories: true)
            try Data("mine".utf8).write(to: URL(fileURLWithPath: "\(received)/a.txt"))
            func contents(_ name: String) -> String? { try? String(contentsOfFile: "\(received)/\(name)", encoding: .utf8) }

            /// Sends the album and answers the offer with `answer`; the sender's last line.
            func send(answering answer: [String], json: Bool = false) throws -> String {
                let sending = try BackgroundCLI(["send", album, "--to", b.id, "--socket", a.socket] + (json ? ["--json"] : []), limit: 60)
                let offered = try b.waitFor("offered by \(a.id)").last ?? ""
                let id = try #require(offered.firstMatch(of: /transfer (\S+) offered/).map { String($0.1) })
                let answered = try b.cli(["accept", id] + answer)
                #expect(answered.status == 0, "\(answered.stderr)")
                let lines = sending.waitForLine(containing: json ? "\"type\":\"sent\"" : "verified by the peer")
                #expect(sending.process.waitUntilExitOrKill() == 0, "\(lines)")
                return lines.last ?? ""
            }

            // skip: the file of a taken name is kept and not sent; the other arrives.
            let skipped = try send(answering: ["--existing", "skip"])
            #expect(skipped.contains("; 1 file(s) not sent: the peer keeps its own files of those names"), "\(skipped)")
            #expect(contents("a.txt") == "mine" && contents("b.txt") == "new b")
            #expect(!FileManager.default.fileExists(atPath: "\(received)/a (2).txt"))
            // overwrite: both are replaced, nothing is renamed.
            let overwritten = try send(answering: ["--existing", "overwrite"], json: true)
            #expect(overwritten.contains("\"skippedFiles\":0"), "\(overwritten)")
            #expect(contents("a.txt") == "new a" && contents("b.txt") == "new b")
            #expect(!FileManager.default.fileExists(atPath: "\(received)/a (2).txt"))
            // No choice: the setting (rename): both get free names, the old ones stay.
            try Data("mine".utf8).write(to: URL(fileURLWithPath: "\(received)/a.txt"))
            _ = try send(answering: [])
            #expect(contents("a.txt") == "mine" && contents("a (2).txt") == "new a" && contents("b (2).txt") == "new b")
            // skip when every name is taken: nothing is sent and nothing changes.
            let before = try FileManager.default.contentsOfDirectory(atPath: received).sorted()
            let none = try send(answering: ["--existing", "skip"], json: true)
            #expect(none.contains("\"skippedFiles\":2"), "\(none)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: received).sorted() == before)
            // A choice that is none of the three is refused before anything is answered.
            let bad = try b.cli(["accept", "some-id", "--existing", "replace"])
            #expect(bad.status == 64, "\(bad.stderr)")
            #expect(bad.stderr.contains("replace") && bad.stderr.contains("rename"), "\(bad.stderr)")
        }

        @Test func kizunaCancelStopsATransferFromEitherSide() throws {
            let work = Fixtures.temporaryDirectory()
            let plugins = try BuiltinHost.pluginsDirectory(in: work, serviceType: BuiltinHost.serviceType())
            let (a, b) = try BuiltinHost.pair(work: work, plugins: plugins)
            defer {
                _ = a.kill()
                _ = b.kill()
                try? FileManager.default.removeItem(atPath: work)
            }
            let file = "\(work)/long.bin"
            try writeRandomFile(file, bytes: 24 << 20)
            #expect(try a.cli(["plugins", "call", "file-transfer", "set-rate-limit", "\(4 << 20)"]).stdout.contains("true"))

            // Cancelled by the receiver: the sender is told why.
            var sending = try BackgroundCLI(["send", file, "--to", b.id, "--socket", a.socket], limit: 60)
            _ = try #require(try waitForPartial(in: b.receiveDirectory, atLeast: 1 << 20))
            let incoming = try #require(try transferID(on: b, direction: "incoming"))
            let cancelled = try b.cli(["cancel", incoming])
            #expect(cancelled.status == 0 && cancelled.stdout.contains("cancelled transfer \(incoming)"), "\(cancelled)")
            var lines = sending.waitForLine(containing: "the receiver cancelled the transfer")
            #expect(lines.last?.contains("ended the transfer after") == true, "\(lines)")
            #expect(sending.process.waitUntilExitOrKill() == 1)
            try b.waitFor("the transfer was cancelled on this host (`kizuna cancel`)")

            // Cancelled by the sender's host: the receiver is told, and keeps what arrived.
            sending = try BackgroundCLI(["send", file, "--to", b.id, "--socket", a.socket], limit: 60)
            let outgoing = try #require(try transferID(on: a, direction: "outgoing", moving: true))
            #expect(try a.cli(["cancel", outgoing]).status == 0)
            lines = sending.waitForLine(containing: "cancelled on this host")
            #expect(lines.last?.contains("the transfer was cancelled on this host (`kizuna cancel`) after") == true, "\(lines)")
            #expect(sending.process.waitUntilExitOrKill() == 1)
            try b.waitFor("the sender cancelled the transfer")
            #expect(try b.status().violations["file-transfer"] == 0)
            #expect(try a.status().violations["file-transfer"] == 0)

            // A transfer that ended cannot be cancelled; the error says so.
            let again = try a.cli(["cancel", outgoing])
            #expect(again.status == 1)
            #expect(again.stderr.contains("transfer '\(outgoing)' has already ended; none is under way now"), "\(again.stderr)")
            #expect(try a.cli(["cancel", "no-such-transfer"]).stderr.contains("no transfer 'no-such-transfer' is under way on this host"))
        }

        /// The id of the first transfer `host` lists in `direction` (waiting up to 30 s).
        func transferID(on host: BuiltinHost, direction: String, moving: Bool = false) throws -> String? {
            var found: String?
            _ = eventually(within: 30) {
                let listed = try JSONSerialization.jsonObject(with: Data(try host.cli(["transfers", "--json"]).stdout.utf8)) as? [[String: Any]] ?? []
                let under = listed.filter { $0["direction"] as? String == direction && [moving ? "moving" : "waiting", "moving"].contains($0["state"] as? String ?? "") }
                found = under.first?["id"] as? String
                return found != nil
            }
            return found
        }

        /// Polls the receive directory (with a deadline) for a partial file of `bytes` or more.
        func waitForPartial(in directory: String, atLeast bytes: Int) throws -> String? {
            let deadline = Date(timeIntervalSinceNow: 30)
            while Date() < deadline {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.contains("kizuna-partial") {
                    let path = "\(directory)/\(name)"
                    if let size = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int, size >= bytes { return path }
                }
                usleep(20_000)
            }
            return nil
        }

        @Test func namesThatWouldEscapeTheReceiveDirectoryAreRefused() throws {
            let (work, a, b) = try startPair()
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            let peers = try JSONDecoder().decode([Peer].self, from: Data(try a.cli(["peers", "--json"]).stdout.utf8))
            let port = try #require(peers.first { $0.id.rawValue == b.id }?.addresses.first?.port)
            let outside = "\(work)/outside"
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: b.receiveDirectory, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: "\(b.receiveDirectory)/elsewhere", withDestinationPath: outside)

            let relay = try TLSRelay(to: port)
            defer { relay.stop() }
            func offer(_ path: String) throws -> (answer: [String: Any]?, client: RawTransportClient) {
                let client = try RawTransportClient(port: relay.port)
                client.sendJSON(["kizuna": 2, "id": relay.identity.peerID.rawValue, "name": "mallory", "service": "file-transfer"])
                let reply = client.receiveJSON()
                #expect(reply?["error"] == nil)
                client.sendJSON(["type": "offer", "id": "evil-\(path.count)", "name": "x", "files": [["path": path, "size": 4, "modified": 0]], "total": 4], typeByte: 1)
                return (client.receiveJSON(typeByte: true), client)
            }
            for path in ["../escape.txt", "a/../../escape.txt", "/tmp/escape.txt", "./x", "a//b"] {
                let (answer, _) = try offer(path)
                #expect(answer?["accept"] as? Bool == false, "\(path)")
                #expect((answer?["reason"] as? String)?.contains("must be relative and stay beneath the receive directory") == true, "\(path)")
            }
            // A name through a link in the receive directory passes the name check but is
            // refused when the receiver gets to it; nothing is written outside.
            let (answer, client) = try offer("elsewhere/planted.txt")
            #expect(answer?["accept"] as? Bool == true)
            client.sendJSON(["type": "file", "index": 0], typeByte: 1)
            let failure = client.receiveJSON(typeByte: true)  // the receiver says why, then hangs up
            #expect(failure?["type"] as? String == "error")
            #expect((failure?["reason"] as? String)?.contains("names must not lead through links") == true)
            #expect(client.receive() == nil)
            #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
            try b.waitFor("names must not lead through links")
            #expect(!FileManager.default.fileExists(atPath: "\(work)/escape.txt"))
            #expect(!FileManager.default.fileExists(atPath: "/tmp/escape.txt"))
            // The host serves on.
            let file = "\(work)/after.txt"
            try Data("still here".utf8).write(to: URL(fileURLWithPath: file))
            #expect(try a.cli(["send", file, "--to", b.id]).status == 0)
        }

        @Test func aStreamArrivesInOrderAndASlowViewerDropsOldFrames() throws {
            let (work, a, b) = try startPair()
            defer {
                _ = a.kill()
                _ = b.kill()
            }
            // A viewer that keeps up gets every frame, in order.
            let clip = "\(work)/clip.bin"
            try writeRandomFile(clip, bytes: 300 * 1024)
            let watched = "\(work)/watched.bin"
            let viewer = try BackgroundCLI(["watch", "--output", watched, "--socket", b.socket], limit: 60)
            _ = viewer.waitForLine(containing: "waiting for a stream")
            let streamed = try a.cli(["stream", "--to", b.id, "--frame-bytes", "1024", "--fps", "200", clip])
            #expect(streamed.status == 0, "\(streamed.stderr)")
            #expect(streamed.stderr.contains("streamed 300 frames"))
            let report = viewer.waitForLine(containing: "ended:").last ?? ""
            #expect(report.contains("300 frames, 0 dropped"), "\(report)")
            #expect(FileManager.default.contentsEqual(atPath: clip, andPath: watched))
            try a.waitFor("stream \(a.id.prefix(8))-s1 ended")

            // A viewer that does not read: its frames pile up in no buffer; it misses the
            // oldest ones and is told how many, and the stream is never held up.
            let slow = SlowViewer(socket: b.socket)
            let burst = "\(work)/burst.bin"
            try writeRandomFile(burst, bytes: 2000 * 16384)
            let fast = try a.cli(["stream", "--to", b.id, "--frame-bytes", "16384", burst])
            #expect(fast.status == 0, "\(fast.stderr)")
            let (frames, dropped) = try #require(slow.drain())
            #expect(dropped > 0)
            #expect(frames + dropped == 2000)
        }
    }
}

/// A `kizuna watch` client that reads nothing until the stream is over, then everything.
struct SlowViewer {
    let session: ControlSession

    init(socket: String) {
        session = try! ControlClient(path: socket).open(ControlRequest(.watch))
    }

    /// Reads the whole stream; its frames and dropped figures.
    func drain() -> (UInt64, UInt64)? {
        guard let started = session.decode(ControlResponse.self), started.stream != nil else { return nil }
        while let chunk = session.readChunk(), !chunk.isEmpty {}
        guard let end = session.decode(ControlResponse.self)?.stream else { return nil }
        return (end.frames, end.dropped)
    }
}

extension Process {
    /// Waits for the process, killing it if it is still running after 30 s.
    func waitUntilExitOrKill() -> Int32 {
        let process = self
        DispatchQueue.global().asyncAfter(deadline: .now() + 30) { if process.isRunning { process.terminate() } }
        waitUntilExit()
        return terminationStatus
    }
}
