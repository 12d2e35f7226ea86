import CKizunaFiles
import Crypto
import Foundation
import Glibc
import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

/// How often progress is reported: every this many bytes, and at the end.
private let progressStep: Int64 = 8 << 20
/// A receiver starts writing received data to disk every this many bytes.
private let writebackStep: Int64 = 8 << 20

/// Sends one file or tree over a fresh connection.
struct Sender {
    let started: BuiltinFileTransfer.Started
    let path: String
    let peer: Peer
    let report: @Sendable (TransferProgress) -> Void

    func run() async throws -> TransferProgress {
        let context = started.context
        let (name, files, sources) = try collectFiles(at: path)
        let id = "\(context.host.id.rawValue.prefix(8))-\(started.counter.add(1, ordering: .relaxed).newValue)"
        var progress = TransferProgress(id: id, peer: peer.id, name: name, bytesDone: 0, bytesTotal: files.reduce(0) { $0 + $1.size }, outgoing: true)
        context.events.publish(.transferProgress(progress))
        var registered: RunningTransfers.Transfer?
        do {
            let connection = try await connect()
            let running = started.running.begin(id, over: connection, outgoing: true)
            registered = running
            defer { started.running.end(id) }
            do {
                try await transfer(files, sources, over: connection, &progress)
            } catch {
                if Task.isCancelled, !running.isCancelled {
                    // Told to the receiver, which keeps what it has for a later resume.
                    var failure = Wire.Message(.error)
                    failure.reason = "the sender cancelled the transfer"
                    Wire.sendLast(failure, over: connection, on: context.runtime)
                } else if !running.isCancelled, !(error is TransferError), let reason = await Wire.lastWord(from: connection) {
                    // The send failed because the receiver ended the transfer; say why.
                    await connection.close()
                    throw TransferError("peer \(peer.id) ended the transfer after \(progress.bytesDone) of \(progress.bytesTotal) bytes: \(escapedForDisplay(reason))")
                } else {
                    await connection.close()
                }
                throw error
            }
            await connection.close()
        } catch {
            if (error as? TransferError)?.isViolation == true, registered?.isCancelled != true { started.violations.add(1, ordering: .relaxed) }
            let failure =
                if registered?.isCancelled == true {
                    TransferError("the transfer was cancelled on this host (`kizuna cancel`) after \(progress.bytesDone) of \(progress.bytesTotal) bytes")
                } else if Task.isCancelled {
                    TransferError("the transfer was cancelled after \(progress.bytesDone) of \(progress.bytesTotal) bytes")
                } else {
                    error
                }
            context.events.publish(.transferFailed(progress, reason: "\(failure)"))
            throw failure
        }
        context.events.publish(.transferDone(progress))
        report(progress)
        return progress
    }

    private func connect() async throws -> any Connection {
        if !peer.services.isEmpty, !peer.services.contains("file-transfer") {
            throw TransferError("peer \(peer.id) (\(peer.name)) does not offer file-transfer; it offers \(peer.services.joined(separator: ", "))")
        }
        return try await started.transport.connect(to: peer, service: "file-transfer")
    }

    /// Under a rate limit, waits as long as `bytes` take at that rate.
    private func pace(_ bytes: Int) async throws {
        let limit = started.rateLimit.load(ordering: .relaxed)
        guard limit > 0 else { return }
        try await Task.sleep(for: .seconds(Double(bytes) / Double(limit)))
    }

