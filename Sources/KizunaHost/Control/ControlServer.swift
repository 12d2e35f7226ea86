import CKizunaHost
import Foundation
import Glibc
import KizunaSDK
import Synchronization

/// Serves a host's control socket: a Unix socket with owner-only permissions that refuses
/// connections from other users. Each connection sends one ``ControlRequest`` line and
/// gets ``ControlResponse`` lines back.
///
/// Accepting and each connection run on threads of the control server's own, never on the
/// runtime's pools, so that no plugin (and no peer a plugin serves) can use up the threads
/// the control socket needs; they call into the host with `blockOn`. At most
/// ``maxConnections`` clients are served at once. Call ``stop()`` before shutting the
/// host down.
public final class ControlServer: Sendable {
    /// The socket's path.
    public let path: String
    private let listener: LineSocket
    private let host: KizunaHost
    private let connections = LockedConnections()
    private let stopped = Atomic(false)

    /// Binds `path` and starts serving `host`.
    /// - Throws: ``ControlError`` if another host serves `path`, `path` is not a socket, or
    ///   it cannot be bound; the message says what to do.
    public static func start(host: KizunaHost, path: String) throws(ControlError) -> ControlServer {
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                throw ControlError("\(path) exists and is not a socket; remove it, or choose another path with --socket")
            }
            let probe = kizuna_unix_connect(path)
            if probe >= 0 {
                close(probe)
                throw ControlError("a Kizuna host is already serving \(path); stop it, or start this one with --socket OTHER_PATH")
            }
            unlink(path)  // a stale socket left by a host that is gone
        }
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = kizuna_unix_listen(path)
        guard fd >= 0 else {
            throw ControlError("cannot listen on \(path) (\(String(cString: strerror(-fd)))); choose another path with --socket")
        }
        let server = ControlServer(path: path, listener: LineSocket(fd: fd), host: host)
        let thread = Thread { server.acceptLoop() }
        thread.name = "kizuna-control"
        thread.start()
        return server
    }

    private init(path: String, listener: LineSocket, host: KizunaHost) {
        self.path = path
        self.listener = listener
        self.host = host
    }

    /// Clients served at once; more are told to try again.
    public static let maxConnections = 64

    /// Stops accepting, disconnects every client and removes the socket file.
    public func stop() {
        stopped.store(true, ordering: .releasing)
        listener.shutdownBoth()
        for connection in connections.drain() { connection.shutdownBoth() }
        unlink(path)
    }

    /// Accepts until ``stop()``. No error ends it while the host runs: when descriptors run
    /// out (EMFILE, ENFILE) or memory is short, it waits a moment and tries again, so the
    /// control socket answers again as soon as whatever held them lets go.
    private func acceptLoop() {
        var backoff: UInt32 = 10_000
        while !stopped.load(ordering: .acquiring) {
            let fd = kizuna_accept(listener.fd)
            if fd < 0 {
                if stopped.load(ordering: .acquiring) { return }
                if -fd == EINTR || -fd == ECONNABORTED { continue }
                usleep(backoff)
                backoff = min(backoff * 2, 500_000)
                continue
            }
            backoff = 10_000
            let connection = LineSocket(fd: fd, maxMessageBytes: LineSocket.maxRequestBytes)
            guard kizuna_socket_peer_uid(fd) == Int(getuid()) else {
                connection.encode(ControlResponse.failure("this host belongs to another user; connections from other users are refused"))
                continue
            }
            guard connections.insert(connection, limit: Self.maxConnections) else {
                connection.encode(ControlResponse.failure("the host serves \(Self.maxConnections) control connections already; try again when one has ended"))
                continue
            }
            let server = self
            let thread = Thread {
                server.serve(connection)
                server.connections.remove(connection)
            }
            thread.name = "kizuna-control-client"
            thread.start()
        }
    }

    private func serve(_ connection: LineSocket) {
        guard let line = connection.readLine() else {
            if connection.limitExceeded {
                connection.encode(ControlResponse.failure("the request is longer than \(connection.maxMessageBytes) bytes; send one JSON object per line"))
            }
            return
        }
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line.utf8)) else {
            connection.encode(ControlResponse.failure("the request is not a control request; send one JSON object per line such as {\"command\":\"list\"}"))
            return
        }
        switch request.command {
        case .events: return streamEvents(to: connection)
        case .send: return send(request, over: connection)
        case .stream: return stream(request, over: connection)
        case .watch: return watch(over: connection)
        case .pair: return pair(request, over: connection)
        default: break
        }
        let host = host
        let response: ControlResponse
        do {
            response = try host.runtime.handle.blockOn { await Self.answer(request, host: host) }
        } catch {
            response = .failure("\(error)")
        }
        connection.encode(response)
    }

    private static func answer(_ request: ControlRequest, host: KizunaHost) async -> ControlResponse {
        do {
            switch request.command {
            case .list: return ControlResponse(ok: true, plugins: try await host.list())
            case .status: return ControlResponse(ok: true, status: try await host.status())
            case .events, .send, .stream, .watch, .pair: return .failure("\(request.command.rawValue) is streamed, not answered")
            case .peers: return ControlResponse(ok: true, peers: host.peers(), trusted: host.configuration.trust.all)
            case .identity: return ControlResponse(ok: true, identity: IdentityReport(host.configuration.identity, name: host.configuration.hostName))
            case .pairings: return ControlResponse(ok: true, pairings: host.pairing.waiting)
            case .answerPairing:
                guard let id = request.argument, let answer = request.arguments?.first, ["accept", "refuse"].contains(answer) else {
                    return .failure("'answerPairing' needs a request id and 'accept' or 'refuse'")
                }
                guard host.pairing.answer(id, accept: answer == "accept") else {
                    let waiting = host.pairing.waiting
                    return .failure(
                        "no pairing request '\(id)' waits; \(waiting.isEmpty ? "none waits now" : "waiting: \(waiting.map(\.id).joined(separator: ", "))") (`kizuna pair --pending` lists them)")
                }
                return ControlResponse(ok: true, result: answer == "accept" ? "accepted" : "refused")
            case .trusted: return ControlResponse(ok: true, trusted: host.configuration.trust.all)
            case .transfers: return ControlResponse(ok: true, transfers: host.transfers())
            case .answerTransfer:
                guard let id = request.argument, let answer = request.arguments?.first, ["accept", "refuse"].contains(answer) else {
                    return .failure("'answerTransfer' needs an offer id and 'accept' or 'refuse'")
                }
                let choice = request.arguments?.dropFirst().first
                let existing = choice.flatMap(ExistingFiles.init(rawValue:))
                guard choice == nil || existing != nil else {
                    return .failure("'answerTransfer' was given '\(choice ?? "")' for names already taken; give rename, skip or overwrite")
                }
                try await host.answerTransfer(id, accept: answer == "accept", existing: existing)
                return ControlResponse(ok: true, result: answer == "accept" ? "accepted" : "refused")
            case .cancelTransfer:
                guard let id = request.argument else { return .failure("'cancelTransfer' needs a transfer id") }
                try await host.cancelTransfer(id)
                return ControlResponse(ok: true, result: "cancelled")
            case .untrust:
                guard let peer = request.argument else { return .failure("'untrust' needs a peer") }
                return ControlResponse(ok: true, trusted: [try host.untrust(peer)])
            case .actions:
                guard let name = request.argument else { return .failure("'actions' needs a plugin name") }
                return ControlResponse(ok: true, actions: try await host.actions(name))
            case .call:
                guard let name = request.argument, let action = request.arguments?.first else {
                    return .failure("'call' needs a plugin name and an action name")
                }
                let result = try await host.call(name, action: action, arguments: Array(request.arguments!.dropFirst()))
                return ControlResponse(ok: true, result: result)
            case .info, .load, .unload, .reload:
                guard let name = request.argument else {
                    return .failure("'\(request.command.rawValue)' needs a plugin name")
                }
                let plugin: PluginInfo =
                    switch request.command {
                    case .load: try await host.load(name, probeAgain: request.probeAgain ?? false)
                    case .unload: try await host.unload(name)
                    case .reload: try await host.reload(name, probeAgain: request.probeAgain ?? false)
                    default: try await host.info(name)
                    }
                return ControlResponse(ok: true, plugin: plugin)
            }
        } catch {
            return .failure("\(error)")
        }
    }

    private func streamEvents(to connection: LineSocket) {
        let receiver = host.events.subscribe()
        guard connection.encode(ControlResponse(ok: true)) else { return }
        while let message = try? host.runtime.handle.blockOn({ await receiver.receive() }) {
            let response: ControlResponse
            switch message {
            case .element(let event): response = ControlResponse(ok: true, event: event, time: Date())
            case .lagged(let missed): response = ControlResponse(ok: true, missedEvents: missed)
            }
            guard connection.encode(response) else { return }
        }
    }
}

