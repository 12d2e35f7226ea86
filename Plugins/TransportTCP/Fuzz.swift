// The entry point for fuzzing this plugin's decoders of peer input (see Tests/Fuzz): a
// byte stream as it comes off a socket, split into frames, the first taken as a hello
// and a reply, the rest as messages.
import NIOCore

/// Runs `size` bytes at `data` through the framing decoder and the handshake checks.
/// Returns 0; a fault is a crash.
@_cdecl("kizuna_fuzz_one_input") public func kizunaFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var buffer = ByteBuffer(bytes: data.map { UnsafeBufferPointer(start: $0, count: size) } ?? UnsafeBufferPointer(start: nil, count: 0))
    var decoder = FrameDecoder(maxMessageBytes: 1 << 16)
    var first = true
    while let message = try? decoder.next(from: &buffer) {
        if first {
            _ = try? Handshake.decodeHello(from: message)
            _ = try? Handshake.decodeReply(from: message)
            first = false
        }
    }
    return 0
}
