import ArgumentParser
import Foundation
import KizunaHost

/// `kizuna fuzz`: throws mutated inputs at a decoder of peer or file input until a count or
/// a time is reached. A crash is a bug in the decoder; its input is kept.
struct FuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz",
        abstract: "Fuzz a decoder of peer or file input: a plugin library that exports kizuna_fuzz_one_input, or the host's 'manifest', 'control-request', 'library-header' or 'pairing-message'.",
        discussion: """
            Inputs are the seeds (files in --seeds) mutated by a generator seeded with --seed, so a run can be \
            repeated. A decoder that crashes kills this process; the input that did it is written to --crash-file \
            first. For coverage-guided fuzzing with libFuzzer, see Tests/Fuzz/README.md.
            """)

    @Argument(help: "A plugin library (.so) that exports kizuna_fuzz_one_input, or 'manifest', 'control-request', 'library-header' or 'pairing-message'.")
    var target: String

    @Option(name: .long, help: "A folder of sample inputs to mutate.")
    var seeds: String?

    @Option(name: .long, help: "At most this many inputs.")
    var runs = 100_000

    @Option(name: .long, help: "At most this many seconds (default: no limit).")
    var seconds: Double?

    @Option(name: .long, help: "The generator's seed.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Where the input that crashed the decoder is written.")
    var crashFile = "kizuna-fuzz-crash.bin"

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        if let seconds, !(seconds > 0) { throw ValidationError("--seconds must be more than 0") }
    }

    func run() throws {
        var configuration = FuzzConfiguration()
        configuration.runs = runs
        configuration.duration = seconds.map { .milliseconds(Int($0 * 1000)) }
        configuration.seed = seed
        configuration.seedDirectory = seeds
        configuration.crashFile = crashFile
        let fuzzer = Fuzzer(target: Fuzzer.Target(target), configuration: configuration)
        do {
            let report = try fuzzer.run()
            print("fuzz \(fuzzer.target): \(report)")
        } catch {
            throw CommandFailure("\(error)")
        }
    }
}
