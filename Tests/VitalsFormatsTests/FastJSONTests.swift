import FormatFuzzing
import Foundation
import Testing
@testable import VitalsDomain

@Suite("the fast JSON path")
struct FastJSONTests {
    @Test("on fixtures, hand-made edge cases and 5,000 fuzzed payloads it gives what the full path gives, or defers")
    func sameAsFullPath() throws {
        var payloads = try FormatFuzzer.corpus(directory: fixturesDirectory())
        let edges = [
            #"{"type":"glucose","value":52,"unit":"mg/dL","measured_at":1764335400000}"#, #"{"value": -0.0}"#,
            #"{"value":7e1}"#, #"{"value":1E+2,"x":[1,2,{"y":null}],"b":true,"c":false}"#, #" { } "#, "[]", #"{"a":1,"a":2}"#,
            #"{"a":"\u0041"}"#, #"{"unit":"mg\/dL","q":"a\"b\\c\n"}"#, #"{"a":"\x"}"#, #"{"a":"é"}"#, "{\"a\":\"tab\there\"}", #"{"a":01}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":1e400}"#,
            #"{"a":1}x"#, #"{"a":tru}"#, String(repeating: "[", count: 40) + String(repeating: "]", count: 40), "",
        ]
        payloads += edges.map { Array($0.utf8) }
        let fuzzer = FormatFuzzer(corpus: payloads)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<5_000 { payloads.append(fuzzer.generate(&rng)) }
        var fast = 0
        for p in payloads {
            guard let value = FastJSON.parse(p) else { continue }
            fast += 1
            #expect(try CanonicalMessageDecoder.parseFully(p) == value, "\(String(decoding: p, as: UTF8.self))")
        }
        #expect(fast > 1_000)
        #expect(FastJSON.parse(Array(#"{"a":1,"a":2}"#.utf8)) == nil)
        #expect(FastJSON.parse(Array(#"{"unit":"mg\/dL"}"#.utf8)) == .object(["unit": .string("mg/dL")]))
    }
}
