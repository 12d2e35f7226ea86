import CKizunaHost
import Foundation
import Glibc
import KizunaSDK

/// A mutation fuzzer for the decoders of peer and file input: the built-in plugins'
/// (each exports `kizuna_fuzz_one_input`, as any plugin may) and the host's own (manifests,
/// control requests).
///
/// Inputs are seeds mutated by a generator seeded with ``FuzzConfiguration/seed``, so a run
/// is repeatable. A crash kills the process (that is what a decoder must never do); the
/// input that caused it is written to ``FuzzConfiguration/crashFile`` first.
public struct Fuzzer: Sendable {
    /// What is fuzzed.
    public enum Target: Sendable, CustomStringConvertible {
        /// A library exporting `int32_t kizuna_fuzz_one_input(const uint8_t *, size_t)`.
        case library(path: String)
        /// The host's manifest parser and checks.
        case manifest
        /// The host's decoder of control-socket requests.
        case controlRequest
        /// The host's check of a plugin library's ELF headers (``ELFCheck``).
        case libraryHeader
        /// The host's decoder of pairing messages from peers.
        case pairingMessage

        /// `manifest`, `control-request`, `library-header`, `pairing-message`, or a library path.
        public init(_ text: String) {
            switch text {
            case "manifest": self = .manifest
            case "control-request": self = .controlRequest
            case "library-header": self = .libraryHeader
            case "pairing-message": self = .pairingMessage
            default: self = .library(path: text)
            }
        }

        public var description: String {
            switch self {
            case .library(let path): (path as NSString).lastPathComponent
            case .manifest: "manifest"
            case .controlRequest: "control-request"
            case .libraryHeader: "library-header"
            case .pairingMessage: "pairing-message"
            }
        }
    }

    public let target: Target
    public let configuration: FuzzConfiguration

    public init(target: Target, configuration: FuzzConfiguration) {
        self.target = target
        self.configuration = configuration
    }

    /// What a run did.
    public struct Report: Sendable, CustomStringConvertible {
        public var inputs = 0
        public var seeds = 0
        public var seconds = 0.0
        public var longestInput = 0
        public var description: String {
            "\(inputs) inputs from \(seeds) seeds in \(String(format: "%.1f", seconds)) s (\(Int(Double(inputs) / max(seconds, 0.001))) a second), longest \(longestInput) bytes, no crash"
        }
    }

    /// Runs inputs until the configured count or time is reached.
    /// - Throws: ``FuzzError`` if the target cannot be opened or has no entry point.
    public func run() throws(FuzzError) -> Report {
        let decode = try entryPoint()
        var seeds = try loadSeeds()
        if seeds.isEmpty { seeds = [[]] }
        let report = open(configuration.crashFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if report >= 0 { kizuna_fuzz_arm_crash_report(report) }
        defer {
            kizuna_fuzz_set_input(nil, 0)
            if report >= 0 {
                close(report)
                unlink(configuration.crashFile)  // nothing crashed
            }
        }
        var mutator = Mutator(seed: configuration.seed, seeds: seeds)
        var result = Report(seeds: seeds.count)
        let start = ContinuousClock.now
        let deadline = configuration.duration.map { start + $0 }
        // The seeds themselves first, then mutations.
        var queue = seeds
        while result.inputs < configuration.runs {
            if result.inputs & 1023 == 0, let deadline, ContinuousClock.now >= deadline { break }
            let input = queue.popLast() ?? mutator.next()
            input.withUnsafeBufferPointer { bytes in
                kizuna_fuzz_set_input(bytes.baseAddress, UInt(bytes.count))
                _ = decode(bytes)
            }
            result.inputs += 1
            result.longestInput = max(result.longestInput, input.count)
        }
        let elapsed = ContinuousClock.now - start
        result.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return result
    }

    private func entryPoint() throws(FuzzError) -> (UnsafeBufferPointer<UInt8>) -> Void {
        switch target {
        case .manifest:
            return { bytes in _ = try? PluginManifest(parsing: String(decoding: bytes, as: UTF8.self), path: "fuzz.toml") }
        case .controlRequest:
            return { bytes in _ = try? JSONDecoder().decode(ControlRequest.self, from: Data(buffer: bytes)) }
        case .libraryHeader:
            return { bytes in _ = ELFCheck.problem(in: Array(bytes)) }
        case .pairingMessage:
            return { bytes in fuzzPairingMessage(Array(bytes)) }
        case .library(let path):
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
                throw FuzzError("cannot open \(path): \(dlerror().map { String(cString: $0) } ?? "unknown error")")
            }
            guard let symbol = dlsym(handle, "kizuna_fuzz_one_input") else {
                throw FuzzError("\(path) exports no kizuna_fuzz_one_input; a fuzzable plugin exports @_cdecl(\"kizuna_fuzz_one_input\") func(UnsafePointer<UInt8>?, Int) -> Int32")
            }
            typealias Entry = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
            let entry = unsafeBitCast(symbol, to: Entry.self)
            return { bytes in _ = entry(bytes.baseAddress, bytes.count) }
        }
    }

