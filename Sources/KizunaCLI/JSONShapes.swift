// The JSON the CLI prints with --json: one flat shape per output, documented in the
// README ("JSON output") and pinned by JSONShapeTests. These are views of the host's
// types made for scripts: plain strings for ids, states and kinds; a `type` field on
// every event and progress line; ISO 8601 times. The control socket's own encoding is
// free to change; these are not.
import Foundation
import KizunaHost
import KizunaSDK

/// `plugins list --json` (an array of these) and `plugins info --json`.
struct PluginJSON: Encodable {
    var name: String
    /// Absent for a manifest that cannot be read (`plugins list --dir`).
    var kind: String?
    var version: String
    /// discovered, loaded, starting, running, stopping, stopped, failed, blocked or stuck.
    var state: String
    /// Why it failed or was blocked; for stuck, how many tasks were still alive.
    var reason: String?
    var description: String?
    var manifest: String
    var library: String
    var image: String?
    var sha256: String?
    var descriptor: String?
    var provides: [String]
    var requires: [String]
    var tasks: Int
    var permitsHeld: Int
    var eventsPublished: Int
    var leftoverTasks: Int

    init(_ plugin: PluginInfo) {
        name = plugin.name
        kind = plugin.manifestReadable ? plugin.kind.rawValue : nil
        version = plugin.version
        state = Plugins.List.shortState(plugin.state)
        switch plugin.state {
        case .failed(let why): reason = why.hasPrefix("blocked: ") ? String(why.dropFirst("blocked: ".count)) : why
        case .stuck(let tasks): reason = "\(tasks) task(s) still alive after cancellation"
        default: reason = nil
        }
        description = plugin.description
        manifest = plugin.manifest
        library = plugin.library
        image = plugin.image
        sha256 = plugin.sha256
        descriptor = plugin.descriptor
        provides = plugin.provides
        requires = plugin.requires.map(\.rawValue)
        tasks = plugin.tasks
        permitsHeld = plugin.permitsHeld
        eventsPublished = plugin.eventsPublished
        leftoverTasks = plugin.leftoverTasks
    }
}

/// `transfers --json` (an array of these).
struct TransferJSON: Encodable {
    var id: String
    /// outgoing or incoming.
    var direction: String
    var peer: String
    var name: String
    /// waiting, moving, done or failed.
    var state: String
    var reason: String?
    var bytesDone: Int64
    var bytesTotal: Int64
    var resumedFrom: Int64
    var skippedFiles: Int
    var started: Date
    var updated: Date

    init(_ record: TransferRecord) {
        id = record.progress.id
        direction = record.progress.outgoing ? "outgoing" : "incoming"
        peer = record.progress.peer.rawValue
        name = record.progress.name
        state = record.phase.rawValue
        reason = record.reason
        bytesDone = record.progress.bytesDone
        bytesTotal = record.progress.bytesTotal
        resumedFrom = record.progress.resumedFrom
        skippedFiles = record.progress.skippedFiles
        started = record.started
        updated = record.updated
    }
}

/// `send --json`: one line per change, `type` progress (with `waiting` true while the
/// receiver's user decides), then one line of type `sent`.
struct SendProgressJSON: Encodable {
    var type: String
    var time: Date
    var id: String
    var peer: String
    var name: String
    var bytesDone: Int64
    var bytesTotal: Int64
    var resumedFrom: Int64
    var skippedFiles: Int
    var waiting: Bool

    init(_ type: String, _ progress: TransferProgress) {
        self.type = type
        time = Date()
        id = progress.id
        peer = progress.peer.rawValue
        name = progress.name
        bytesDone = progress.bytesDone
        bytesTotal = progress.bytesTotal
        resumedFrom = progress.resumedFrom
        skippedFiles = progress.skippedFiles
        waiting = progress.awaitingAnswer
    }
}

/// `events --json`: one object per line, with a `type` (the event's name in kebab case:
/// peer-found, transfer-progress, plugin-state-changed, …, or `missed` for events a slow
/// follower lost) and the `time` the host passed it on; the other fields are those the
/// type has, never nested.
struct EventJSON: Encodable {
    var type: String
    var time: Date
    // Whichever of these the type has.
    var id: String?
    var peer: String?
    var name: String?
    var addresses: [String]?
    var services: [String]?
    var service: String?
    var inbound: Bool?
    var direction: String?
    var bytesDone: Int64?
    var bytesTotal: Int64?
    var resumedFrom: Int64?
    var skippedFiles: Int?
    var waiting: Bool?
    var state: String?
    var reason: String?
    var code: String?
    var count: Int?

    init(type: String, time: Date) {
        self.type = type
        self.time = time
    }

    init(_ event: HostEvent, time: Date) {
        self.init(type: Self.typeName(event), time: time)
        switch event {
        case .peerFound(let found):
            peer = found.id.rawValue
            name = found.name
            addresses = found.addresses.map(\.description)
            services = found.services
        case .peerLost(let lost), .peerUntrusted(let lost): peer = lost.rawValue
        case .connectionUp(let info), .connectionDown(let info):
            id = info.id
            peer = info.peer.rawValue
            service = info.service
            inbound = info.inbound
        case .transferOffered(let progress), .transferProgress(let progress), .transferDone(let progress): transfer(progress)
        case .transferFailed(let progress, let why):
            transfer(progress)
            reason = why
        case .streamStarted(let stream, let with), .streamEnded(let stream, let with):
            id = stream
            peer = with.rawValue
        case .pluginStateChanged(let plugin, let now):
            name = plugin
            state = Plugins.List.shortState(now)
            if case .failed(let why) = now { reason = why }
        case .pairingRequested(let request):
            id = request.id
            peer = request.peer.rawValue
            name = request.name
            code = request.code
        case .peerTrusted(let trusted, let called):
            peer = trusted.rawValue
            name = called
        }
    }

    private mutating func transfer(_ progress: TransferProgress) {
        id = progress.id
        peer = progress.peer.rawValue
        name = progress.name
        direction = progress.outgoing ? "outgoing" : "incoming"
        bytesDone = progress.bytesDone
        bytesTotal = progress.bytesTotal
        resumedFrom = progress.resumedFrom
        skippedFiles = progress.skippedFiles
        waiting = progress.awaitingAnswer
    }

    /// `peerFound` → `peer-found`.
    static func typeName(_ event: HostEvent) -> String {
        let label = String(describing: event).prefix { $0.isLetter || $0.isNumber }
        return label.reduce(into: "") { name, character in
            if character.isUppercase { name += "-" + character.lowercased() } else { name.append(character) }
        }
    }
}
