// DNS messages as mDNS uses them (RFC 1035 wire format, RFC 6762 and 6763 meanings):
// enough to announce and browse DNS-SD services, and strict about everything it reads.

/// A record type this plugin reads or writes; others are kept as their number.
struct DNSType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt16
    static let a = DNSType(rawValue: 1)
    static let ptr = DNSType(rawValue: 12)
    static let txt = DNSType(rawValue: 16)
    static let aaaa = DNSType(rawValue: 28)
    static let srv = DNSType(rawValue: 33)
    static let nsec = DNSType(rawValue: 47)
    static let any = DNSType(rawValue: 255)

    var description: String {
        switch self {
        case .a: "A"
        case .ptr: "PTR"
        case .txt: "TXT"
        case .aaaa: "AAAA"
        case .srv: "SRV"
        case .nsec: "NSEC"
        case .any: "ANY"
        default: "TYPE\(rawValue)"
        }
    }
}

/// A domain name, kept as its labels; compared without regard to ASCII case.
struct DNSName: Hashable, Sendable, CustomStringConvertible {
    let labels: [String]

    init(_ labels: [String]) { self.labels = labels }
    init(_ text: String) { labels = text.split(separator: ".").map(String.init) }

    var description: String { labels.joined(separator: ".") }
    private var key: [String] { labels.map { $0.lowercased() } }
    static func == (a: DNSName, b: DNSName) -> Bool { a.key == b.key }
    func hash(into hasher: inout Hasher) { hasher.combine(key) }

    /// The name with `label` in front.
    func prepending(_ label: String) -> DNSName { DNSName([label] + labels) }
}

/// The data of a resource record.
enum RecordData: Hashable, Sendable {
    case a(UInt32)  // host byte order
    case aaaa(IPv6Address)
    case ptr(DNSName)
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    case txt([String: String])
    case other([UInt8])
}

struct ResourceRecord: Hashable, Sendable {
    var name: DNSName
    var type: DNSType
    /// mDNS's cache-flush bit: this record replaces the cached ones of its name and type.
    var cacheFlush: Bool
    var ttl: UInt32
    var data: RecordData
}

struct Question: Hashable, Sendable {
    var name: DNSName
    var type: DNSType
    /// mDNS's unicast-response bit.
    var unicastResponse: Bool = false
}

struct DNSMessage: Sendable {
    var id: UInt16 = 0
    var isResponse: Bool
    var questions: [Question] = []
    var answers: [ResourceRecord] = []
    var authorities: [ResourceRecord] = []
    var additionals: [ResourceRecord] = []

    static let classIN: UInt16 = 1
}

/// Why a packet was dropped.
struct MalformedPacket: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

// MARK: Reading

extension DNSMessage {
    /// Parses `bytes`, checking every length and pointer against the packet.
    init(parsing bytes: [UInt8]) throws(MalformedPacket) {
        var reader = PacketReader(bytes: bytes)
        id = try reader.u16()
        let flags = try reader.u16()
        isResponse = flags & 0x8000 != 0
        guard flags & 0x7800 == 0 else { throw MalformedPacket("opcode \((flags >> 11) & 0xF) is not a standard query") }
        let counts = (try reader.u16(), try reader.u16(), try reader.u16(), try reader.u16())
        // A record takes at least 11 bytes and a question 5: counts beyond that are lies.
        guard Int(counts.0) * 5 + (Int(counts.1) + Int(counts.2) + Int(counts.3)) * 11 <= bytes.count else {
            throw MalformedPacket("the header counts more records than \(bytes.count) bytes can hold")
        }
        for _ in 0..<counts.0 {
            let name = try reader.name()
            let type = DNSType(rawValue: try reader.u16())
            let qclass = try reader.u16()
            questions.append(Question(name: name, type: type, unicastResponse: qclass & 0x8000 != 0))
        }
        answers = try (0..<counts.1).map { _ throws(MalformedPacket) in try reader.record() }
        authorities = try (0..<counts.2).map { _ throws(MalformedPacket) in try reader.record() }
        additionals = try (0..<counts.3).map { _ throws(MalformedPacket) in try reader.record() }
    }
}

struct PacketReader {
    let bytes: [UInt8]
    var offset = 0