extension ControlServer {
    /// `send`: progress lines as the transfer goes, then the final progress (or a failure).
    /// The transfer never waits on the client (a paused `kizuna send | less` only delays
    /// its lines), and a client that hangs up (Ctrl-C) cancels it: the sender stops and
    /// tells the receiver, which keeps the partial file for a later resume.
    private func send(_ request: ControlRequest, over connection: LineSocket) {
        guard let path = request.argument, let peer = request.arguments?.first else {
            connection.encode(ControlResponse.failure("'send' needs a path and a peer"))
            return
        }
        let host = host
        let relay: ProgressRelay<TransferProgress, TransferProgress>
        let transfer: Task<Void, Never>
        do {
            relay = try ProgressRelay()
            transfer = try host.runtime.handle.spawn(name: "control send") {
                do {
                    relay.finish(.success(try await host.send(path: path, to: peer) { relay.post($0) }))
                } catch {
                    relay.finish(.failure(error))
                }
            }
        } catch {
            connection.encode(ControlResponse.failure("\(error)"))
            return
        }
        var clientLeft = false
        while true {
            switch relay.next(watching: clientLeft ? nil : connection.fd) {
            case .update(let progress):
                if !clientLeft, !connection.encode(ControlResponse(ok: true, progress: progress)) {
                    clientLeft = true
                    transfer.cancel()
                }
            case .clientLeft:
                clientLeft = true
                transfer.cancel()
            case .finished(let outcome):
                guard !clientLeft else { return }
                switch outcome {
                case .success(let done): connection.encode(ControlResponse(ok: true, result: "done", progress: done))
                case .failure(let error): connection.encode(ControlResponse.failure("\(error)"))
                }
                return
            }
        }
    }

