// The file-transfer protocol, over one transport connection for the service
// `file-transfer`. Every message starts with a type byte: 1 for a JSON control message,
// 2 for a chunk of file data.
//
//   sender                              receiver
//   offer {id, name, files, total}  ->
//                                   <-  waiting          (now and then, while a person decides)
//                                   <-  answer {accept, reason?}
//   for each file (folders in `files` are only created):
//     file {index}                  ->
//                                   <-  start {offset}     (bytes it already has)
//                                       or start {skip: true}: it keeps its own file of
//                                       that name; nothing more is sent for this file
//     data… from offset             ->
//     end {sha256}                  ->
//                                   <-  verified {ok, reason?}
//   done                            ->
//
// Either side may send error {reason} instead of its next message, then close.
import Foundation
import Glibc
import KizunaBuiltinSupport
import KizunaSDK

enum Wire {
    static let control: UInt8 = 1
    static let data: UInt8 = 2

    struct FileEntry: Codable, Sendable {
        /// Relative, `/`-separated; the receiver checks it.
        var path: String
        var size: Int64
        /// Seconds since 1970; with the path and size it names a partial file to resume.
        var modified: Int64
        /// A folder (sent so that empty ones arrive too); it has no data.
        var directory: Bool? = nil

        var isDirectory: Bool { directory == true }
    }

    /// Every control message, as one JSON object with a `type`.
    struct Message: Codable, Sendable {
        enum Kind: String, Codable, Sendable { case offer, waiting, answer, file, start, end, verified, done, error }
        var type: Kind
        var id: String?
        var name: String?
        var files: [FileEntry]?
        var total: Int64?
        var accept: Bool?
        var ok: Bool?
        var reason: String?
        var index: Int?
        var offset: Int64?
        var sha256: String?
        var skip: Bool?

        init(_ type: Kind) { self.type = type }
    }

    static func encode(_ message: Message) -> [UInt8] {
        [control] + ((try? JSONEncoder().encode(message)).map(Array.init) ?? [])
    }

    /// The next message, or nil once the peer has closed.
    enum Incoming {
        case control(Message)
        case data(ArraySlice<UInt8>)
    }

    static func receive(from connection: any Connection) async throws -> Incoming? {
        guard let bytes = try await connection.receive() else { return nil }
        return try decode(bytes)
    }

    /// One message as it came from the peer.
    static func decode(_ bytes: [UInt8]) throws -> Incoming {
        switch bytes.first {
        case data: return .data(bytes[1...])
        case control:
            guard let message = try? JSONDecoder().decode(Message.self, from: Data(bytes[1...])) else {
                throw TransferError.violation("the peer sent a control message that is not valid JSON for this protocol")
            }
            return .control(message)
        default:
            throw TransferError.violation("the peer sent a message of unknown type \(bytes.first.map(String.init) ?? "(empty)"); is it a Kizuna file-transfer plugin?")
        }
    }

    /// The next message, which must be control message `kind`.
    static func expect(_ kind: Message.Kind, from connection: any Connection) async throws -> Message {
        try await expect([kind], from: connection)
    }

    /// The next message, which must be one of the control messages `kinds`.
    static func expect(_ kinds: Set<Message.Kind>, from connection: any Connection) async throws -> Message {
        let expected = kinds.map { "'\($0.rawValue)'" }.sorted().joined(separator: " or ")
        switch try await receive(from: connection) {
        case .control(let message) where kinds.contains(message.type): return message
        case .control(let message) where message.type == .error:
            throw TransferError("the peer gave up: \(escapedForDisplay(message.reason ?? "no reason given"))")
        case .control(let message):
            throw TransferError.violation("expected \(expected) from the peer, got '\(message.type.rawValue)'\(message.reason.map { ": \(escapedForDisplay($0))" } ?? "")")
        case .data: throw TransferError.violation("expected \(expected) from the peer, got file data")
        case nil: throw TransferError("the peer closed the connection (expected \(expected))")
        }
    }
}

struct TransferError: Error, CustomStringConvertible {
    var description: String
    /// The `errno` of a failed system call, where one failed.
    var code: Int32?
    /// The peer broke the protocol (counted by the action `violations`).
    var isViolation = false
    init(_ description: String, code: Int32? = nil) {
        self.description = description
        self.code = code
    }

    /// The peer broke the protocol or its limits: a message that is malformed, out of
    /// order, or that contradicts the offer.
    static func violation(_ description: String) -> TransferError {
        var error = TransferError(description)
        error.isViolation = true
        return error
    }

    /// The disk (or the user's quota) is full.
    var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
}