    private func transfer(_ files: [Wire.FileEntry], _ sources: [String], over connection: any Connection, _ progress: inout TransferProgress) async throws {
        var offer = Wire.Message(.offer)
        offer.id = progress.id
        offer.name = progress.name
        offer.files = files
        offer.total = progress.bytesTotal
        try await connection.send(Wire.encode(offer))
        // While the receiver waits for its user, it says so at once and then now and then.
        var answer = try await Wire.expect([.answer, .waiting], from: connection)
        while answer.type == .waiting {
            if !progress.awaitingAnswer {
                progress.awaitingAnswer = true
                started.context.events.publish(.transferProgress(progress))
                report(progress)
            }
            answer = try await Wire.expect([.answer, .waiting], from: connection)
        }
        guard answer.accept == true else { throw TransferError("peer \(peer.id) refused the transfer: \(escapedForDisplay(answer.reason ?? "no reason given"))") }
        if progress.awaitingAnswer {
            progress.awaitingAnswer = false
            started.context.events.publish(.transferProgress(progress))
            report(progress)
        }

        var reported: Int64 = 0
        for (index, file) in files.enumerated() where !file.isDirectory {
            var request = Wire.Message(.file)
            request.index = index
            try await connection.send(Wire.encode(request))
            let start = try await Wire.expect(.start, from: connection)
            if start.skip == true {
                // The receiver keeps its own file of that name (its setting `existing = skip`).
                progress.bytesDone += file.size
                progress.skippedFiles += 1
                continue
            }
            let offset = min(max(start.offset ?? 0, 0), file.size)
            let source = try OpenFile(path: sources[index], flags: O_RDONLY)
            var hasher = SHA256()
            try source.hashPrefix(offset, into: &hasher)
            progress.resumedFrom += offset
            progress.bytesDone += offset

            var remaining = file.size - offset
            let chunk = started.options.chunkBytes
            while remaining > 0 {
                try Task.checkCancellation()
                let want = Int(min(Int64(chunk), remaining))
                // The type byte, then the data read straight into the message: no copy.
                var failure: (any Error)?
                let message = [UInt8](unsafeUninitializedCapacity: want + 1) { buffer, count in
                    buffer[0] = Wire.data
                    do {
                        count = 1 + (try source.read(into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[1...want]))))
                    } catch {
                        failure = error
                        count = 1
                    }
                }
                if let failure { throw failure }
                guard message.count > 1 else { throw TransferError("\(sources[index]) shrank while it was being sent") }
                hasher.update(data: message[1...])
                try await pace(message.count - 1)
                try await connection.send(message)
                remaining -= Int64(message.count - 1)
                progress.bytesDone += Int64(message.count - 1)
                if progress.bytesDone - reported >= progressStep {
                    reported = progress.bytesDone
                    started.context.events.publish(.transferProgress(progress))
                    report(progress)
                }
            }
            var end = Wire.Message(.end)
            end.sha256 = hasher.finalize().hex
            try await connection.send(Wire.encode(end))
            let verified = try await Wire.expect(.verified, from: connection)
            guard verified.ok == true else {
                throw TransferError("peer \(peer.id) could not verify \(file.path): \(escapedForDisplay(verified.reason ?? "no reason given"))")
            }
        }
        try await connection.send(Wire.encode(Wire.Message(.done)))
    }
}

/// Receives one transfer from an inbound connection. Everything the peer sends is
/// checked before it is used: the offer as a whole before it is accepted (names, sizes,
/// counts, free space), then each message against the offer.
struct Receiver {
    let started: BuiltinFileTransfer.Started
    let connection: any Connection

    /// The most files and folders one offer may name.
    static let maxEntries = 100_000
    /// While an offer waits for a person, the receiver tells the sender so this often
    /// (it also keeps the connection from looking idle).
    static let waitingInterval = Duration.seconds(10)