    /// `pair`: a first line with the code to compare once the peer's key is proven, then
    /// the peer now trusted, or why not.
    private func pair(_ request: ControlRequest, over connection: LineSocket) {
        guard let peer = request.argument else {
            connection.encode(ControlResponse.failure("'pair' needs a peer"))
            return
        }
        let host = host
        let response: ControlResponse
        do {
            let trusted = try host.runtime.handle.blockOn {
                try await host.pair(with: peer) { request in connection.encode(ControlResponse(ok: true, pairing: request)) }
            }
            response = ControlResponse(ok: true, result: "paired", trusted: [trusted])
        } catch {
            response = .failure("\(error)")
        }
        connection.encode(response)
    }

    /// `stream`: after the first reply, the client sends binary chunks (one frame each) and
    /// an empty chunk to end; the last reply reports the stream. Frames go to the plugin
    /// through a small bounded channel, so a slow peer slows the client's reads.
    private func stream(_ request: ControlRequest, over connection: LineSocket) {
        guard let peer = request.argument else {
            connection.encode(ControlResponse.failure("'stream' needs a peer"))
            return
        }
        let host = host
        let frames = BoundedChannel<Frame>(capacity: 16)
        let sending: Task<String, any Error>
        do {
            _ = try host.peer(named: peer)
            sending = try host.runtime.handle.spawn(name: "control stream") {
                // If the plugin stops early, the reads below must not wait on it.
                defer { frames.finish() }
                return try await host.stream(FrameFeed(frames), to: peer)
            }
        } catch {
            connection.encode(ControlResponse.failure("\(error)"))
            return
        }
        connection.encode(ControlResponse(ok: true))
        var count: UInt64 = 0
        while let chunk = connection.readChunk(), !chunk.isEmpty {
            let frame = Frame(sequence: count, payload: chunk)
            guard (try? host.runtime.handle.blockOn({ try await frames.send(frame) })) != nil else { break }
            count += 1
        }
        frames.finish()
        do {
            let id = try host.runtime.handle.blockOn { try await sending.value }
            connection.encode(ControlResponse(ok: true, stream: StreamReport(id: id, peer: PeerID(peer), frames: count)))
        } catch {
            connection.encode(ControlResponse.failure("\(error)"))
        }
    }

