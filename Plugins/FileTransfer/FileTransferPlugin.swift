// The built-in file transfer: sends a file or a directory tree to a peer over whatever
// transport is loaded, in chunks with backpressure, verified with SHA-256 at the
// receiver, written under a temporary name and renamed only once verified, and resumed
// from what the receiver already has when a transfer is sent again after an interruption.
import Foundation
import KizunaBuiltinSupport
import KizunaSDK
import Synchronization

final class BuiltinFileTransfer: FileTransferPlugin {
    private let started = WatchChannel<Started?>(nil)
    /// The same, for the calls that must not wait.
    private let live = Mutex<Started?>(nil)

    final class Started: Sendable {
        let context: PluginContext
        let transport: any TransportPlugin
        let options: Options
        let offers = PendingOffers()
        let running = RunningTransfers()
        /// Disk space promised to the transfers being received.
        let space = SpaceReservations()
        /// Numbers this host's outgoing transfers.
        let counter = Atomic<Int>(0)
        /// Outgoing bytes per second for each transfer; 0 for no limit.
        let rateLimit = Atomic<Int>(0)
        /// Transfers ended because the peer broke the protocol.
        let violations = Atomic<UInt64>(0)

        init(context: PluginContext, transport: any TransportPlugin, options: Options) {
            self.context = context
            self.transport = transport
            self.options = options
        }
    }

    struct Options: Sendable {
        var receiveDirectory: String
        var accept: AcceptPolicy = .trusted
        var chunkBytes = 256 << 10
        var offerTimeout = Duration.seconds(120)
        var rateLimit = 0
        var existing = ExistingFiles.rename
        /// Partial files that no transfer resumed for this long are removed (nil: never).
        var partialMaxAge: Duration? = .seconds(7 * 86_400)

        /// trusted: accept from paired peers, hold the rest for a decision; ask: hold every
        /// offer; refuse: refuse every offer; auto: accept every offer, from anyone.
        enum AcceptPolicy: String, Sendable { case trusted, ask, refuse, auto }

        static let schema = SettingsSchema(
            plugin: "file-transfer",
            [
                "receive-dir": .string, "accept": .string, "existing": .string, "chunk-bytes": .integer, "rate-limit-bytes-per-second": .integer,
                "offer-timeout-seconds": .integer, "partial-max-age-days": .integer,
            ])

        init(_ settings: PluginSettings) throws(TransferError) {
            if let refusal = Self.schema.refusal(of: settings) { throw TransferError(refusal) }
            let home = ProcessInfo.processInfo.environment["HOME"] ?? NSHomeDirectory()
            receiveDirectory = settings.string("receive-dir").map { ($0 as NSString).expandingTildeInPath } ?? "\(home)/.kizuna/received"
            if let text = settings.string("accept") {
                guard let policy = AcceptPolicy(rawValue: text) else {
                    throw TransferError(
                        "setting 'accept' is '\(text)'; use trusted (accept from paired peers, hold the rest for `accept ID`), ask (hold every offer), refuse, or auto (accept every offer, from anyone)")
                }
                accept = policy
            }
            if let text = settings.string("existing") {
                guard let policy = ExistingFiles(rawValue: text) else {
                    throw TransferError(
                        "setting 'existing' is '\(text)'; use rename (keep the existing file, give the new one a free name such as 'photo (2).jpg'), skip (keep the existing file, do not take the new one) or overwrite")
                }
                existing = policy
            }
            if let bytes = settings.integer("chunk-bytes") {
                guard (4096...(8 << 20)).contains(bytes) else { throw TransferError("setting 'chunk-bytes' is \(bytes); give 4096 to 8388608") }
                chunkBytes = Int(bytes)
            }
            if let rate = settings.integer("rate-limit-bytes-per-second") {
                guard rate >= 0 else { throw TransferError("setting 'rate-limit-bytes-per-second' is \(rate); give 0 (no limit) or more") }
                rateLimit = Int(rate)
            }
            if let days = settings.integer("partial-max-age-days") {
                guard (0...36_500).contains(days) else { throw TransferError("setting 'partial-max-age-days' is \(days); give 0 (keep them for ever) to 36500") }
                partialMaxAge = days == 0 ? nil : .seconds(days * 86_400)
            }
            if let seconds = settings.integer("offer-timeout-seconds") {
                guard seconds >= 1 else { throw TransferError("setting 'offer-timeout-seconds' is \(seconds); give at least 1") }
                offerTimeout = .seconds(seconds)
            }
        }
    }

