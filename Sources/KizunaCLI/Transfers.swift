import ArgumentParser
import Foundation
import KizunaHost
import KizunaSDK

struct Transfers: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the transfers under way on a running host (offers waiting for an answer first among them) and the latest that ended.")
    @OptionGroup var socket: SocketOption
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false

    func run() throws {
        let records = try socket.send(ControlRequest(.transfers)).transfers ?? []
        if json { return print(try encodeJSON(records.map(TransferJSON.init))) }
        guard !records.isEmpty else { return print("no transfers yet; `kizuna send FILE --to PEER` starts one") }
        printTable(
            ["ID", "DIRECTION", "PEER", "NAME", "STATE", "PROGRESS", "UPDATED"],
            records.map { record in
                let progress = record.progress
                return [
                    progress.id, progress.outgoing ? "to" : "from", progress.peer.short, progress.name, Self.state(record),
                    "\(ByteCount(progress.bytesDone)) of \(ByteCount(progress.bytesTotal))", clockTime(record.updated),
                ]
            })
        for record in records {
            if let reason = record.reason { print("\(record.progress.id): \(reason)") }
        }
        let waiting = records.filter { $0.phase == .waiting && !$0.progress.outgoing }
        if let first = waiting.first {
            print("\(waiting.count) offer(s) wait for an answer: `kizuna accept \(first.progress.id)` or `kizuna refuse \(first.progress.id)`")
        }
    }

    /// "waiting", "moving 42%", "done", "failed".
    static func state(_ record: TransferRecord) -> String {
        switch record.phase {
        case .waiting: record.progress.outgoing ? "waiting for the peer" : "waiting for you"
        case .moving: "\(record.progress.outgoing ? "sending" : "receiving") \(Int(record.progress.fraction * 100))%"
        case .done: "done"
        case .failed: "failed"
        }
    }
}

/// `accept ID` and `refuse ID`: one answer to an offer that waits.
private func answer(_ id: String, accept: Bool, existing: ExistingFiles? = nil, over socket: SocketOption) throws {
    let offer = (try? socket.send(ControlRequest(.transfers)).transfers)?.first { $0.progress.id == id }
    _ = try socket.send(ControlRequest(.answerTransfer, id, arguments: [accept ? "accept" : "refuse"] + (existing.map { [$0.rawValue] } ?? [])))
    let what = offer.map { " (\($0.progress.name), \(ByteCount($0.progress.bytesTotal)) from \($0.progress.peer.short))" } ?? ""
    let names =
        switch existing {
        case nil: ""
        case .rename: "; files whose names are taken get free names"
        case .skip: "; files whose names are taken are kept, and the new ones not taken"
        case .overwrite: "; files whose names are taken are replaced"
        }
    print("\(accept ? "accepted" : "refused") offer \(id)\(what)\(names)")
}

/// `--existing`: ``ExistingFiles`` as an argument (the SDK does not depend on the parser).
enum ExistingChoice: String, CaseIterable, ExpressibleByArgument {
    case rename, skip, overwrite
    var policy: ExistingFiles { ExistingFiles(rawValue: rawValue)! }
}

struct Accept: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accept an incoming offer that waits for an answer (`kizuna transfers` lists them).")
    @OptionGroup var socket: SocketOption
    @Argument(help: "The offer's id.") var id: String
    @Option(
        name: .long,
        help: ArgumentHelp(
            "For this offer, what to do with a file whose name is already taken: rename (keep the existing file, give the new one a free name), skip (keep the existing file, do not take the new one) or overwrite. Default: the file-transfer plugin's setting 'existing' (rename unless changed).",
            valueName: "rename|skip|overwrite"))
    var existing: ExistingChoice?

    func run() throws { try answer(id, accept: true, existing: existing?.policy, over: socket) }
}

struct Refuse: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Refuse an incoming offer that waits for an answer; the sender is told.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "The offer's id.") var id: String

    func run() throws { try answer(id, accept: false, over: socket) }
}

struct Cancel: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a transfer under way, outgoing or incoming; the peer is told, and the receiver keeps what arrived for a later resume.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "The transfer's id (`kizuna transfers` lists them).") var id: String

    func run() throws {
        _ = try socket.send(ControlRequest(.cancelTransfer, id))
        print("cancelled transfer \(id)")
    }
}

/// A byte count for people: "812 B", "4.0 KiB", "512 MiB", "1.50 GiB".
struct ByteCount: CustomStringConvertible {
    let bytes: Int64
    init(_ bytes: Int64) { self.bytes = bytes }

    var description: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
        return String(format: "%.\(digits)f", value) + " " + units[unit]
    }
}

/// A duration for people: "4 s", "3 min 20 s", "2 h 5 min".
func humanDuration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded(.up))
    if total < 60 { return "\(total) s" }
    if total < 3600 { return "\(total / 60) min \(total % 60) s" }
    return "\(total / 3600) h \(total % 3600 / 60) min"
}

/// The local time of day, for lines people read: "14:03:07".
func clockTime(_ date: Date) -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.dateFormat = "HH:mm:ss"
    return formatter.string(from: date)
}
