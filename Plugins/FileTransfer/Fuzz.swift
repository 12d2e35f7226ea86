// The entry point for fuzzing this plugin's decoders of peer input (see Tests/Fuzz):
// one message as the receiver gets it, decoded, and an offer checked as a whole.
import Foundation
import KizunaBuiltinSupport
import KizunaSDK

/// Decodes `size` bytes at `data` as a file-transfer message and, for an offer, runs every
/// check an offer gets before it is accepted. Returns 0; a fault is a crash.
@_cdecl("kizuna_fuzz_one_input") public func kizunaFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let incoming = try? Wire.decode(bytes) else { return 0 }
    if case .control(let message) = incoming {
        if let (paths, _) = try? Receiver.check(message) {
            for path in paths { _ = path.components.map { numbered($0, 2) } }
        }
        for file in message.files ?? [] { _ = try? PeerPath(file.path) }
        _ = escapedForDisplay(message.reason ?? "")
    }
    return 0
}
