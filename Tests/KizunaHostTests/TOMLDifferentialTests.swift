import Foundation
@testable import KizunaHost
import KizunaSDK
import Testing

/// The manifest parser against an independent TOML 1.0 parser, Python's `tomllib`, over a
/// generated corpus of valid and invalid documents: whatever `tomllib` refuses, Kizuna must
/// refuse; whatever both accept, they must read alike. (Kizuna may refuse what `tomllib`
/// accepts only for what manifests leave out: dates, arrays of tables, integers beyond 64
/// bits.)
@Suite(.timeLimit(.minutes(2))) struct TOMLDifferentialTests {
    /// A value as both sides describe it: a tag, then the value (floats by bit pattern).
    indirect enum Canonical: Encodable {
        case bool(Bool), integer(Int64), float(Double), string(String), array([Canonical]), table([String: Canonical])

        init(_ value: SettingValue) {
            switch value {
            case .bool(let value): self = .bool(value)
            case .integer(let value): self = .integer(value)
            case .float(let value): self = .float(value)
            case .string(let value): self = .string(value)
            case .array(let values): self = .array(values.map(Canonical.init))
            case .table(let table): self = .table(table.mapValues(Canonical.init))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.unkeyedContainer()
            switch self {
            case .bool(let value): try container.encode("bool"); try container.encode(value)
            case .integer(let value): try container.encode("int"); try container.encode(String(value))
            case .float(let value): try container.encode("float"); try container.encode(value.isNaN ? "nan" : String(value.bitPattern))
            case .string(let value): try container.encode("str"); try container.encode(value)
            case .array(let values): try container.encode("array"); try container.encode(values)
            case .table(let table): try container.encode("table"); try container.encode(table)
            }
        }
    }

    struct Case: Encodable {
        var document: String
        /// What Kizuna read, or nil if it refused the document.
        var kizuna: Canonical?
        var error: String?
    }

    static let compare = #"""
        import json, math, struct, sys, tomllib

        def canon(v):
            if isinstance(v, bool): return ["bool", v]
            if isinstance(v, int): return ["int", str(v)]
            if isinstance(v, float): return ["float", "nan" if math.isnan(v) else str(struct.unpack("<Q", struct.pack("<d", v))[0])]
            if isinstance(v, str): return ["str", v]
            if isinstance(v, list): return ["array", [canon(x) for x in v]]
            if isinstance(v, dict): return ["table", {k: canon(x) for k, x in v.items()}]
            return ["unsupported", type(v).__name__]

        def unsupported(v):
            tag, value = v
            if tag == "unsupported": return True
            if tag == "int": return not (-2**63 <= int(value) < 2**63)
            if tag == "array": return any(unsupported(x) for x in value)
            if tag == "table": return any(unsupported(x) for x in value.values())
            return False

        summary = {"documents": 0, "bothRead": 0, "bothRefused": 0, "onlyKizunaRefused": 0, "problems": []}
        for case in json.load(sys.stdin):
            summary["documents"] += 1
            try:
                theirs = canon(tomllib.loads(case["document"]))
            except tomllib.TOMLDecodeError as error:
                theirs = None
                reason = str(error)
            ours = case.get("kizuna")
            if theirs is None and ours is None:
                summary["bothRefused"] += 1
            elif theirs is None:
                summary["problems"].append({"document": case["document"], "problem": "tomllib refuses it (" + reason + ") but Kizuna read it", "kizuna": ours})
            elif ours is None:
                summary["onlyKizunaRefused"] += 1
                if not unsupported(theirs) and "[[" not in case["document"]:
                    summary["problems"].append({"document": case["document"], "problem": "Kizuna refuses it (" + case.get("error", "") + ") but tomllib read it", "tomllib": theirs})
            elif theirs != ours:
                summary["problems"].append({"document": case["document"], "problem": "both read it, differently", "kizuna": ours, "tomllib": theirs})
            else:
                summary["bothRead"] += 1
        json.dump(summary, sys.stdout)
        """#

    struct Summary: Decodable {
        var documents: Int
        var bothRead: Int
        var bothRefused: Int
        var onlyKizunaRefused: Int
        var problems: [Problem]
        struct Problem: Decodable { var problem: String }
    }

    @Test func theParserAgreesWithTomllib() throws {
        // KIZUNA_TOML_DOCUMENTS and KIZUNA_TOML_SEED run a longer or another corpus.
        let environment = ProcessInfo.processInfo.environment
        var generator = DocumentGenerator(seed: environment["KIZUNA_TOML_SEED"].flatMap { UInt64($0) } ?? 0x4B5A_4E41)
        var cases: [Case] = []
        for _ in 0 ..< (environment["KIZUNA_TOML_DOCUMENTS"].flatMap { Int($0) } ?? 4000) {
            let document = generator.document()
            do {
                cases.append(Case(document: document, kizuna: Canonical(.table(try TOMLDocument(parsing: document).root))))
            } catch {
                cases.append(Case(document: document, kizuna: nil, error: "line \(error.line): \(error.message)"))
            }
        }
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", "-c", Self.compare]
        let input = Pipe(), output = Pipe()
        python.standardInput = input
        python.standardOutput = output
        try python.run()
        let payload = try JSONEncoder().encode(cases)
        // Written from another thread: the reply is read while the corpus is still going in.
        let writer = input.fileHandleForWriting
        Thread.detachNewThread {
            try? writer.write(contentsOf: payload)
            try? writer.close()
        }
        let reply = output.fileHandleForReading.readDataToEndOfFile()
        python.waitUntilExit()
        try #require(python.terminationStatus == 0, "python3 with tomllib (Python 3.11 or later) is needed")
        let summary = try JSONDecoder().decode(Summary.self, from: reply)
        print("TOML differential: \(summary.documents) documents, \(summary.bothRead) read alike, \(summary.bothRefused) refused by both, \(summary.onlyKizunaRefused) refused by Kizuna only (dates, arrays of tables, big integers)")
        if !summary.problems.isEmpty {
            // The whole comparison, for whoever fixes it: documents, both readings, reasons.
            let report = Fixtures.runDirectory + "/toml-differential.json"
            try reply.write(to: URL(fileURLWithPath: report))
            let first = try JSONSerialization.jsonObject(with: reply) as? [String: Any]
            let problems = (first?["problems"] as? [Any])?.prefix(3).map { "\($0)" } ?? []
            Issue.record("\(summary.problems.count) disagreements with tomllib; the first: \(problems.joined(separator: "\n"))")
        }
        // A corpus that exercises both sides of the line.
        #expect(summary.bothRead > 800 && summary.bothRefused > 800, "bothRead \(summary.bothRead), bothRefused \(summary.bothRefused)")
    }
}

/// Generates TOML documents, valid and not, from the pieces TOML parsers get wrong:
/// numbers at the edge of the grammar, strings with control characters, quotes and
/// escapes, line ends, dotted keys, headers and inline tables that collide. Seeded, so
/// every run tries the same corpus.
struct DocumentGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        // SplitMix64.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ count: Int) -> Int { Int(next() % UInt64(count)) }
    mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    /// Numbers TOML 1.0 allows, and numbers at the edge of its grammar that it refuses (or
    /// that are dates, or too big for 64 bits).
    static let goodNumbers = [
        "0", "1", "-1", "+1", "+0", "-0", "1_000", "0x1F", "0xff_ff", "0o7", "0b101", "9223372036854775807", "-9223372036854775808",
        "1.0", "1e5", "1E+5", "1e-5", "1.5e3", "0.5", "-0.0", "+0.0", "+inf", "-inf", "inf", "nan", "+nan", "-nan", "1_0.0_1", "0e0",
        "+1.5", "6.626e-34", "1e400", "0.1e-400", "true", "false",
    ]
    static let badNumbers = [
        "01", "-01", "00", "1__0", "_1", "1_", "0x_1", "0x", "0X1", "0xG", "0o8", "0o_7", "0b2", "-0x1", "+0o7", "9223372036854775808",
        ".5", "1.", "1e", "1e+", "00.5", "infinity", "Inf", "NaN", "1.0e5.0", "3.14_", "3._14", "1e_5", "1e5_0", "01e5", "1.e5", "-.5",
        "12:30:00", "1979-05-27", "1979-05-27T07:32:00Z", "True", "tru",
    ]

    /// Pieces of string content that are fine in a basic string, and pieces that are not
    /// (or are fine only in some kinds of string).
    static let goodPieces = ["a", "b", "z", "é", " ", "\t", "\\n", "\\t", "\\u00e9", "\\U0001F600", "#", "=", "😀", "\\\\", "\\\""]
    static let badPieces = [
        "\"", "'", "\\", "\\u12", "\\x41", "\\e", "\\ ", "\u{0}", "\u{1}", "\u{1F}", "\u{7F}", "\r", "\r\n", "\n", "\u{FEFF}",
        "\\\n", "\\  \n", "\"\"", "''",
    ]

    mutating func piece() -> String { chance(8) ? pick(Self.badPieces) : pick(Self.goodPieces) }
    mutating func text(maxPieces: Int = 4) -> String { (0 ..< below(maxPieces + 1)).map { _ in piece() }.joined() }

    mutating func key() -> String {
        switch below(20) {
        case 0: return "\"\(text(maxPieces: 2))\""
        case 1: return "'\(text(maxPieces: 2))'"
        case 2, 3: return "\(pick(["a", "b"])).\(pick(["a", "b", "c"]))"
        case 4: return "\(pick(["a", "b"])) . \(pick(["c", "\"d.e\""]))"
        case 5: return pick(["a-b", "_x", "1", "-", "é", "a b", "", "a.", ".a", "a..b"])
        default: return pick(["a", "b", "c", "d", "e", "f"])
        }
    }

    mutating func value(depth: Int = 0) -> String {
        let tripleQuote = String(repeating: "\"", count: 3), tripleApostrophe = String(repeating: "'", count: 3)
        switch below(depth > 2 ? 6 : 10) {
        case 0, 1: return chance(15) ? pick(Self.badNumbers) : pick(Self.goodNumbers)
        case 2: return "\"\(text())\""
        case 3: return "'\(text().replacingOccurrences(of: "'", with: ""))'"
        case 4:
            let tail = chance(20) ? pick(["\"", "\"\"", tripleQuote]) : ""
            return tripleQuote + pick(["", "\n", "\r\n"]) + text(maxPieces: 6) + pick(["", "\n", "\r\n"]) + text() + tripleQuote + tail
        case 5:
            let tail = chance(20) ? pick(["'", "''", tripleApostrophe]) : ""
            return tripleApostrophe + pick(["", "\n"]) + text(maxPieces: 6).replacingOccurrences(of: "'", with: "") + tripleApostrophe + tail
        case 6, 7:
            let items = (0 ..< below(4)).map { _ in value(depth: depth + 1) }
            let end = chance(10) ? pick([",,", " # c\n", "\n"]) : pick(["", ","])
            return "[\(pick(["", " ", "\n"]))\(items.joined(separator: pick([",", ", ", ",\n", " , "])))\(end)]"
        default:
            let entries = (0 ..< below(4)).map { _ in "\(key()) = \(value(depth: depth + 1))" }
            let end = chance(10) ? pick([",", "\n"]) : pick(["", " "])
            return "{\(pick(["", " "]))\(entries.joined(separator: pick([", ", ",", " , "])))\(end)}"
        }
    }

    mutating func line() -> String {
        switch below(12) {
        case 0: return "[\(key())]"
        case 1: return "[\(pick(["a", "b", "a.b", "a.b.c", "b.c", "\"a\""]))]\(chance(10) ? " x" : pick(["", " # c"]))"
        case 2: return "# \(text())"
        case 3: return pick(["", " ", "\t"])
        case 4 where chance(30): return "[[\(key())]]"
        default: return "\(key())\(chance(5) ? " == " : pick([" = ", "=", " =", "= "]))\(value())\(chance(5) ? " x" : pick(["", "", " # \(text(maxPieces: 2))"]))"
        }
    }

    mutating func document() -> String {
        var lines: [String] = []
        for _ in 0 ..< 1 + below(6) { lines.append(line()) }
        var document = lines.joined(separator: chance(5) ? "\r" : pick(["\n", "\n", "\r\n"]))
        if chance(50) { document += "\n" }
        // Now and then one byte-sized edit of a document, where parsers slip.
        if chance(15), !document.isEmpty {
            var scalars = Array(document.unicodeScalars)
            let at = below(scalars.count)
            let replacement = pick(Array("\"'\\\r\n=.[]{},#_0e\u{0}\u{7F} ".unicodeScalars))
            switch below(3) {
            case 0: scalars.insert(replacement, at: at)
            case 1: scalars.remove(at: at)
            default: scalars[at] = replacement
            }
            document = String(String.UnicodeScalarView(scalars))
        }
        return document
    }
}
