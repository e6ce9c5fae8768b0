import Foundation
import Testing
import VitalsDomain

/// Inputs found by trying to break vitalsd, each with the behaviour it must keep.
@Suite("hostile input")
struct HostileInputTests {
    let decoder = CanonicalMessageDecoder()
    let received = Date(timeIntervalSince1970: 1_795_871_400)  // 2026-11-28T13:10:00Z

    @Test("impossible dates are refused, not rolled over", arguments: [
        "2026-02-30T12:00:00Z", "2026-02-29T12:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T12:61:00Z",
        "2026-11-28T12:00:61Z", "2026-11-28T23:59:60Z", "2026-11-28T12:00:00+0100", "2026-11-28T12:00:00+24:00",
        "2026-13-01T00:00:00Z", "2026-11-28T12:00:00.Z", "2026-11-28T12:00:00Z ", "2026-11-28",
    ])
    func impossibleDates(text: String) {
        #expect(MeasurementTimePolicy.parseRFC3339(text) == nil)
    }

    @Test("valid dates, offsets and fractions")
    func validDates() {
        // 2028 is a leap year: 2028-02-29T12:00:00Z = 1,835,438,400 s (python datetime).
        #expect(MeasurementTimePolicy.parseRFC3339("2028-02-29T12:00:00Z")?.timeIntervalSince1970 == 1_835_438_400)
        // 18:40 at +05:30 is 13:10Z.
        #expect(MeasurementTimePolicy.parseRFC3339("2026-11-28T18:40:00+05:30")?.timeIntervalSince1970 == 1_795_871_400)
        #expect(MeasurementTimePolicy.parseRFC3339("2026-11-28t13:10:00z")?.timeIntervalSince1970 == 1_795_871_400)
        #expect(MeasurementTimePolicy.parseRFC3339("2026-11-28T13:10:00.5Z")?.timeIntervalSince1970 == 1_795_871_400.5)
    }

    @Test("a repeated key is refused: first-wins would have hidden a glucose of 45")
    func duplicateKeys() throws {
        for json in [
            #"{"type":"glucose","value":120,"value":45,"unit":"mg/dL","measured_at":"2026-11-28T08:02:04Z"}"#,
            #"{"type":"glucose","value":45,"\u0076alue":120,"unit":"mg/dL","measured_at":"2026-11-28T08:02:04Z"}"#,
            #"{"measured_at":"2026-11-28T08:00:00Z","readings":[{"type":"glucose","type":"spo2","value":1,"unit":"%"}]}"#,
        ] {
            do {
                _ = try decoder.decode(payload: Array(json.utf8), deviceID: "g", receivedAt: received)
                Issue.record("accepted \(json)")
            } catch {
                #expect(error.reason == .malformedJSON)
            }
        }
        // The same key in two different objects is fine.
        let ok = #"{"measured_at":"2026-11-28T08:00:00Z","readings":[{"type":"glucose","value":90,"unit":"mg/dL"},{"type":"glucose","value":91,"unit":"mg/dL","measured_at":"2026-11-28T08:05:00Z"}]}"#
        #expect(try decoder.decode(payload: Array(ok.utf8), deviceID: "g", receivedAt: received).readings.count == 2)
        #expect(JSONValue.hasDuplicateKey(Array(#"{"a":"x\"a","b":{"a":1}}"#.utf8)) == false)
    }

    @Test("rejection details never repeat payload text (no values, no forged log lines)")
    func detailsCarryNoPayloadText() throws {
        let json = #"{"measured_at":"2026-11-28T08:00:00Z","readings":[{"type":"x\n2026 critical FAKE","value":77,"unit":"mg/dL"},{"type":"glucose","value":77,"unit":"mg/dL 77 John Doe DOB"}]}"#
        let m = try decoder.decode(payload: Array(json.utf8), deviceID: "g", receivedAt: received)
        for r in m.readings {
            guard case .failure(let rejection) = r else { Issue.record("accepted a bad reading"); continue }
            #expect(!rejection.detail.contains("FAKE"))
            #expect(!rejection.detail.contains("John"))
            #expect(!rejection.detail.contains("77"))
            #expect(!rejection.detail.contains("\n"))
        }
    }

    @Test("numeric strings: a trailing point is not a number")
    func trailingPoint() {
        #expect(NumericValue.parseDecimalString("120.") == nil)
        #expect(NumericValue.parseDecimalString("120.5") == 120.5)
    }
}
