// The entry point for fuzzing this plugin's decoders of peer input (see Tests/Fuzz).
import KizunaSDK

/// Decodes `size` bytes at `data` as a streaming message, with the arithmetic the receiver
/// does on a frame's sequence number. Returns 0; a fault is a crash.
@_cdecl("kizuna_fuzz_one_input") public func kizunaFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let message = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    if let frame = StreamWire.parseFrame(message) {
        var tracker = SequenceTracker()
        tracker.record(frame.sequence)
        tracker.record(frame.sequence)
        tracker.record(0)
    }
    if let control = StreamWire.parseControl(message), let id = control["id"] { _ = StreamWire.isValidID(id) }
    return 0
}
