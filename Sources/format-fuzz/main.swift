import FormatFuzzing
import Foundation
import VitalsDomain

// format-fuzz [count] [seed] [fixture-directory]
// Feeds `count` generated and mutated payloads (default 1,000,000, seed 1) through every decoder.
// Exit status 0 when no invariant broke, 1 otherwise.
let arguments = CommandLine.arguments
let count = arguments.count > 1 ? Int(arguments[1].replacingOccurrences(of: "_", with: "")) ?? 1_000_000 : 1_000_000
let seed = arguments.count > 2 ? UInt64(arguments[2]) ?? 1 : 1
let directory = arguments.count > 3 ? arguments[3] : "Tests/VitalsFormatsTests/Fixtures"

let corpus = try FormatFuzzer.corpus(directory: directory)
guard !corpus.isEmpty else {
    FileHandle.standardError.write(Data("no .json fixtures in \(directory)\n".utf8))
    exit(2)
}
let fuzzer = FormatFuzzer(corpus: corpus)
let started = ContinuousClock.now
let report = fuzzer.run(count: count, seed: seed) { done in
    FileHandle.standardError.write(Data("\(done) payloads\n".utf8))
}
let elapsed = ContinuousClock.now - started
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
print("payloads: \(report.inputs)  seed: \(seed)  fixtures: \(corpus.count)")
print("decoder runs: \(report.decodes)  readings accepted: \(report.readings)")
print("rejections: " + report.rejections.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: " "))
print(String(format: "time: %.1f s  slowest payload: %.4f s", seconds, report.slowestSeconds))
print("failures: \(report.failures.count)")
for failure in report.failures.prefix(20) { print("  \(failure)") }
exit(report.failures.isEmpty ? 0 : 1)