    func run() async {
        // The receiver's own id for this transfer: random, so no peer can guess it and
        // answer for, or stand in for, an offer of someone else.
        let id = randomTransferID()
        let running = started.running.begin(id, over: connection, outgoing: false)
        defer { started.running.end(id) }
        var progress: TransferProgress?
        do {
            try await receive(id: id, &progress)
            await connection.close()
        } catch {
            var reason = "\(error)"
            if running.isCancelled {
                // The peer was told by the cancel itself.
                let kept = (progress?.bytesDone ?? 0) > 0 ? "; the partial file is kept, and sending again resumes from it" : ""
                reason = "the transfer was cancelled on this host (`kizuna cancel`) after \(progress?.bytesDone ?? 0) of \(progress?.bytesTotal ?? 0) bytes\(kept)"
            } else {
                if (error as? TransferError)?.isViolation == true { started.violations.add(1, ordering: .relaxed) }
                var failure = Wire.Message(.error)
                failure.reason = reason
                await Wire.sendFinal(failure, over: connection, on: started.context.runtime)
            }
            if let progress { started.context.events.publish(.transferFailed(progress, reason: reason)) }
            started.context.logger.warning("receive failed", metadata: ["peer": "\(connection.peer)", "reason": "\(reason)"])
            // (A cancelled transfer's connection is closed by the cancel.)
        }
    }

    /// Answers the offer with a refusal and ends the transfer; `violation` if the offer
    /// itself broke the protocol's rules.
    private func refuse(_ reason: String, violation: Bool = false) async throws -> Never {
        var answer = Wire.Message(.answer)
        answer.accept = false
        answer.reason = reason
        try? await connection.send(Wire.encode(answer))
        var error = TransferError("refused: \(reason)")
        error.isViolation = violation
        throw error
    }

    /// Checks an offer as a whole; returns its names, parsed, and its total size.
    static func check(_ offer: Wire.Message) throws(TransferError) -> (paths: [PeerPath], total: Int64) {
        guard offer.id != nil, let files = offer.files else { throw TransferError("the offer lacks its id or its files") }
        guard files.count <= maxEntries else { throw TransferError("the offer names \(files.count) files and folders; the limit is \(maxEntries)") }
        var total: Int64 = 0
        var paths: [PeerPath] = []
        paths.reserveCapacity(files.count)
        for file in files {
            paths.append(try PeerPath(file.path))
            guard file.size >= 0 else { throw TransferError("'\(escapedForDisplay(file.path))' has a negative size") }
            guard !file.isDirectory || file.size == 0 else { throw TransferError("the folder '\(escapedForDisplay(file.path))' has a size") }
            let (sum, overflow) = total.addingReportingOverflow(file.size)
            guard !overflow else { throw TransferError("the sizes in the offer add up to more than \(Int64.max) bytes") }
            total = sum
        }
        return (paths, total)
    }

