import Crypto
import Foundation
import Glibc
public import KizunaSDK
import SwiftASN1
import X509

/// A host's lasting identity: a P-256 key pair and a self-signed certificate for it, kept
/// owner-only in the state directory (`STATE/identity/key.pem`, `certificate.pem`). Its
/// peer id is derived from the public key, so it is the same across restarts and a peer
/// can prove it (the transport's mutual TLS) but not claim it.
public struct DeviceIdentity: Sendable {
    /// Derived from the public key: base32 of the SHA-256 of its SubjectPublicKeyInfo.
    public let peerID: PeerID
    /// SHA-256 of the certificate (DER), as colon-separated hex: what TLS tools show.
    public let certificateFingerprint: String
    /// The certificate and its private key, PEM, for the transport.
    public let credentials: HostCredentials

    /// The identity of the private key `key`: a new certificate is made for it.
    init(key: P256.Signing.PrivateKey, certificatePEM: String? = nil) throws {
        let peerID = PeerID(publicKeyDigest: Array(SHA256.hash(data: key.publicKey.derRepresentation)))
        let pem: String
        if let certificatePEM {
            pem = certificatePEM
        } else {
            let name = try DistinguishedName { CommonName("kizuna \(peerID.short)") }
            let now = Date()
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-86_400), notValidAfter: now.addingTimeInterval(100 * 365 * 86_400),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                },
                issuerPrivateKey: .init(key))
            pem = try certificate.serializeAsPEM().pemString
        }
        let certificate = try Certificate(pemEncoded: pem)
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw IdentityError("the certificate is not the private key's: it names another public key")
        }
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        self.peerID = peerID
        certificateFingerprint = SHA256.hash(data: serializer.serializedBytes).map { ($0 < 16 ? "0" : "") + String($0, radix: 16, uppercase: true) }
            .joined(separator: ":")
        credentials = HostCredentials(certificatePEM: pem, privateKeyPEM: key.pemRepresentation)
    }

    /// A new identity that lives only in memory (for hosts without a state directory, such
    /// as in-process tests).
    public static func ephemeral() -> DeviceIdentity {
        // Making a certificate for a fresh key fails only if swift-certificates cannot
        // encode one, which no input here can cause.
        try! DeviceIdentity(key: P256.Signing.PrivateKey())
    }

    /// The identity kept in `stateDirectory`, made there on first use.
    /// - Throws: ``IdentityError`` naming the file and the fix if the key file can be read
    ///   by others, is not this user's, or does not parse, or if the certificate is there
    ///   without its key: a damaged identity is never silently replaced by a new one (peers
    ///   that trust this host would no longer know it).
    public static func loadOrCreate(in stateDirectory: String) throws(IdentityError) -> DeviceIdentity {
        let folder = stateDirectory + "/identity"
        let keyPath = folder + "/key.pem"
        let certificatePath = folder + "/certificate.pem"
        do {
            try StateDirectory.makePrivateDirectory(stateDirectory)
            try StateDirectory.makePrivateDirectory(folder)
            let keyBytes = try StateDirectory.readPrivateFile(keyPath, maxBytes: 64 << 10)
            let certificateBytes = try StateDirectory.readPrivateFile(certificatePath, maxBytes: 64 << 10)
            guard let keyBytes else {
                if certificateBytes != nil {
                    throw IdentityError(
                        "\(certificatePath) is there but its key \(keyPath) is missing; restore the key from a backup, or move the folder \(folder) away to make a new identity (peers that trust this host must then pair again)")
                }
                let identity = DeviceIdentity.ephemeral()
                try StateDirectory.writeFile(Array(identity.credentials.privateKeyPEM.utf8), to: keyPath)
                try StateDirectory.writeFile(Array(identity.credentials.certificatePEM.utf8), to: certificatePath)
                return identity
            }
            let key: P256.Signing.PrivateKey
            do {
                key = try P256.Signing.PrivateKey(pemRepresentation: String(decoding: keyBytes, as: UTF8.self))
            } catch {
                throw IdentityError(
                    "\(keyPath) is not a P-256 private key in PEM (\(error)); restore it from a backup, or move the folder \(folder) away to make a new identity (peers that trust this host must then pair again)")
            }
            if let certificateBytes, let identity = try? DeviceIdentity(key: key, certificatePEM: String(decoding: certificateBytes, as: UTF8.self)) {
                return identity
            }
            // The certificate is missing or not the key's: the key is the identity, so a
            // new certificate for it keeps the same peer id.
            let identity = try DeviceIdentity(key: key)
            try StateDirectory.writeFile(Array(identity.credentials.certificatePEM.utf8), to: certificatePath)
            return identity
        } catch let error as IdentityError {
            throw error
        } catch {
            throw IdentityError("the identity in \(folder): \(error)")
        }
    }
}

/// A host identity that cannot be used, and the fix.
public struct IdentityError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
