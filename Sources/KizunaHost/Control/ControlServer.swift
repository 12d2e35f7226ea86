import CKizunaHost
import Foundation
import Glibc
import KizunaSDK

/// Serves a host's control socket: a Unix socket with owner-only permissions that refuses
/// connections from other users. Each connection sends one ``ControlRequest`` line and
/// gets ``ControlResponse`` lines back.
///
/// Accepting and each connection run on the runtime's blocking pool, and call into the
/// host with `blockOn`. Call ``stop()`` before shutting the host down.
public final class ControlServer: Sendable {
    /// The socket's path.
    public let path: String
    private let listener: LineSocket
    private let host: KizunaHost
    private let connections = LockedConnections()

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
        do {
            try host.runtime.handle.spawnBlocking(name: "control-accept") { server.acceptLoop() }
        } catch {
            throw ControlError("the host's runtime is shut down; start a new host")
        }
        return server
    }

    private init(path: String, listener: LineSocket, host: KizunaHost) {
        self.path = path
        self.listener = listener
        self.host = host
    }

    /// Stops accepting, disconnects every client and removes the socket file.
    public func stop() {
        listener.shutdownBoth()
        for connection in connections.drain() { connection.shutdownBoth() }
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let fd = kizuna_accept(listener.fd)
            if fd < 0 {
                if -fd == EINTR || -fd == ECONNABORTED { continue }
                return  // the listener was shut down
            }
            let connection = LineSocket(fd: fd)
            guard kizuna_socket_peer_uid(fd) == Int(getuid()) else {
                connection.encode(ControlResponse.failure("this host belongs to another user; connections from other users are refused"))
                continue
            }
            connections.insert(connection)
            let server = self
            do {
                try host.runtime.handle.spawnBlocking(name: "control-connection") {
                    server.serve(connection)
                    server.connections.remove(connection)
                }
            } catch {
                connection.encode(ControlResponse.failure("the host is shutting down"))
                connections.remove(connection)
            }
        }
    }

    private func serve(_ connection: LineSocket) {
        guard let line = connection.readLine() else { return }
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line.utf8)) else {
            connection.encode(ControlResponse.failure("the request is not a control request; send one JSON object per line such as {\"command\":\"list\"}"))
            return
        }
        if request.command == .events {
            streamEvents(to: connection)
            return
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
            case .events: return .failure("events is streamed, not answered")
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
                    case .load: try await host.load(name)
                    case .unload: try await host.unload(name)
                    case .reload: try await host.reload(name)
                    default: try await host.info(name)
                    }
                return ControlResponse(ok: true, plugin: plugin)
            }
        } catch {
            return .failure(error.description)
        }
    }

    private func streamEvents(to connection: LineSocket) {
        let receiver = host.events.subscribe()
        guard connection.encode(ControlResponse(ok: true)) else { return }
        while let message = try? host.runtime.handle.blockOn({ await receiver.receive() }) {
            let response: ControlResponse
            switch message {
            case .element(let event): response = ControlResponse(ok: true, event: event)
            case .lagged(let missed): response = ControlResponse(ok: true, missedEvents: missed)
            }
            guard connection.encode(response) else { return }
        }
    }
}

/// The connections being served, so ``ControlServer/stop()`` can disconnect them.
private final class LockedConnections: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [ObjectIdentifier: LineSocket] = [:]

    func insert(_ connection: LineSocket) { lock.withLock { open[ObjectIdentifier(connection)] = connection } }
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
            throw ControlError("the host at \(path) closed the connection without answering; check that it is a Kizuna host")
        }
        return response
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
