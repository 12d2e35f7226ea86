import Foundation
import KizunaSDK

extension Conformance {
    static let concurrencyChecks: [ConformanceCheck] = [
        ConformanceCheck("concurrency.concurrent-calls", "many calls at once from many tasks all succeed") { environment in
            if let skip = try environment.requireTransportIfNeeded() { return skip }
            switch environment.subject.kind {
            case .discovery:
                let plugin = try environment.startSubject(on: environment.host("a"))
                guard case .discovery(let discovery) = plugin.object else { throw CheckFailure("not a discovery plugin") }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<200 { group.addTask { _ = await discovery.currentPeers() } }
                    try await group.waitForAll()
                }
                return .passed("200 concurrent currentPeers() calls")
            case .transport:
                let a = environment.host("a"), b = environment.host("b")
                let near = try environment.startSubject(on: a), far = try environment.startSubject(on: b)
                let echo = try environment.runtime.spawn(name: "echo") {
                    await withTaskGroup(of: Void.self) { group in
                        for await inbound in environment.unclaimed {
                            group.addTask {
                                while let message = try? await inbound.receive() { try? await inbound.send(message) }
                                await inbound.close()
                            }
                        }
                    }
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<16 {
                        group.addTask {
                            let connection = try await connect(near, to: far)
                            let message = randomBytes(65536 + index)
                            try await connection.send(message)
                            try require(try await receive(connection, "an echo") == message, "connection \(index) of 16 got another connection's data or lost some")
                            await connection.close()
                        }
                    }
                    try await group.waitForAll()
                }
                echo.cancel()
                return .passed("16 concurrent connections")
            case .fileTransfer:
                let (sender, _, peer, _, b) = try await transferPair(environment)
                let source = environment.directory + "/outgoing"
                for index in 0..<4 { try write(randomBytes((1 << 20) + index), to: "\(source)/file-\(index).bin") }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<4 { group.addTask { _ = try await send(sender, "\(source)/file-\(index).bin", to: peer) } }
                    try await group.waitForAll()
                }
                for index in 0..<4 {
                    try require(same("\(source)/file-\(index).bin", "\(environment.directory)/\(b.identity.name)-received/file-\(index).bin"), "file-\(index).bin of 4 concurrent transfers did not arrive intact")
                }
                return .passed("4 concurrent transfers")
            case .streaming:
                let (sender, receiver, peer, _, _) = try await transferPair(environment)
                guard case .streaming(let source) = sender.object, case .streaming(let sink) = receiver.object else { throw CheckFailure("not a streaming plugin") }
                let viewer = sink.watch()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 { group.addTask { _ = try await source.stream(FramesOf(frames(50, bytes: 512)), to: peer) } }
                    try await group.waitForAll()
                }
                var ended = 0
                var counts: [String: Int] = [:]
                while ended < 4, let message = await viewer.receive() {
                    switch message {
                    case .element(.frame(let id, _)): counts[id, default: 0] += 1
                    case .element(.ended): ended += 1
                    default: break
                    }
                }
                try require(counts.count == 4 && counts.values.allSatisfy { $0 == 50 }, "4 concurrent streams of 50 frames arrived as \(counts.values.sorted())")
                return .passed("4 concurrent streams")
            }
        },
    ]
}
