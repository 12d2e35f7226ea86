import KizunaSDK
import Synchronization

extension Conformance {
    /// Two hosts with the transport under test; a connection from the first to the second.
    static func connectedPair(_ environment: CheckEnvironment) async throws -> (near: any Connection, far: any Connection, a: TestHost, b: TestHost) {
        let a = environment.host("a"), b = environment.host("b")
        let near = try environment.startSubject(on: a)
        let far = try environment.startSubject(on: b)
        let connection = try await connect(near, to: far)
        guard let inbound = await environment.unclaimed.receive() else { throw CheckFailure("the connection never arrived at the other side") }
        return (connection, inbound, a, b)
    }

    static func connect(_ from: HostedPlugin, to target: HostedPlugin, service: String = "conformance") async throws -> any Connection {
        guard case .transport(let transport) = from.object, case .transport(let other) = target.object else { throw CheckFailure("not a transport") }
        guard let address = await other.listeningAddress() else { throw CheckFailure("listeningAddress() is nil once running") }
        do {
            return try await transport.connect(to: address, service: service)
        } catch {
            throw CheckFailure("connect(to: \(address)) failed: \(error)")
        }
    }

    /// Receives the next message, failing the check if none comes within `limit`.
    static func receive(_ connection: any Connection, within limit: Duration = .seconds(10), _ what: String) async throws -> [UInt8]? {
        let result = Locked<Result<[UInt8]?, any Error>?>(nil)
        let done = ShutdownSignal()
        let task = Task {
            do { result.set(.success(try await connection.receive())) } catch { result.set(.failure(error)) }
            done.signal()
        }
        guard await done.subscribe().wait(within: limit) else {
            task.cancel()
            throw CheckFailure("\(what): nothing arrived within \(limit)")
        }
        return try result.get()!.get()
    }

    static let transportChecks: [ConformanceCheck] = [
        ConformanceCheck("transport.round-trip", "messages of 0 B to 1 MiB arrive whole, in order, both ways", kinds: [.transport]) { environment in
            let (near, far, a, _) = try await connectedPair(environment)
            for size in [0, 1, 1000, 65536, 1 << 20] {
                let message = randomBytes(size)
                try await near.send(message)
                try require(try await receive(far, "a \(size)-byte message") == message, "a \(size)-byte message arrived changed")
                let reply = randomBytes(size)
                try await far.send(reply)
                try require(try await receive(near, "a \(size)-byte reply") == reply, "a \(size)-byte reply arrived changed")
            }
            try require(far.service == "conformance", "the accepting side sees service '\(far.service)', not the 'conformance' the connection was opened for")
            if far.peer != a.identity.id {
                return .warning("the accepting side names its peer '\(far.peer)', not the connecting host's id \(a.identity.id)")
            }
            return .passed()
        },
        ConformanceCheck("transport.backpressure", "send waits while the peer reads nothing; nothing is lost once it reads", kinds: [.transport]) { environment in
            let (near, far, _, _) = try await connectedPair(environment)
            let total = 512
            let sent = Atomic<Int>(0)
            let sender = try environment.runtime.spawn(name: "flood") {
                for index in 0..<total {
                    var block = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 1 << 20)
                    block[0] = UInt8(index >> 8)
                    block[1] = UInt8(index & 0xFF)
                    try await near.send(block)
                    sent.add(1, ordering: .relaxed)
                }
            }
            // Wait until sends stop completing (a second without progress) or all are done.
            var last = -1
            var still = 0
            while still < 4, sent.load(ordering: .relaxed) < total {
                try await Task.sleep(for: .milliseconds(250))
                let now = sent.load(ordering: .relaxed)
                still = now == last ? still + 1 : 0
                last = now
            }
            let inFlight = sent.load(ordering: .relaxed)
            try require(inFlight < total, "all \(total) MiB were accepted while the peer read nothing: send does not wait for the reader")
            for index in 0..<total {
                guard let block = try await receive(far, "message \(index) of \(total)") else { throw CheckFailure("the connection ended after \(index) of \(total) messages") }
                try require(block.count == 1 << 20 && Int(block[0]) << 8 | Int(block[1]) == index, "message \(index) arrived out of order or changed")
            }
            try await sender.value
            return .passed("sends waited after \(inFlight) MiB were in flight")
        },
        ConformanceCheck("transport.closes-cleanly", "after close(), the peer gets every message sent before it, then the end", kinds: [.transport]) { environment in
            let (near, far, _, _) = try await connectedPair(environment)
            for index in 0..<3 { try await near.send([UInt8(index)]) }
            await near.close()
            for index in 0..<3 {
                try require(try await receive(far, "message \(index) before the close") == [UInt8(index)], "message \(index) sent before close() was lost or changed")
            }
            try require(try await receive(far, "the end of the connection") == nil, "the peer got more messages after the close")
            return .passed()
        },
        ConformanceCheck("transport.survives-peer-reset", "a peer that goes away ends the connection, and new connections work", kinds: [.transport]) { environment in
            let (near, _, a, b) = try await connectedPair(environment)
            await b.stopAll()
            do {
                let message = try await receive(near, within: .seconds(30), "the end of a connection whose peer stopped")
                try require(message == nil, "a message arrived from a peer that stopped")
            } catch let failure as CheckFailure {
                throw failure
            } catch {
                // An error is a fine way to learn of a reset.
            }
            let c = environment.host("c")
            let fresh = try environment.startSubject(on: c)
            guard let nearPlugin = a.running(.transport) else { throw CheckFailure("the transport stopped when its peer went away") }
            let connection = try await connect(nearPlugin, to: fresh)
            guard let inbound = await environment.unclaimed.receive() else { throw CheckFailure("the new connection never arrived") }
            try await connection.send([42])
            try require(try await receive(inbound, "a message on a new connection") == [42], "a message on a new connection arrived changed")
            return .passed()
        },
    ]
}