    /// `watch`: waits for an incoming stream, replies with it, sends its frames as binary
    /// chunks and an empty chunk when it ends, then a last reply with its figures. A client
    /// slower than the stream misses the oldest frames instead of holding them up.
    private func watch(over connection: LineSocket) {
        let host = host
        let viewer: BroadcastReceiver<StreamDelivery>
        do {
            viewer = try host.runtime.handle.blockOn { try await host.watchStreams() }
        } catch {
            connection.encode(ControlResponse.failure("\(error)"))
            return
        }
        guard connection.encode(ControlResponse(ok: true)) else { return }
        var report: StreamReport?
        while let message = try? host.runtime.handle.blockOn({ await viewer.receive() }) {
            switch message {
            case .lagged(let missed):
                report?.dropped += UInt64(missed)
            case .element(.started(let id, let peer)):
                guard report == nil else { continue }
                report = StreamReport(id: id, peer: peer)
                guard connection.encode(ControlResponse(ok: true, stream: report)) else { return }
            case .element(.frame(let id, let frame)):
                guard report?.id == id else { continue }
                report?.frames += 1
                guard connection.writeChunk(frame.payload) else { return }
            case .element(.ended(let id, let skipped)):
                guard var finished = report, finished.id == id else { continue }
                finished.dropped += skipped
                connection.writeChunk([])
                connection.encode(ControlResponse(ok: true, stream: finished))
                return
            }
        }
        connection.encode(ControlResponse.failure("the streaming plugin stopped"))
    }
}

/// The connections being served, so ``ControlServer/stop()`` can disconnect them.
private final class LockedConnections: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [ObjectIdentifier: LineSocket] = [:]

    /// Adds `connection` unless `limit` are open already; false then.
    func insert(_ connection: LineSocket, limit: Int) -> Bool {
        lock.withLock {
            guard open.count < limit else { return false }
            open[ObjectIdentifier(connection)] = connection
            return true
        }
    }
    func remove(_ connection: LineSocket) { lock.withLock { open[ObjectIdentifier(connection)] = nil } }
    func drain() -> [LineSocket] {
        lock.withLock {
            defer { open.removeAll() }
            return Array(open.values)
        }
    }
}

/// Talks to a running host over its control socket.
public struct ControlClient: Sendable {
    /// The socket's path.
    public let path: String

    public init(path: String) { self.path = path }

    /// Sends `request` and returns the reply.
    /// - Throws: ``ControlError`` if the host cannot be reached or answers nothing readable.
    public func send(_ request: ControlRequest) throws(ControlError) -> ControlResponse {
        let socket = try LineSocket.connect(to: path)
        guard socket.encode(request), let response = socket.decode(ControlResponse.self) else {
            throw ControlError("the host at \(path) closed the connection without answering: it stopped or crashed while asked (its output says why), or \(path) is not a Kizuna host's socket")
        }
        return response
    }