    private func receive(id: String, _ progressSlot: inout TransferProgress?) async throws {
        let context = started.context
        let options = started.options
        let offer = try await Wire.expect(.offer, from: connection)
        let files = offer.files ?? []
        let name = escapedForDisplay(offer.name ?? files.first?.path ?? "?")
        var progress = TransferProgress(id: id, peer: connection.peer, name: name, bytesDone: 0, bytesTotal: 0, outgoing: false)
        let checked = Result { () throws(TransferError) in try Self.check(offer) }
        guard case .success(let (paths, total)) = checked else {
            if case .failure(let error) = checked { try await refuse(error.description, violation: true) }
            return
        }
        progress.bytesTotal = total
        progressSlot = progress

        guard let root = try? ReceiveDirectory.open(options.receiveDirectory) else {
            try await refuse("the receiving host cannot write its receive directory")
        }
        // What must still be written: a partial file an earlier attempt left is resumed,
        // so its bytes are already on disk.
        var resumable: Int64 = 0
        for (file, path) in zip(files, paths) where !file.isDirectory {
            // (A partial file longer than the file is written again from the start.)
            let have = root.partialBytes(of: path, key: IncomingFile.key(peer: connection.peer, file: file))
            if have <= file.size { resumable += have }
        }
        let needed = total - resumable
        func tooFull() -> String {
            let free = root.freeBytes.map { "\($0) free" } ?? "free space unknown"
            let promised = started.space.promised
            return "the receiving host's disk is too full: \(needed) bytes to write"
                + (resumable > 0 ? " (\(resumable) more are here from an earlier attempt)" : "")
                + ", \(free)" + (promised > 0 ? ", \(promised) of it promised to other transfers" : "")
        }
        // Judged now, without promising anything (an offer that waits for a person must
        // not hold the disk), and promised once accepted.
        if let free = root.freeBytes, free - started.space.promised < needed { try await refuse(tooFull()) }
        let trusted = context.trust.isTrusted(connection.peer)
        // What to do with names already taken: the setting, unless the person who accepted
        // this offer chose otherwise.
        var existing = options.existing
        switch options.accept {
        case .auto: break
        case .trusted where trusted: break
        case .refuse: try await refuse("this host refuses transfers (setting accept = refuse)")
        case .ask, .trusted:
            let fileCount = files.count { !$0.isDirectory }
            let folderCount = files.count - fileCount
            let summary =
                "\(name) from \(escapedForDisplay(connection.peer.short))\(trusted ? "" : " (not paired)"), \(fileCount) file(s)\(folderCount > 0 ? ", \(folderCount) folder(s)" : ""), \(progress.bytesTotal) bytes"
            guard let decision = started.offers.register(id, summary: summary) else {
                try await refuse("too many offers are waiting for an answer on the receiving host; try again later")
            }
            context.events.publish(.transferOffered(progress))
            let answer = try await waitForAnswer(decision, within: options.offerTimeout)
            guard answer.accepted else { try await refuse("not accepted on the receiving host") }
            existing = answer.existing ?? existing
        }
        guard let reservation = started.space.reserve(needed, free: root.freeBytes) else { try await refuse(tooFull()) }
        var answer = Wire.Message(.answer)
        answer.accept = true
        try await connection.send(Wire.encode(answer))
        context.events.publish(.transferProgress(progress))

        for (file, path) in zip(files, paths) where file.isDirectory {
            _ = try root.folders(path.components, for: path)
        }
        var reported: Int64 = 0
        for (index, file) in files.enumerated() where !file.isDirectory {
            let request = try await Wire.expect(.file, from: connection)
            guard request.index == index else { throw TransferError.violation("the peer asked for file \(request.index ?? -1), expected \(index)") }
            if existing == .skip, try IncomingFile.nameIsTaken(root: root, peerPath: paths[index]) {
                // This host keeps its own file of that name; the sender sends none of it.
                var start = Wire.Message(.start)
                start.skip = true
                try await connection.send(Wire.encode(start))
                reservation.wrote(file.size)  // (the promise is given back: nothing is written)
                progress.bytesDone += file.size
                progress.skippedFiles += 1
                progressSlot = progress
                context.logger.info("kept the existing file, did not take the new one", metadata: ["name": "\(paths[index].display)", "from": "\(connection.peer)"])
                continue
            }
            let incoming = try IncomingFile(root: root, peerPath: paths[index], key: IncomingFile.key(peer: connection.peer, file: file))
            let output = incoming.file
            var offset = incoming.existingBytes
            if offset > file.size { offset = 0 }
            var hasher = SHA256()
            try output.hashPrefix(offset, into: &hasher)
            try output.truncate(to: offset)
            try output.seek(to: offset)
            progress.resumedFrom += offset
            progress.bytesDone += offset
            progressSlot = progress
            var start = Wire.Message(.start)
            start.offset = offset
            try await connection.send(Wire.encode(start))

            var written = offset
            // Data is handed to the disk as it arrives, so the fsync before 'verified'
            // waits for the last few megabytes only, not the whole file.
            var handedToDisk = offset
            receiving: while true {
                switch try await Wire.receive(from: connection) {
                case .data(let chunk):
                    guard Int64(chunk.count) <= file.size - written else {
                        throw TransferError.violation("the peer sent more than the \(file.size) bytes it offered for \(paths[index].display)")
                    }
                    if let error = Self.write(chunk, to: output) {
                        guard error.isDiskFull else { throw error }
                        incoming.discard()
                        throw TransferError("the receiving host's disk is full after \(written) of \(file.size) bytes of \(paths[index].display); the partial file was removed")
                    }
                    hasher.update(data: chunk)
                    written += Int64(chunk.count)
                    reservation.wrote(Int64(chunk.count))
                    if written - handedToDisk >= writebackStep {
                        _ = kizuna_start_writeback(output.fd, handedToDisk, written - handedToDisk)
                        handedToDisk = written
                    }
                    progress.bytesDone += Int64(chunk.count)
                    if progress.bytesDone - reported >= progressStep {
                        reported = progress.bytesDone
                        progressSlot = progress
                        context.events.publish(.transferProgress(progress))
                    }
                case .control(let message) where message.type == .end:
                    let expected = message.sha256 ?? ""
                    let actual = hasher.finalize().hex
                    var verified = Wire.Message(.verified)
                    if written == file.size, expected == actual {
                        if case .failure(let error) = Result(catching: { () throws(TransferError) in try incoming.commit(existing) }) {
                            guard error.isDiskFull else { throw error }
                            incoming.discard()
                            throw TransferError("the receiving host's disk is full; the partial file of \(paths[index].display) was removed")
                        }
                        verified.ok = true
                        try await connection.send(Wire.encode(verified))
                        break receiving
                    }
                    incoming.discard()
                    verified.ok = false
                    verified.reason = written == file.size
                        ? "SHA-256 mismatch (expected \(escapedForDisplay(expected)), received data hashes to \(actual)); the partial file was removed"
                        : "got \(written) of \(file.size) bytes"
                    try? await connection.send(Wire.encode(verified))
                    throw TransferError.violation("\(paths[index].display): \(verified.reason!)")
                case .control(let message) where message.type == .error:
                    throw TransferError("\(paths[index].display): the peer gave up after \(written) of \(file.size) bytes: \(escapedForDisplay(message.reason ?? "no reason given")); the partial file is kept, and sending again resumes from it")
                case .control(let message):
                    throw TransferError.violation("expected file data or 'end', got '\(message.type.rawValue)'")
                case nil:
                    throw TransferError("the connection was lost after \(written) of \(file.size) bytes of \(paths[index].display); the partial file is kept, and sending again resumes from it")
                }
            }
        }
        _ = try await Wire.expect(.done, from: connection)
        progressSlot = progress
        context.events.publish(.transferDone(progress))
        context.logger.info("received", metadata: ["name": "\(progress.name)", "bytes": "\(progress.bytesTotal)", "from": "\(connection.peer)"])
    }

