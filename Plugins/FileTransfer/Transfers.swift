import Crypto
import Foundation
import Glibc
import KizunaSDK
import Synchronization

/// How often progress is reported: every this many bytes, and at the end.
private let progressStep: Int64 = 8 << 20

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
        do {
            let connection = try await connect()
            do {
                try await transfer(files, sources, over: connection, &progress)
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
        } catch {
            context.events.publish(.transferFailed(progress, reason: "\(error)"))
            throw error
        }
        context.events.publish(.transferDone(progress))
        report(progress)
        return progress
    }

    private func connect() async throws -> any Connection {
        if !peer.services.isEmpty, !peer.services.contains("file-transfer") {
            throw TransferError("peer \(peer.id) (\(peer.name)) does not offer file-transfer; it offers \(peer.services.joined(separator: ", "))")
        }
        var failures: [String] = []
        for address in peer.addresses {
            do {
                return try await started.transport.connect(to: address, service: "file-transfer")
            } catch {
                failures.append("\(address): \(error)")
            }
        }
        throw TransferError("cannot reach peer \(peer.id): \(failures.isEmpty ? "it has no address" : failures.joined(separator: "; "))")
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
        let answer = try await Wire.expect(.answer, from: connection)
        guard answer.accept == true else { throw TransferError("peer \(peer.id) refused the transfer: \(answer.reason ?? "no reason given")") }

        var reported: Int64 = 0
        for (index, file) in files.enumerated() where !file.isDirectory {
            var request = Wire.Message(.file)
            request.index = index
            try await connection.send(Wire.encode(request))
            let start = try await Wire.expect(.start, from: connection)
            let offset = min(max(start.offset ?? 0, 0), file.size)
            let source = try OpenFile(path: sources[index], flags: O_RDONLY)
            var hasher = SHA256()
            try source.hashPrefix(offset, into: &hasher)
            progress.resumedFrom += offset
            progress.bytesDone += offset

            var remaining = file.size - offset
            let chunk = started.options.chunkBytes
            while remaining > 0 {
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
                throw TransferError("peer \(peer.id) could not verify \(file.path): \(verified.reason ?? "no reason given")")
            }
        }
        try await connection.send(Wire.encode(Wire.Message(.done)))
    }
}

/// Receives one transfer from an inbound connection.
struct Receiver {
    let started: BuiltinFileTransfer.Started
    let connection: any Connection

    func run() async {
        var progress: TransferProgress?
        do {
            try await receive(&progress)
        } catch {
            var failure = Wire.Message(.error)
            failure.reason = "\(error)"
            try? await connection.send(Wire.encode(failure))
            if let progress { started.context.events.publish(.transferFailed(progress, reason: "\(error)")) }
            started.context.logger.warning("receive failed", metadata: ["peer": "\(connection.peer)", "reason": "\(error)"])
        }
        await connection.close()
    }

    private func refuse(_ reason: String, _ progress: TransferProgress) async throws {
        var answer = Wire.Message(.answer)
        answer.accept = false
        answer.reason = reason
        try? await connection.send(Wire.encode(answer))
        throw TransferError("refused: \(reason)")
    }