    /// Sends `request` and calls `handle` for each reply line until it returns false or
    /// the host closes the connection.
    public func follow(_ request: ControlRequest, _ handle: (ControlResponse) throws -> Bool) throws {
        let socket = try LineSocket.connect(to: path)
        guard socket.encode(request) else { throw ControlError("the host at \(path) closed the connection") }
        while let response = socket.decode(ControlResponse.self) {
            if !(try handle(response)) { return }
        }
        throw ControlError("the host at \(path) closed the connection before the request was done")
    }

    /// Sends `request`, checks the first reply, and returns the connection for a request
    /// that goes on in binary chunks (`stream`, `watch`).
    public func open(_ request: ControlRequest) throws(ControlError) -> ControlSession {
        let socket = try LineSocket.connect(to: path)
        guard socket.encode(request), let response = socket.decode(ControlResponse.self) else {
            throw ControlError("the host at \(path) closed the connection without answering")
        }
        guard response.ok else { throw ControlError(response.error ?? "the host refused the request") }
        return ControlSession(socket: socket)
    }

    /// Follows the event bus, calling `handle` for each reply line until the host closes
    /// the stream or `handle` returns false.
    public func followEvents(_ handle: (ControlResponse) -> Bool) throws(ControlError) {
        let socket = try LineSocket.connect(to: path)
        guard socket.encode(ControlRequest(.events)) else { throw ControlError("the host at \(path) closed the connection") }
        while let response = socket.decode(ControlResponse.self) {
            if !handle(response) { return }
        }
    }
}

/// A control connection after its first reply, for requests that go on in binary chunks.
public struct ControlSession: Sendable {
    fileprivate let socket: LineSocket

    /// Sends one chunk; an empty one ends the run. False if the host is gone.
    @discardableResult
    public func writeChunk(_ bytes: [UInt8]) -> Bool { socket.writeChunk(bytes) }
    /// The next chunk (empty at the end of a run), or nil if the host is gone.
    public func readChunk() -> [UInt8]? { socket.readChunk() }
    /// The next reply line.
    public func decode<T: Decodable>(_ type: T.Type) -> T? { socket.decode(type) }
}

/// The updates of a long request, handed from the task doing it to the control thread
/// that writes them to the client. Posting never blocks (only the latest update is kept,
/// and a pipe wakes the thread), so the task never waits on a slow client; and while the
/// thread waits it also watches the client's socket, so a client that hangs up is noticed
/// at once, not at the next write.
final class ProgressRelay<Update: Sendable, Outcome: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    // Guarded by `lock`.
    private var latest: Update?
    private var outcome: Result<Outcome, any Error>?
    private let wake: (read: Int32, write: Int32)

    init() throws(ControlError) {
        var fds: [Int32] = [-1, -1]
        guard kizuna_pipe_cloexec(&fds) == 0 else { throw ControlError("cannot make a pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wake = (fds[0], fds[1])
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    func post(_ update: Update) {
        lock.withLock { latest = update }
        signal()
    }

    func finish(_ result: Result<Outcome, any Error>) {
        lock.withLock { outcome = result }
        signal()
    }

    private func signal() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)  // a full pipe already wakes the reader
    }

    enum Next {
        case update(Update)
        case finished(Result<Outcome, any Error>)
        case clientLeft
    }

    /// The latest update not yet taken, else the outcome, else waits for either; or
    /// `clientLeft` once the peer of socket `client` (if given) has hung up.
    func next(watching client: Int32?) -> Next {
        while true {
            let ready: Next? = lock.withLock {
                if let update = latest {
                    latest = nil
                    return .update(update)
                }
                return outcome.map { .finished($0) }
            }
            if let ready { return ready }
            // POLLRDHUP (0x2000): the client shut its side or closed.
            var fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0), pollfd(fd: client ?? -1, events: 0x2000, revents: 0)]
            if poll(&fds, 2, -1) < 0 { continue }  // EINTR
            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(wake.read, &drain, drain.count) > 0 {}
            }
            if client != nil, fds[1].revents & (0x2000 | Int16(POLLHUP) | Int16(POLLERR)) != 0 { return .clientLeft }
        }
    }
}