    private func loadSeeds() throws(FuzzError) -> [[UInt8]] {
        guard let directory = configuration.seedDirectory else { return [] }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            throw FuzzError("cannot read the seeds folder \(directory)")
        }
        return names.sorted().compactMap { FileManager.default.contents(atPath: "\(directory)/\($0)").map { Array($0) } }
    }
}

/// How long a fuzz run goes on, and with what.
public struct FuzzConfiguration: Sendable {
    /// At most this many inputs.
    public var runs = 100_000
    /// At most this long (no limit if nil).
    public var duration: Duration?
    /// The generator's seed: the same seed, seeds and target give the same inputs.
    public var seed: UInt64 = 1
    /// A folder of sample inputs (real messages) to mutate.
    public var seedDirectory: String?
    /// Where the input that crashed the target is written.
    public var crashFile = "kizuna-fuzz-crash.bin"

    public init() {}
}

/// A fuzz run that could not start.
public struct FuzzError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Makes inputs from seeds: bit flips, interesting bytes and lengths, insertions, deletions,
/// truncation, repetition, splices of two seeds. SplitMix64, so runs are repeatable.
struct Mutator {
    private var state: UInt64
    private let seeds: [[UInt8]]
    private static let interesting: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0x2F, 0x2E, 0x22, 0x5C, 0x0A, 0xC0, 0x3F]
    private static let tokens: [[UInt8]] = [
        Array("..".utf8), Array("/".utf8), Array("\\u0000".utf8), Array("\u{301}".utf8), Array("\u{200D}".utf8), Array("\u{600}".utf8),
        Array("[[".utf8), Array("{".utf8), Array("\"".utf8), Array("9223372036854775807".utf8), Array("-1".utf8), Array("1e309".utf8),
        Array("18446744073709551615".utf8), [0xFF, 0xFF, 0xFF, 0xFF], [0xC0, 0x0C], [0, 0, 0, 0],
    ]

    init(seed: UInt64, seeds: [[UInt8]]) {
        state = seed
        self.seeds = seeds
    }

    mutating func random() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int { bound <= 1 ? 0 : Int(random() % UInt64(bound)) }

    mutating func next() -> [UInt8] {
        var input = seeds[below(seeds.count)]
        for _ in 0...below(4) { mutate(&input) }
        return input
    }

    private mutating func mutate(_ input: inout [UInt8]) {
        let position = below(input.count + 1)
        switch below(9) {
        case 0 where !input.isEmpty: input[min(position, input.count - 1)] ^= UInt8(1 << below(8))
        case 1 where !input.isEmpty: input[min(position, input.count - 1)] = Self.interesting[below(Self.interesting.count)]
        case 2: input.insert(contentsOf: Self.tokens[below(Self.tokens.count)], at: position)
        case 3 where !input.isEmpty: input.removeSubrange(position..<min(input.count, position + 1 + below(16)))
        case 4: input = Array(input.prefix(position))
        case 5 where !input.isEmpty:
            let start = below(input.count)
            let piece = input[start..<min(input.count, start + 1 + below(32))]
            for _ in 0...below(8) { input.insert(contentsOf: piece, at: min(position, input.count)) }
        case 6:
            let other = seeds[below(seeds.count)]
            input = Array(input.prefix(position)) + Array(other.suffix(max(0, other.count - below(other.count + 1))))
        case 7 where !input.isEmpty: input[min(position, input.count - 1)] = UInt8(truncatingIfNeeded: random())
        default:
            // A 4-byte length field set to something extreme (framing and DNS counts).
            guard input.count >= 4 else { input += [0xFF, 0xFF, 0xFF, 0xFF]; return }
            let at = below(input.count - 3)
            let value: UInt32 = [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, UInt32(input.count), UInt32(input.count + 1)][below(6)]
            withUnsafeBytes(of: value.bigEndian) { input.replaceSubrange(at..<(at + 4), with: $0) }
        }
    }
}