    private static func write(_ chunk: ArraySlice<UInt8>, to output: OpenFile) -> TransferError? {
        do {
            try chunk.withUnsafeBytes { try output.write($0) }
            return nil
        } catch {
            return error as? TransferError ?? TransferError("\(error)")
        }
    }

    /// Waits for a person's answer, telling the sender every few seconds that the offer
    /// is still waiting. True if it was accepted.
    private func waitForAnswer(_ decision: PendingOffers.Decision, within limit: Duration) async throws -> (accepted: Bool, existing: ExistingFiles?) {
        let connection = connection
        return try await withThrowingTaskGroup(of: (accepted: Bool, existing: ExistingFiles?)?.self) { group in
            group.addTask { await decision.wait(within: limit) }
            group.addTask {
                while !Task.isCancelled {
                    try await connection.send(Wire.encode(Wire.Message(.waiting)))
                    try await Task.sleep(for: Self.waitingInterval)
                }
                return nil
            }
            // The sender says nothing until it has the answer: a close withdraws the offer
            // (so it stops waiting at once), and anything else breaks the protocol.
            group.addTask {
                let message = try await connection.receive()
                if Task.isCancelled { return nil }
                if message == nil { throw TransferError("the sender withdrew the offer") }
                throw TransferError.violation("the peer sent a message while its offer waited for an answer")
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            return (false, nil)
        }
    }
}

/// 64 random bits from the system's generator, as 16 hex digits.
func randomTransferID() -> String {
    var generator = SystemRandomNumberGenerator()
    let value = generator.next() as UInt64
    let hex = String(value, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}