    private func receive(_ progressSlot: inout TransferProgress?) async throws {
        let context = started.context
        let options = started.options
        let offer = try await Wire.expect(.offer, from: connection)
        // The folder may have been removed since the plugin started.
        try? FileManager.default.createDirectory(atPath: options.receiveDirectory, withIntermediateDirectories: true)
        let files = offer.files ?? []
        var progress = TransferProgress(
            id: "\(offer.id ?? "unnamed")", peer: connection.peer, name: offer.name ?? files.first?.path ?? "?", bytesDone: 0,
            bytesTotal: files.reduce(0) { $0 + max($1.size, 0) }, outgoing: false)
        progressSlot = progress

        if offer.id == nil || offer.files == nil { try await refuse("the offer lacks its id or its files", progress) }
        if let bad = files.lazy.compactMap({ refusal(of: $0.path) }).first { try await refuse("a name would leave the receive directory: \(bad)", progress) }
        if files.contains(where: { $0.size < 0 }) { try await refuse("a file has a negative size", progress) }
        switch options.accept {
        case .auto: break
        case .refuse: try await refuse("this host refuses transfers (setting accept = refuse)", progress)
        case .ask:
            context.events.publish(.transferOffered(progress))
            let summary = "\(progress.name) from \(connection.peer), \(files.count) file(s), \(progress.bytesTotal) bytes"
            if !(await started.offers.decide(progress.id, summary: summary, within: options.offerTimeout)) {
                try await refuse("not accepted on the receiving host", progress)
            }
        }
        var answer = Wire.Message(.answer)
        answer.accept = true
        try await connection.send(Wire.encode(answer))
        context.events.publish(.transferProgress(progress))

        for folder in files where folder.isDirectory {
            try Destination.makeFolders(root: options.receiveDirectory, folder.path.split(separator: "/").map(String.init), for: folder.path)
        }
        var reported: Int64 = 0
        for (index, file) in files.enumerated() where !file.isDirectory {
            let request = try await Wire.expect(.file, from: connection)
            guard request.index == index else { throw TransferError("the peer asked for file \(request.index ?? -1), expected \(index)") }
            var keyHasher = SHA256()
            keyHasher.update(data: Array("\(connection.peer)\n\(file.path)\n\(file.size)\n\(file.modified)".utf8))
            let destination = try Destination(root: options.receiveDirectory, relativePath: file.path, key: String(keyHasher.finalize().hex.prefix(16)))
            var offset = destination.partialSize
            if offset > file.size { offset = 0 }
            let output = try OpenFile(path: destination.partialPath, flags: O_RDWR | O_CREAT | O_NOFOLLOW)
            var hasher = SHA256()
            try output.hashPrefix(offset, into: &hasher)
            try output.truncate(to: offset)
            try output.seek(to: offset)
            progress.resumedFrom += offset
            progress.bytesDone += offset
            var start = Wire.Message(.start)
            start.offset = offset
            try await connection.send(Wire.encode(start))

            var written = offset
            receiving: while true {
                switch try await Wire.receive(from: connection) {
                case .data(let chunk):
                    guard written + Int64(chunk.count) <= file.size else {
                        throw TransferError("the peer sent more than the \(file.size) bytes it offered for \(file.path)")
                    }
                    try chunk.withUnsafeBytes { try output.write($0) }
                    hasher.update(data: chunk)
                    written += Int64(chunk.count)
                    progress.bytesDone += Int64(chunk.count)
                    if progress.bytesDone - reported >= progressStep {
                        reported = progress.bytesDone
                        context.events.publish(.transferProgress(progress))
                    }
                case .control(let message) where message.type == .end:
                    let expected = message.sha256 ?? ""
                    let actual = hasher.finalize().hex
                    var verified = Wire.Message(.verified)
                    if written == file.size, expected == actual {
                        guard rename(destination.partialPath, destination.finalPath) == 0 else {
                            throw TransferError("cannot rename \(destination.partialPath) to \(destination.finalPath): \(String(cString: strerror(errno)))")
                        }
                        verified.ok = true
                        try await connection.send(Wire.encode(verified))
                        break receiving
                    }
                    unlink(destination.partialPath)
                    verified.ok = false
                    verified.reason = written == file.size
                        ? "SHA-256 mismatch (expected \(expected), received data hashes to \(actual)); the partial file was removed"
                        : "got \(written) of \(file.size) bytes"
                    try? await connection.send(Wire.encode(verified))
                    throw TransferError("\(file.path): \(verified.reason!)")
                case .control(let message):
                    throw TransferError("expected file data or 'end', got '\(message.type.rawValue)'")
                case nil:
                    throw TransferError("the connection was lost after \(written) of \(file.size) bytes of \(file.path); the partial file is kept, and sending again resumes from it")
                }
            }
        }
        _ = try await Wire.expect(.done, from: connection)
        progressSlot = progress
        context.events.publish(.transferDone(progress))
        context.logger.info("received", metadata: ["name": "\(progress.name)", "bytes": "\(progress.bytesTotal)", "from": "\(connection.peer)"])
    }
}
