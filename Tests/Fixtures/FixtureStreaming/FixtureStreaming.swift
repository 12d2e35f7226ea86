// Test fixture: a streaming plugin that sends frames over the transport it is given.
import KizunaSDK

final class FixtureStreaming: StreamingPlugin {
    private let transport = ThreadSafe<(any TransportPlugin)?>(nil)

    func run(context: PluginContext) async throws {
        try await transport.write { $0 = context.transport }
        await context.shutdown.wait()
    }

    func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: Peer) async throws -> String {
        guard let transport = try await transport.read({ $0 }) else {
            throw RuntimeError(.closed, "no transport: the host hands one to streaming plugins")
        }
        let connection = try await transport.connect(to: peer.addresses[0], service: "streaming")
        for try await frame in frames { try await connection.send(frame.payload) }
        await connection.close()
        return "fixture-stream"
    }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureStreaming() } }