    func run(context: PluginContext) async throws {
        guard let transport = context.transport else { throw TransferError("no transport was given; the manifest must require one") }
        let options = try Options(context.settings)
        do {
            try FileManager.default.createDirectory(atPath: options.receiveDirectory, withIntermediateDirectories: true)
        } catch {
            throw TransferError("cannot create the receive directory \(options.receiveDirectory): \(error.localizedDescription); set 'receive-dir' (or `kizuna run --receive-dir`) to a writable folder")
        }
        let running = Started(context: context, transport: transport, options: options)
        running.rateLimit.store(options.rateLimit, ordering: .relaxed)
        activeTransfers.withLock { $0 = running }
        live.withLock { $0 = running }
        defer {
            activeTransfers.withLock { if $0?.context === context { $0 = nil } }
            live.withLock { $0 = nil }
        }
        started.send(running)
        context.logger.info("receiving", metadata: ["directory": "\(options.receiveDirectory)", "accept": "\(options.accept.rawValue)"])

        let server = try context.runtime.spawn(name: "file-transfer inbound") {
            for await connection in context.inbound {
                _ = try? context.runtime.spawn(name: "receive from \(connection.peer)") {
                    await Receiver(started: running, connection: connection).run()
                }
            }
        }
        // Partial files nothing resumed: removed at start and every hour after.
        let sweeper = try context.runtime.spawn(name: "partial files") {
            guard let age = options.partialMaxAge else { return }
            while !Task.isCancelled {
                let cutoff = Int(Date().timeIntervalSince1970) - Int(age.components.seconds)
                let swept = try await context.runtime.spawnBlocking(name: "sweep partial files") {
                    PartialFiles.sweep(options.receiveDirectory, removingOlderThan: cutoff)
                }.value
                if swept.removed > 0 {
                    context.logger.info(
                        "removed partial files no transfer resumed", metadata: ["files": "\(swept.removed)", "bytes": "\(swept.removedBytes)", "older-than-days": "\(age.components.seconds / 86_400)"])
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
        context.ready()
        await context.shutdown.wait()
        sweeper.cancel()
        running.offers.refuseAll()
        server.cancel()
        started.finish()
    }

    func send(path: String, to peer: Peer, progress: @escaping @Sendable (TransferProgress) -> Void) async throws -> TransferProgress {
        guard let running = await runningState() else { throw TransferError("the file-transfer plugin is not running") }
        return try await Sender(started: running, path: path, peer: peer, report: progress).run()
    }

    func answer(offer id: String, accept: Bool, existing: ExistingFiles?) -> Bool {
        live.withLock { $0 }?.offers.answer(id, accept: accept, existing: existing) ?? false
    }

    func cancel(transfer id: String) -> Bool {
        guard let running = live.withLock({ $0 }) else { return false }
        return running.running.cancel(id, on: running.context.runtime)
    }

    private func runningState() async -> Started? {
        for await value in started.subscribe() {
            if let value { return value }
        }
        return nil
    }
}

/// The running plugin instance, for the actions.
let activeTransfers = Mutex<BuiltinFileTransfer.Started?>(nil)

/// Offers waiting for a person's answer (accept policy `ask`), under the receiver's own
/// random ids.
final class PendingOffers: Sendable {
    /// The most offers that may wait at once; more are refused, so that no peer can make
    /// the host hold an endless list.
    static let limit = 32

    final class Decision: Sendable {
        let summary: String
        fileprivate let answered = ShutdownSignal()
        /// The answer: accepted, and what to do with names already taken (nil: the setting).
        fileprivate let answer = Mutex<(accepted: Bool, existing: ExistingFiles?)>((false, nil))
        fileprivate let owner: PendingOffers
        fileprivate let id: String
        fileprivate init(summary: String, owner: PendingOffers, id: String) {
            self.summary = summary
            self.owner = owner
            self.id = id
        }

        /// Waits up to `limit` for `accept` or `refuse`; not accepted if no answer came. The
        /// offer is no longer pending afterwards.
        func wait(within limit: Duration) async -> (accepted: Bool, existing: ExistingFiles?) {
            defer { owner.waiting.withLock { _ = $0.removeValue(forKey: id) } }
            guard await answered.subscribe().wait(within: limit) else { return (false, nil) }
            return answer.withLock { $0 }
        }
    }

    private let waiting = Mutex<[String: Decision]>([:])

    /// Records offer `id` as waiting; nil if too many already wait.
    func register(_ id: String, summary: String) -> Decision? {
        waiting.withLock { waiting in
            guard waiting.count < Self.limit else { return nil }
            let decision = Decision(summary: summary, owner: self, id: id)
            waiting[id] = decision
            return decision
        }
    }

    /// Answers offer `id` (`existing`: for this offer, what to do with names already
    /// taken; nil for the setting); false if there is no such offer.
    func answer(_ id: String, accept: Bool, existing: ExistingFiles? = nil) -> Bool {
        guard let offer = waiting.withLock({ $0[id] }) else { return false }
        offer.answer.withLock { $0 = (accept, existing) }
        offer.answered.signal()
        return true
    }

    /// One line per waiting offer; the names in them were escaped when the offer came.
    var summaries: [String] { waiting.withLock { $0.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.summary)" } } }

    func refuseAll() {
        for offer in waiting.withLock({ Array($0.values) }) { offer.answered.signal() }
    }
}

/// `accept ID`: accepts an offer waiting for an answer.
@_cdecl("kizuna_files_accept") public func kizunaFilesAccept(_ id: UnsafePointer<CChar>) -> Bool {
    activeTransfers.withLock { $0 }?.offers.answer(String(cString: id), accept: true) ?? false
}

/// `refuse ID`: refuses an offer waiting for an answer.
@_cdecl("kizuna_files_refuse") public func kizunaFilesRefuse(_ id: UnsafePointer<CChar>) -> Bool {
    activeTransfers.withLock { $0 }?.offers.answer(String(cString: id), accept: false) ?? false
}

/// `set-rate-limit BYTES`: limits outgoing transfers to BYTES per second (0: no limit).
@_cdecl("kizuna_files_set_rate_limit") public func kizunaFilesSetRateLimit(_ bytesPerSecond: UInt64) -> Bool {
    guard let running = activeTransfers.withLock({ $0 }) else { return false }
    running.rateLimit.store(Int(clamping: bytesPerSecond), ordering: .relaxed)
    return true
}

/// `partial-bytes`: the bytes held in partial files beneath the receive directory.
@_cdecl("kizuna_files_partial_bytes") public func kizunaFilesPartialBytes() -> UInt64 {
    guard let running = activeTransfers.withLock({ $0 }) else { return 0 }
    return UInt64(max(0, PartialFiles.sweep(running.options.receiveDirectory).bytes))
}

/// `violations`: transfers ended because the peer broke the protocol (a malformed or
/// out-of-order message, names or sizes the offer may not have, data that contradicts it).
@_cdecl("kizuna_files_violations") public func kizunaFilesViolations() -> UInt64 {
    activeTransfers.withLock { $0 }?.violations.load(ordering: .relaxed) ?? 0
}

/// `pending`: the offers waiting for an answer, one per line (malloc'd; the host frees it).
@_cdecl("kizuna_files_pending") public func kizunaFilesPending() -> UnsafeMutablePointer<CChar> {
    strdup((activeTransfers.withLock { $0 }?.offers.summaries ?? []).joined(separator: "\n"))!
}

@_cdecl("kizuna_plugin_entry") public func kizunaPluginEntry() -> UnsafeRawPointer { exportPlugin { BuiltinFileTransfer() } }
