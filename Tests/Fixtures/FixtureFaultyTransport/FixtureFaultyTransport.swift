// Test fixture for the conformance suite: the test kit's in-process transport as a plugin
// library, with a fault chosen by the `fault` setting: "corrupt" flips a bit in every
// message of 1000 bytes or more, "unbounded" never makes a sender wait. Without a fault
// it is a correct transport.
import KizunaPluginTestKit
import KizunaSDK

final class FixtureFaultyTransport: TransportPlugin {
    private let inner = WatchChannel<InProcessTransport?>(nil)

    private func transport() async -> InProcessTransport? {
        for await value in inner.subscribe() {
            if let value { return value }
        }
        return nil
    }

    func run(context: PluginContext) async throws {
        let transport: InProcessTransport
        switch context.settings.string("fault") ?? "" {
        case "corrupt":
            transport = InProcessTransport { message in
                guard message.count >= 1000 else { return message }
                var changed = message
                changed[message.count / 2] ^= 0x10
                return changed
            }
        case "unbounded": transport = InProcessTransport(capacity: Int.max / 2)
        default: transport = InProcessTransport()
        }
        inner.send(transport)
        try await transport.run(context: context)
        inner.finish()
    }

    func listeningAddress() async -> PeerAddress? { await transport()?.listeningAddress() }

    func connect(to address: PeerAddress, service: String) async throws -> any Connection {
        guard let transport = await transport() else { throw RuntimeError(.closed, "the fixture transport is not running") }
        return try await transport.connect(to: address, service: service)
    }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureFaultyTransport() } }
