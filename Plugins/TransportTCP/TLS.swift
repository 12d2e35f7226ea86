import Crypto
import KizunaSDK
import NIOCore
import NIOSSL
import Synchronization

/// The transport's TLS: version 1.3 only, each side presenting its host's self-signed
/// certificate and requiring the other's.
///
/// No certificate authority vouches for a host, so the chain is not validated: TLS 1.3
/// itself makes each side prove it holds the private key of the certificate it presents
/// (CertificateVerify), and the peer's id is derived from that certificate's public key
/// (``PeerProof``). Whether that id is the one wanted, and trusted, is decided above.
struct TLSContexts: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext

    init(_ credentials: HostCredentials) throws {
        let certificate: NIOSSLCertificate
        let key: NIOSSLPrivateKey
        do {
            certificate = try NIOSSLCertificate(bytes: Array(credentials.certificatePEM.utf8), format: .pem)
            key = try NIOSSLPrivateKey(bytes: Array(credentials.privateKeyPEM.utf8), format: .pem)
        } catch {
            throw TransportError("the host's certificate or key does not load (\(error)); check the identity folder of the host's state directory")
        }
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
        server.minimumTLSVersion = .tlsv13
        server.maximumTLSVersion = .tlsv13
        server.certificateVerification = .noHostnameVerification
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        client.maximumTLSVersion = .tlsv13
        client.certificateChain = [.certificate(certificate)]
        client.privateKey = .privateKey(key)
        client.certificateVerification = .noHostnameVerification
        self.server = try NIOSSLContext(configuration: server)
        self.client = try NIOSSLContext(configuration: client)
    }

}

/// The certificate one connection's peer presented in the TLS handshake, kept when it is
/// verified (on the event loop, before any application data), so the peer's id can be
/// read later without looking into the pipeline (which is gone once the channel closes).
final class PeerProof: Sendable {
    private let certificate = Mutex<NIOSSLCertificate?>(nil)

    /// The verification callback: takes whatever certificate the peer presents. The
    /// handshake still proves the peer holds its key, and the id derived from that key is
    /// checked after it.
    func verify(_ certificates: [NIOSSLCertificate], _ promise: EventLoopPromise<NIOSSLVerificationResult>) {
        guard let leaf = certificates.first else { return promise.succeed(.failed) }
        certificate.withLock { $0 = leaf }
        promise.succeed(.certificateVerified)
    }

    /// The id of the host at the other end, derived from the public key of the certificate
    /// it proved it holds.
    func peer() throws -> PeerID {
        guard let certificate = certificate.withLock({ $0 }) else { throw TransportError("the peer presented no certificate") }
        let spki = try certificate.extractPublicKey().toSPKIBytes()
        return PeerID(publicKeyDigest: Array(SHA256.hash(data: spki)))
    }
}

/// The first handler of every inbound connection. When the connection becomes active it
/// counts it against the caps (overall and per address) and closes it, unread, if it is
/// over them. Then it looks at the first byte: a TLS record passes on untouched (and the
/// gate leaves the pipeline); anything else (a plaintext or old client, or garbage) is
/// answered with one framed refusal in plain JSON and closed. (Such a connection then
/// counts as a violation, as every failed handshake.)
final class InboundGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let admission: Admission
    private let logger: Logger
    /// Set once the connection was refused over a cap (read by the accept loop).
    let verdict = Verdict()
    private var refused = false
    private var sawFirstByte = false

    final class Verdict: Sendable {
        private let refused = Atomic(false)
        var isRefused: Bool { refused.load(ordering: .acquiring) }
        fileprivate func refuse() { refused.store(true, ordering: .releasing) }
    }

    init(admission: Admission, logger: Logger) {
        self.admission = admission
        self.logger = logger
    }

    /// The first byte of a TLS handshake record.
    static let tlsHandshake: UInt8 = 0x16

    func channelActive(context: ChannelHandlerContext) {
        let remote = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if let refusal = admission.admit(remote) {
            refused = true
            verdict.refuse()
            logger.warning("refused an inbound connection", metadata: ["from": "\(remote)", "reason": "\(refusal)"])
            context.close(promise: nil)
            return
        }
        let admission = admission
        context.channel.closeFuture.whenComplete { _ in admission.release(remote) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused, !sawFirstByte else { return }
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        sawFirstByte = true
        if first == Self.tlsHandshake {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        let reply = Array(#"{"kizuna":2,"error":"this host speaks the Kizuna protocol 2 inside TLS 1.3 only; plaintext connections are refused"}"#.utf8)
        var out = context.channel.allocator.buffer(capacity: reply.count + 4)
        out.writeInteger(UInt32(reply.count))
        out.writeBytes(reply)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
    }
}
