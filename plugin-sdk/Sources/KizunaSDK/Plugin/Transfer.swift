public import struct Foundation.Date

/// The progress of one file transfer.
public struct TransferProgress: Sendable, Hashable, Codable {
    /// An identifier unique within the host.
    public var id: String
    /// The peer on the other side.
    public var peer: PeerID
    /// The file's name as it travels (relative, never absolute).
    public var name: String
    /// Bytes moved so far.
    public var bytesDone: Int64
    /// Bytes in all.
    public var bytesTotal: Int64
    /// True when this host is the sender.
    public var outgoing: Bool
    /// Bytes that were already at the receiver from an interrupted attempt, and were not
    /// sent again (0 for a fresh transfer).
    public var resumedFrom: Int64
    /// True while the offer waits for the receiving side's answer (its user decides).
    public var awaitingAnswer: Bool
    /// Files the receiver did not take because it keeps its own file of that name
    /// (``ExistingFiles/skip``); their bytes count as done, none of them were sent.
    public var skippedFiles: Int

    /// Creates a progress record.
    public init(
        id: String, peer: PeerID, name: String, bytesDone: Int64, bytesTotal: Int64, outgoing: Bool, resumedFrom: Int64 = 0, awaitingAnswer: Bool = false,
        skippedFiles: Int = 0
    ) {
        self.id = id
        self.peer = peer
        self.name = name
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.outgoing = outgoing
        self.resumedFrom = resumedFrom
        self.awaitingAnswer = awaitingAnswer
        self.skippedFiles = skippedFiles
    }

    /// The fraction done, from 0 to 1.
    public var fraction: Double { bytesTotal > 0 ? Double(bytesDone) / Double(bytesTotal) : 1 }
}

/// What a receiver does with a file whose name is already taken in the folder it goes to.
public enum ExistingFiles: String, Sendable, Hashable, Codable, CaseIterable {
    /// Keep the existing file; the new one gets a free name such as `photo (2).jpg`.
    case rename
    /// Keep the existing file and do not take the new one: it is not sent at all.
    case skip
    /// Replace the existing file with the new one.
    case overwrite
}

/// One transfer as the host's ``SharedState`` remembers it: under way, or one of the
/// latest that ended.
public struct TransferRecord: Sendable, Hashable, Codable {
    /// Where a transfer is.
    public enum Phase: String, Sendable, Hashable, Codable {
        /// Offered; the receiving side's user has not answered yet.
        case waiting
        /// Bytes are moving.
        case moving
        /// Everything arrived and was verified.
        case done
        /// It ended early (refused, cancelled, lost, or broken); ``TransferRecord/reason`` says why.
        case failed
    }

    /// The latest progress.
    public var progress: TransferProgress
    public var phase: Phase
    /// Why it failed, for ``Phase/failed``.
    public var reason: String?
    /// When the host first heard of it.
    public var started: Date
    /// When it last changed.
    public var updated: Date

    /// Creates a record.
    public init(progress: TransferProgress, phase: Phase, reason: String? = nil, started: Date, updated: Date) {
        self.progress = progress
        self.phase = phase
        self.reason = reason
        self.started = started
        self.updated = updated
    }
}

/// One frame of a live stream.
public struct Frame: Sendable, Hashable, Codable {
    /// The frame's position in its stream, from 0.
    public var sequence: UInt64
    /// The payload.
    public var payload: [UInt8]

    /// Creates a frame.
    public init(sequence: UInt64, payload: [UInt8]) {
        self.sequence = sequence
        self.payload = payload
    }
}
