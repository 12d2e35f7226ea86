// Test fixture: a streaming plugin that sends frames over the transport it is given.
import KizunaSDK

final class FixtureStreaming: StreamingPlugin {
    // Calls may come as soon as the host has started run; they wait for run to hand over
    // the transport.
    private let transport = WatchChannel<(any TransportPlugin)?>(nil)
    private let deliveries = BroadcastChannel<StreamDelivery>(capacity: 16)

    func watch() -> BroadcastReceiver<StreamDelivery> { deliveries.subscribe() }

    private func startedTransport() async -> (any TransportPlugin)? {
        for await value in transport.subscribe() where value != nil { return value }
        return nil
    }

    func run(context: PluginContext) async throws {
        transport.send(context.transport)
        context.ready()
        await context.shutdown.wait()
    }

    func stream(_ frames: any AsyncSequence<Frame, any Error> & Sendable, to peer: Peer) async throws -> String {
        guard let transport = await startedTransport() else {
            throw RuntimeError(.closed, "no transport: the host hands one to streaming plugins")
        }
        let connection = try await transport.connect(to: peer.addresses[0], service: "streaming")
        for try await frame in frames { try await connection.send(frame.payload) }
        await connection.close()
        return "fixture-stream"
    }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureStreaming() } }
