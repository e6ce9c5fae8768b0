import FormatFuzzing
import Foundation
import Testing
import VitalsDomain
import VitalsFormats

@Suite("numeric, sentinel and time rules")
struct RulesTests {
    let context = DecodeContext(topicDeviceID: "d", receivedAt: received)

    @Test("one parser: 145, \"145\" and 145.0 are the same number; other strings are not numbers (F11)")
    func numbers() throws {
        for json in [JSONValue.number(145), .string("145"), .number(145.0), .string(" 145.0 ")] {
            #expect(try DeviceNumber.parse(json, field: "v", type: .glucose) == .number(145))
        }
        for json in [JSONValue.string("1e5"), .string("abc"), .bool(true), .null, .string("")] {
            #expect(throws: Rejection.self) { try DeviceNumber.parse(json, field: "v", type: .glucose) }
        }
    }

    @Test("sentinels (F21): HI/LO markers, > and <, SFLOAT specials, cuff fills 0 and 255, E-codes", arguments: [
        (JSONValue.string("HI"), VitalType.glucose, DeviceEvent.Kind.aboveRange),
        (.string("lo"), .glucose, .belowRange),
        (.string(">600"), .glucose, .aboveRange),
        (.string("<20"), .glucose, .belowRange),
        (.number(2047), .systolicBP, .deviceError),
        (.number(2047), .glucose, .deviceError),
        (.string("2048"), .heartRate, .deviceError),
        (.number(0), .diastolicBP, .deviceError),
        (.number(255), .systolicBP, .deviceError),
        (.string("Err"), .systolicBP, .deviceError),
        (.string("E-2"), .bodyWeight, .deviceError),
    ] as [(JSONValue, VitalType, DeviceEvent.Kind)])
    func sentinels(json: JSONValue, type: VitalType, kind: DeviceEvent.Kind) throws {
        guard case .sentinel(let k, _) = try DeviceNumber.parse(json, field: "v", type: type) else {
            Issue.record("not a sentinel")
            return
        }
        #expect(k == kind)
    }

    @Test("255 is a value for glucose, 0 is a value for a weight rule check: cuff fills apply to BP and pulse only")
    func fillsOnlyForCuffs() throws {
        #expect(try DeviceNumber.parse(.number(255), field: "v", type: .glucose) == .number(255))
    }

    @Test("epoch seconds vs milliseconds by magnitude (F9): 1648731311 and 1648731311000 are one instant")
    func magnitude() throws {
        let s = try DeviceTime.epoch(.number(1_648_731_311), field: "ts", context: context)
        let ms = try DeviceTime.epoch(.number(1_648_731_311_000), field: "ts", context: context)
        let str = try DeviceTime.epoch(.string("1648731311000"), field: "ts", context: context)
        #expect(s.date == at(1_648_731_311) && ms.date == s.date && str.date == s.date)
    }

    @Test("unset or wrong clocks are bad_timestamp (F22): 0, 2000-01-01, negative, 10 years ahead, microseconds", arguments: [
        0, 946_684_800, 946_688_400, -617_292_592, 2_111_231_400, 1_648_731_311_000_000,
    ] as [Double])
    func unsetClock(ts: Double) {
        #expect(throws: Rejection.self) { try DeviceTime.epoch(.number(ts), field: "ts", context: context) }
    }

    @Test("small drift is accepted: 3 minutes ago, and 5 minutes ahead within the 600 s skew")
    func drift() throws {
        #expect(try DeviceTime.epoch(.number(1_795_871_400 - 180), field: "ts", context: context).date == at(1_795_871_220))
        #expect(try DeviceTime.epoch(.number(1_795_871_400 + 300), field: "ts", context: context).date == at(1_795_871_700))
    }

    @Test("naive local times: read in the configured zone and flagged; none configured or in a DST gap: bad_timestamp")
    func naiveLocal() throws {
        let chicago = DecodeContext(topicDeviceID: "d", receivedAt: received, localTimeZone: { _ in TimeZone(identifier: "America/Chicago") })
        let t = try DeviceTime.text(.string("2024-09-10 09:19:32.5"), field: "t", deviceID: "d", context: chicago)
        #expect(t.date == at(1_725_977_972.5) && t.source == .deviceLocal && t.flags == .localTimeAssumed)
        #expect(throws: Rejection.self) { try DeviceTime.text(.string("2024-09-10T09:19:32"), field: "t", deviceID: "d", context: context) }
        #expect(throws: Rejection.self) { try DeviceTime.text(.string("2026-03-08T02:30:00"), field: "t", deviceID: "d", context: chicago) }
        let withOffset = try DeviceTime.text(.string("2024-09-10T10:19:32-04:00"), field: "t", deviceID: "d", context: context)
        #expect(withOffset.date == at(1_725_977_972) && withOffset.offsetMinutes == -240 && withOffset.source == .device)
    }