    mutating func u8() throws(MalformedPacket) -> UInt8 {
        guard offset < bytes.count else { throw MalformedPacket("truncated at byte \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u16() throws(MalformedPacket) -> UInt16 { UInt16(try u8()) << 8 | UInt16(try u8()) }
    mutating func u32() throws(MalformedPacket) -> UInt32 { UInt32(try u16()) << 16 | UInt32(try u16()) }

    mutating func take(_ count: Int) throws(MalformedPacket) -> [UInt8] {
        guard count >= 0, offset + count <= bytes.count else { throw MalformedPacket("a \(count)-byte field runs past the packet's end") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// A name, following compression pointers only to before the start of the part being
    /// read, so every jump goes further back and a packet cannot make it loop.
    mutating func name() throws(MalformedPacket) -> DNSName {
        var labels: [String] = []
        var position = offset
        var segmentStart = offset
        var resumeAt: Int?
        var length = 0
        while true {
            guard position < bytes.count else { throw MalformedPacket("a name runs past the packet's end") }
            let byte = bytes[position]
            switch byte & 0xC0 {
            case 0x00:
                position += 1
                if byte == 0 {
                    offset = resumeAt ?? position
                    return DNSName(labels)
                }
                guard position + Int(byte) <= bytes.count else { throw MalformedPacket("a label runs past the packet's end") }
                length += Int(byte) + 1
                guard length <= 255 else { throw MalformedPacket("a name is longer than 255 bytes") }
                labels.append(String(decoding: bytes[position..<position + Int(byte)], as: UTF8.self))
                position += Int(byte)
            case 0xC0:
                guard position + 1 < bytes.count else { throw MalformedPacket("a name pointer runs past the packet's end") }
                let target = Int(byte & 0x3F) << 8 | Int(bytes[position + 1])
                guard target < segmentStart else { throw MalformedPacket("a name pointer at byte \(position) points to \(target), not back before its name") }
                if resumeAt == nil { resumeAt = position + 2 }
                position = target
                segmentStart = target
            default:
                throw MalformedPacket("label type 0x\(String(byte & 0xC0, radix: 16)) is not in use")
            }
        }
    }

    mutating func record() throws(MalformedPacket) -> ResourceRecord {
        let name = try name()
        let type = DNSType(rawValue: try u16())
        let rclass = try u16()
        let ttl = try u32()
        let length = Int(try u16())
        let end = offset + length
        guard end <= bytes.count else { throw MalformedPacket("a \(type) record's data runs past the packet's end") }
        let data: RecordData
        switch type {
        case .a:
            guard length == 4 else { throw MalformedPacket("an A record has \(length) bytes of data, not 4") }
            data = .a(try u32())
        case .aaaa:
            guard length == 16 else { throw MalformedPacket("an AAAA record has \(length) bytes of data, not 16") }
            data = .aaaa(IPv6Address(bytes: try take(16)))
        case .ptr:
            data = .ptr(try self.name())
        case .srv:
            data = .srv(priority: try u16(), weight: try u16(), port: try u16(), target: try self.name())
        case .txt:
            var entries: [String: String] = [:]
            while offset < end {
                let entry = String(decoding: try take(Int(try u8())), as: UTF8.self)
                guard !entry.isEmpty else { continue }
                let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = parts[0].lowercased()
                if entries[key] == nil { entries[key] = parts.count > 1 ? String(parts[1]) : "" }
            }
            data = .txt(entries)
        default:
            data = .other(try take(length))
        }
        guard offset == end else { throw MalformedPacket("a \(type) record's fields do not fill its \(length) bytes of data exactly") }
        return ResourceRecord(name: name, type: type, cacheFlush: rclass & 0x8000 != 0, ttl: ttl, data: data)
    }
}

// MARK: Writing

extension DNSMessage {
    /// The wire form. Names are written whole; compression is optional for senders.
    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        out.appendU16(id)
        out.appendU16(isResponse ? 0x8400 : 0)  // a response is authoritative
        for count in [questions.count, answers.count, authorities.count, additionals.count] { out.appendU16(UInt16(count)) }
        for question in questions {
            out.appendName(question.name)
            out.appendU16(question.type.rawValue)
            out.appendU16(Self.classIN | (question.unicastResponse ? 0x8000 : 0))
        }
        for record in answers + authorities + additionals { out.appendRecord(record) }
        return out
    }
}

extension [UInt8] {
    mutating func appendU16(_ value: UInt16) { append(contentsOf: [UInt8(value >> 8), UInt8(value & 0xFF)]) }
    mutating func appendU32(_ value: UInt32) {
        appendU16(UInt16(value >> 16))
        appendU16(UInt16(value & 0xFFFF))
    }

    mutating func appendName(_ name: DNSName) {
        for label in name.labels {
            let bytes = utf8Prefix(label, maxBytes: 63)
            append(UInt8(bytes.count))
            append(contentsOf: bytes)
        }
        append(0)
    }

    mutating func appendRecord(_ record: ResourceRecord) {
        appendName(record.name)
        appendU16(record.type.rawValue)
        appendU16(DNSMessage.classIN | (record.cacheFlush ? 0x8000 : 0))
        appendU32(record.ttl)
        let data = record.data.encoded()
        appendU16(UInt16(data.count))
        append(contentsOf: data)
    }
}

extension RecordData {
    /// The record's data as it is written (names whole), which is also what probes compare
    /// (RFC 6762, 8.2).
    func encoded() -> [UInt8] {
        var data: [UInt8] = []
        switch self {
        case .a(let address): data.appendU32(address)
        case .aaaa(let address): data += address.bytes
        case .ptr(let target): data.appendName(target)
        case .srv(let priority, let weight, let port, let target):
            data.appendU16(priority)
            data.appendU16(weight)
            data.appendU16(port)
            data.appendName(target)
        case .txt(let entries):
            for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
                let entry = utf8Prefix("\(key)=\(value)", maxBytes: 255)
                data.append(UInt8(entry.count))
                data.append(contentsOf: entry)
            }
            if data.isEmpty { data.append(0) }
        case .other(let bytes): data = bytes
        }
        return data
    }
}

/// The UTF-8 bytes of the longest prefix of `text` that fits in `maxBytes` and ends on a
/// character boundary (a DNS label holds 63 bytes, a TXT entry 255): never half a
/// character.
func utf8Prefix(_ text: String, maxBytes: Int) -> [UInt8] {
    guard text.utf8.count > maxBytes else { return Array(text.utf8) }
    var bytes: [UInt8] = []
    for character in text {
        let encoded = Array(character.utf8)
        guard bytes.count + encoded.count <= maxBytes else { break }
        bytes += encoded
    }
    return bytes
}
