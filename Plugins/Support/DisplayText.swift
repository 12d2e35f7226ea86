// Text from peers, made safe to show to a person.

/// `text` with every character that could drive a terminal or reorder what is shown
/// (C0 and C1 controls, DEL, bidirectional formatting) written as `\u{XX}`, so a name
/// from a peer is shown as it is and never adds lines, colours or cursor moves.
public func escapedForDisplay(_ text: String) -> String {
    var result = ""
    result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
    for scalar in text.unicodeScalars {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
            result += "\\u{\(String(scalar.value, radix: 16))}"
        default:
            result.unicodeScalars.append(scalar)
        }
    }
    return result
}