    @Test("offsets as text: ±hhmm, ±hh:mm, ±hh")
    func offsets() {
        #expect(DeviceTime.offsetSeconds(text: "-0500") == -18_000)
        #expect(DeviceTime.offsetSeconds(text: "+05:30") == 19_800)
        #expect(DeviceTime.offsetSeconds(text: "-04") == -14_400)
        #expect(DeviceTime.offsetSeconds(text: "0500") == nil)
    }
}

@Suite("format selection")
struct FormatSelectionTests {
    @Test("auto detects each fixture's format by the documented rules", arguments: [
        ("tenovi-bp.json", MessageFormat.tenovi), ("tenovi-array.json", .tenovi), ("bodytrace.json", .bodytrace),
        ("telli-bp.json", .telli), ("telli-weight.json", .telli), ("withings-getmeas.json", .withings),
        ("dexcom-egv.json", .dexcom), ("ihealth-bp.json", .ihealth), ("senml-strict.json", .senml),
        ("senml-real-world.json", .senml), ("fhir-phd-bundle.json", .fhir), ("canonical.json", .canonical),
        ("qube-bp.json", .qube), ("qube-heartbeat.json", .qube), ("smartmeter-bp.json", .smartmeter),
        ("smartmeter-units-disagree.json", .smartmeter),
        ("impilo-bp.json", .impilo), ("impilo-glucose.json", .impilo),
        ("librelinkup-item.json", .librelinkup), ("librelinkup-graph.json", .librelinkup), ("librelinkup-bad-timestamp.json", .librelinkup),
        ("librelinkup-logbook.json", .librelinkup), ("fhir-phd-glucose-plasma.json", .fhir),
    ])
    func detect(name: String, format: MessageFormat) throws {
        let root = try CanonicalMessageDecoder.parse(try fixture(name))
        #expect(FormatDetector.detect(root) == format)
        let m = try decode(try fixture(name), .auto, topicDevice: [.canonical, .ihealth, .librelinkup].contains(format) ? "dev-1" : nil)
        #expect(m.format == format.rawValue)
    }

    @Test("auto refuses a shape it does not know (unknown_format)")
    func undetected() {
        do {
            _ = try decode(#"{"hello":"world"}"#, .auto, topicDevice: "d")
            Issue.record("accepted")
        } catch { #expect(error.reason == .unknownFormat) }
    }

    @Test("canonical through the format path gives what the canonical decoder gives")
    func canonical() throws {
        let bytes = try fixture("canonical.json")
        let direct = try CanonicalMessageDecoder().decode(payload: bytes, deviceID: "cuff-1", receivedAt: received)
        let routed = try decode(bytes, .canonical, topicDevice: "cuff-1")
        #expect(routed.accepted == direct.readings.compactMap { try? $0.get() })
    }

    @Test("nesting deeper than 32 levels is malformed_json before parsing (found by the fuzz run: parse time grew with depth²)")
    func nesting() throws {
        let deep = Array((String(repeating: "[", count: 33) + String(repeating: "]", count: 33)).utf8)
        #expect(throws: Rejection(.malformedJSON, "payload nests arrays and objects deeper than 32 levels")) {
            try CanonicalMessageDecoder.parse(deep)
        }
        let inString = Array(#"{"n":"\#(String(repeating: "[", count: 100))"}"#.utf8)
        #expect(try CanonicalMessageDecoder.parse(inString)["n"]?.stringValue?.count == 100)
        _ = try CanonicalMessageDecoder.parse(Array((String(repeating: "[", count: 32) + String(repeating: "]", count: 32)).utf8))
    }

    @Test("size, UTF-8 and repeated members are checked for every format")
    func prelude() {
        for format in MessageFormat.allCases {
            for (payload, reason) in [([UInt8]([0xFF, 0xFE, 0x7B, 0x22]), DeadLetterReason.invalidUTF8),
                                      (Array(#"{"sys":12"#.utf8), .malformedJSON),
                                      (Array(#"{"ts":1,"ts":2}"#.utf8), .malformedJSON),
                                      (Array(repeating: 0x20, count: 262_145), .tooLarge)] {
                do {
                    _ = try decode(payload, format, topicDevice: "d")
                    Issue.record("accepted")
                } catch { #expect(error.reason == reason) }
            }
        }
    }
}

@Suite("robustness")
struct FuzzTests {
    @Test("a seeded run of generated and mutated payloads through every decoder finds nothing")
    func fuzz() throws {
        let fuzzer = FormatFuzzer(corpus: try FormatFuzzer.corpus(directory: fixturesDirectory()))
        let report = fuzzer.run(count: 2_000, seed: 20_261_129)
        #expect(report.inputs == 2_000)
        #expect(report.failures == [])
        #expect(report.readings > 0 && report.rejections.count >= 8)
        #expect(report.slowestSeconds < 2)
    }
}
