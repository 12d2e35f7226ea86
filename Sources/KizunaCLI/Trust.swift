import ArgumentParser
import Foundation
import KizunaHost
import KizunaSDK

/// `kizuna id`: this host's identity, read from its state directory (made there if it is
/// the first time); no running host is needed.
struct IdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "id", abstract: "Print this host's peer id (derived from its key) and its certificate's fingerprint.")
    @Option(name: .long, help: "The host's state directory (default: $XDG_STATE_HOME/kizuna, else ~/.local/state/kizuna).")
    var stateDir: String?
    @Flag(name: .long, help: "Print JSON for scripts.") var json = false

    func run() throws {
        let state = stateDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? HostConfiguration.defaultStateDirectory
        let identity: DeviceIdentity
        do {
            identity = try DeviceIdentity.loadOrCreate(in: state)
        } catch {
            throw CommandFailure("\(error)")
        }
        if json { return print(try encodeJSON(IdentityReport(identity))) }
        print("id:          \(identity.peerID)")
        print("short:       \(identity.peerID.short)")
        print("fingerprint: \(identity.certificateFingerprint) (SHA-256 of the certificate)")
        print("kept in:     \(state)/identity")
    }
}

/// `kizuna pair`: ask a peer to pair, list the requests waiting here, answer one.
struct Pair: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pair with a peer so that each host trusts the other, after both users compare a six-digit code.",
        subcommands: [Request.self, Accept.self, Refuse.self], defaultSubcommand: Request.self)

    struct Request: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "request", abstract: "Ask PEER to pair (or list the requests waiting here with --pending).")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The peer: its id, its name, or a unique prefix of its id (`kizuna peers` lists them).") var peer: String?
        @Flag(name: .long, help: "List the pairing requests waiting for an answer on this host.") var pending = false
        @Flag(name: .long, help: "Print JSON for scripts.") var json = false

        func validate() throws {
            if pending == (peer != nil) { throw ValidationError("give a peer to pair with, or --pending") }
        }

        func run() throws {
            guard let peer else {
                let waiting = try socket.send(ControlRequest(.pairings)).pairings ?? []
                if json { return print(try encodeJSON(waiting)) }
                if waiting.isEmpty { return print("no pairing request waits") }
                printTable(["REQUEST", "PEER", "NAME", "CODE"], waiting.map { [$0.id, $0.peer.short, $0.name, $0.code] })
                print("compare the code with the one the other host shows, then `kizuna pair accept REQUEST` or `kizuna pair refuse REQUEST`")
                return
            }
            var trusted: TrustedPeer?
            try socket.client.follow(ControlRequest(.pair, peer)) { response in
                guard response.ok else { throw CommandFailure(response.error ?? "the pairing failed") }
                if let request = response.pairing {
                    // Straight to the descriptor: the user needs the code while this waits.
                    if json {
                        writeLine(try encodeJSON(request))
                    } else {
                        writeLine("pairing with \(request.name) (\(request.peer))")
                        writeLine("code: \(request.code)")
                        writeLine("check that \(request.name) shows the same code, then accept there (`kizuna pair --pending` lists the request)")
                    }
                }
                trusted = response.trusted?.first
                return response.result == nil
            }
            guard let trusted else { throw CommandFailure("the host ended the pairing without a result") }
            if !json { print("paired: this host and \(trusted.name) (\(trusted.id.short)) now trust each other") }
        }
    }

    struct Accept: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Accept a pairing request, after comparing its code with the other host's.")
        @OptionGroup var answer: Answer
        func run() throws { try answer.send("accept") }
    }

    struct Refuse: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Refuse a pairing request.")
        @OptionGroup var answer: Answer
        func run() throws { try answer.send("refuse") }
    }

    /// What `accept` and `refuse` take, and how they answer.
    struct Answer: ParsableArguments {
        @OptionGroup var socket: SocketOption
        @Argument(help: "The request (`kizuna pair --pending` lists them).") var request: String

        func send(_ answer: String) throws {
            _ = try socket.send(ControlRequest(.answerPairing, request, arguments: [answer]))
            print("\(answer == "accept" ? "accepted" : "refused") pairing request \(request)")
        }
    }
}

/// `kizuna trust`: the peers a running host trusts.
struct TrustCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust", abstract: "List the peers this host trusts, or stop trusting one.", subcommands: [List.self, Remove.self],
        defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the trusted peers, with when they were paired.")
        @OptionGroup var socket: SocketOption
        @Flag(name: .long, help: "Print JSON for scripts.") var json = false

        func run() throws {
            let trusted = try socket.send(ControlRequest(.trusted)).trusted ?? []
            if json { return print(try encodeJSON(trusted)) }
            if trusted.isEmpty { return print("this host trusts no peer yet; pair with one: kizuna pair PEER") }
            let format = ISO8601DateFormatter()
            printTable(["ID", "NAME", "PAIRED"], trusted.map { [$0.id.rawValue, $0.name, format.string(from: $0.paired)] })
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop trusting a peer: its offers are held again, its streams refused.")
        @OptionGroup var socket: SocketOption
        @Argument(help: "The trusted peer: its id, a unique prefix of it, or its name.") var peer: String

        func run() throws {
            let removed = try socket.send(ControlRequest(.untrust, peer)).trusted?.first
            print("no longer trusted: \(removed.map { "\($0.name) (\($0.id.short))" } ?? peer)")
        }
    }
}
