import Foundation
import KizunaHost
import KizunaSDK
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// A program in the middle, with a key pair of its own (no host's): it listens on a
/// loopback port of its own and carries every connection, byte for byte, to `target`
/// inside TLS 1.3 with its own certificate.
///
/// With `listenTLS` off, a raw test client speaks plaintext to it and so plays a third
/// party that speaks TLS with a certificate of its own. With it on, the relay also
/// presents its own certificate to whoever connects: a man in the middle.
final class TLSRelay: Sendable {
    let identity: DeviceIdentity
    let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let listener: any Channel
    /// Connections the relay carried to the target.
    var carried: Int { carriedCount.value.load(ordering: .relaxed) }
    private let carriedCount = Count()
    private final class Count: Sendable { let value = Atomic(0) }

    init(to target: Int, listenTLS: Bool = false, identity: DeviceIdentity = .ephemeral()) throws {
        self.identity = identity
        let certificate = try NIOSSLCertificate(bytes: Array(identity.credentials.certificatePEM.utf8), format: .pem)
        let key = try NIOSSLPrivateKey(bytes: Array(identity.credentials.privateKeyPEM.utf8), format: .pem)
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        client.certificateChain = [.certificate(certificate)]
        client.privateKey = .privateKey(key)
        client.certificateVerification = .none
        let clientContext = try NIOSSLContext(configuration: client)
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
        server.minimumTLSVersion = .tlsv13
        server.certificateVerification = .none
        let serverContext = listenTLS ? try NIOSSLContext(configuration: server) : nil

        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let carried = carriedCount
        listener = try ServerBootstrap(group: group)
            .childChannelInitializer { inbound in
                do {
                    if let serverContext { try inbound.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext)) }
                } catch {
                    return inbound.eventLoop.makeFailedFuture(error)
                }
                let near = Glue()
                let far = Glue()
                near.partner = far
                far.partner = near
                return ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: clientContext, serverHostname: nil))
                            try outbound.pipeline.syncOperations.addHandler(far)
                        }
                    }
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { _ in
                        carried.value.add(1, ordering: .relaxed)
                        return inbound.eventLoop.makeCompletedFuture {
                            // The inbound channel registers (and reads) only once this
                            // initializer is done, so nothing it sends is lost meanwhile.
                            try inbound.pipeline.syncOperations.addHandler(near)
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = listener.localAddress?.port ?? 0
    }

    func stop() {
        try? listener.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// One half of a relayed connection: what it reads, its partner writes; when either
    /// side closes, both do. (Both halves live on one event loop.)
    private final class Glue: ChannelDuplexHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var partner: Glue?
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            partner?.forward(unwrapInboundIn(data))
        }

        private func forward(_ buffer: ByteBuffer) {
            guard let context else { return }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner?.context?.close(promise: nil)
            partner = nil
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }
}
