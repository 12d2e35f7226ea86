// The entry point for fuzzing this plugin's decoder of packets from the network (see
// Tests/Fuzz).

/// Parses `size` bytes at `data` as an mDNS packet and, if it parses, encodes it again and
/// parses that. Returns 0; a fault is a crash.
@_cdecl("kizuna_fuzz_one_input") public func kizunaFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let packet = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let message = try? DNSMessage(parsing: packet) else { return 0 }
    _ = try? DNSMessage(parsing: message.encoded())
    return 0
}
