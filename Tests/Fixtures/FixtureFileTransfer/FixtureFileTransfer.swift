// Test fixture: a file-transfer plugin that sends a file's bytes over the transport it is
// given, and answers each inbound connection with the byte count it received.
import Foundation
import KizunaSDK

final class FixtureFileTransfer: FileTransferPlugin {
    // Calls may come as soon as the host has started run; they wait for run to hand over
    // the transport.
    private let transport = WatchChannel<(any TransportPlugin)?>(nil)

    private func startedTransport() async -> (any TransportPlugin)? {
        for await value in transport.subscribe() where value != nil { return value }
        return nil
    }

    func run(context: PluginContext) async throws {
        transport.send(context.transport)
        let server = try context.runtime.spawn(name: "inbound") {
            for await connection in context.inbound {
                var received = 0
                while let message = try? await connection.receive() {
                    if message.isEmpty { break }
                    received += message.count
                }
                try? await connection.send(Array(String(received).utf8))
            }
        }
        context.ready()
        await context.shutdown.wait()
        server.cancel()
    }

    func send(path: String, to peer: Peer, progress: @escaping @Sendable (TransferProgress) -> Void) async throws -> TransferProgress {
        guard let transport = await startedTransport() else {
            throw RuntimeError(.closed, "no transport: the host hands one to file-transfer plugins")
        }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let connection = try await transport.connect(to: peer.addresses[0], service: "file-transfer")
        try await connection.send(bytes)
        try await connection.send([])
        let reply = try await connection.receive() ?? []
        await connection.close()
        let count = Int64(String(decoding: reply, as: UTF8.self)) ?? -1
        let done = TransferProgress(id: "fixture", peer: peer.id, name: (path as NSString).lastPathComponent, bytesDone: count, bytesTotal: Int64(bytes.count), outgoing: true)
        progress(done)
        return TransferProgress(id: "fixture", peer: peer.id, name: (path as NSString).lastPathComponent, bytesDone: count, bytesTotal: Int64(bytes.count), outgoing: true)
    }
}

@_cdecl("kizuna_plugin_entry") public func entry() -> UnsafeRawPointer { exportPlugin { FixtureFileTransfer() } }
