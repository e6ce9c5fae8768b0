import Foundation
import Testing
import VitalsDomain
import VitalsFormats

/// Smaller quirks of each format, one test each (`payload-formats.md` §1–3).
@Suite("format quirks")
struct MoreQuirkTests {
    @Test("issue 11.3: a device format with an unset clock keeps the value, timed by receipt, for a device task")
    func wrongClockKeepsValue() throws {
        // SenML `t` 946684800 s is 2000-01-01T00:00:00Z; BodyTrace ts 5 min ahead of the receipt.
        let senml = try decode(#"[{"bn":"urn:dev:id:g7:","n":"glucose","u":"mg/dL","v":41,"t":946684800}]"#, .senml)
        let ahead = try decode(#"{"deviceId":8600000000001,"ts":\#(Int64(received.timeIntervalSince1970 * 1000) + 900_000),"values":{"unit":1,"weight":70100,"tare":0}}"#, .bodytrace)
        for (message, value) in [(senml, 41.0), (ahead, 70.1)] {
            guard case .failure(let rejection) = try #require(message.readings.first) else {
                Issue.record("a wrong clock was accepted")
                continue
            }
            #expect(rejection.reason == .badTimestamp)
            let kept = try #require(rejection.clockObservation)
            #expect(close(kept.canonicalValue, value) && kept.measuredAt == received)
            #expect(kept.timeSource == .receivedAt && kept.flags.contains(.estimatedTime))
        }
        // A time that cannot be read at all is not a clock problem: nothing is kept.
        let unreadable = try decode(#"{"deviceId":8600000000001,"ts":"soon","values":{"unit":1,"weight":70100,"tare":0}}"#, .bodytrace)
        guard case .failure(let r) = try #require(unreadable.readings.first) else { return }
        #expect(r.reason == .badTimestamp && r.clockObservation == nil)
    }

    @Test("Telli v1: no tzOffsetMinutes, no mem, no devdata; a UUID device id")
    func telliV1() throws {
        let m = try decode(#"{"data":{"unit":"kg","weight":80.5},"deviceId":"00000000-0000-4000-8000-000000000009","readingType":"Weight","time":"1721400730000"}"#, .telli)
        let o = try #require(m.accepted.first)
        #expect(o.canonicalValue == 80.5 && o.localOffsetMinutes == nil && o.flags.isEmpty && m.status.isEmpty)
    }

    @Test("Telli: PeakFlow is not a vital vitalsd stores (unknown_type); battery \"pwr\" is external power")
    func telliPeakFlow() throws {
        let m = try decode(#"{"data":{"fev1":2.1,"pef":300},"deviceId":"860000000000006","readingType":"PeakFlow","time":"1721400730000","devdata":{"batt":"pwr"}}"#, .telli)
        #expect(m.outcomes == ["unknown_type"] && m.status.map(\.name) == [.externalPower])
    }

    @Test("Dexcom v2 shape: unit at the top, records in egvs")
    func dexcomV2() throws {
        let m = try decode(#"{"unit":"mmol/L","rateUnit":"mmol/L/min","egvs":[{"systemTime":"2024-03-01T14:05:12","value":7.2}]}"#, .dexcom, topicDevice: "cgm-2")
        let o = try #require(m.accepted.first)
        #expect(close(o.canonicalValue, 129.7296) && o.measuredAt == at(1_709_301_912))
    }

    @Test("Withings: a bare group and an array of groups; AFib classification (130) is unknown_type")
    func withingsShapes() throws {
        let group = #"{"grpid":7,"date":1594245600,"deviceid":"w2","category":1,"attrib":0,"measures":[{"value":3655,"type":71,"unit":-2},{"value":1,"type":130,"unit":0}]}"#
        for json in [group, "[\(group)]"] {
            let m = try decode(json, .withings)
            #expect(m.outcomes == ["ok", "unknown_type"])
            #expect(close(m.accepted[0].canonicalValue, 36.55) && m.accepted[0].type == .bodyTemperature)
        }
        #expect(FormatDetector.detect(try CanonicalMessageDecoder.parse(Array("[\(group)]".utf8))) == .withings)
    }

    @Test("iHealth BPUnit 1 is kPa: 16 kPa × 7.50062 = 120.01 mmHg; an unknown BPUnit refuses the list")
    func iHealthKPa() throws {
        let m = try decode(#"{"BPDataList":[{"HP":16,"LP":10.6,"MDate":1731848503,"TimeZone":"-0500"}],"BPUnit":1}"#, .ihealth, topicDevice: "ih-2")
        #expect(m.accepted.map(\.unit) == ["kPa", "kPa"])
        #expect(close(m.accepted[0].canonicalValue, 120.00992) && close(m.accepted[1].canonicalValue, 79.506572))
        #expect(throws: Rejection.self) { try decode(#"{"BPDataList":[{"HP":16}],"BPUnit":7}"#, .ihealth, topicDevice: "ih-2") }
    }

    @Test("iHealth without an offset: MDate is a naive local time read in the configured zone")
    func iHealthNaive() throws {
        let chicago = TimeZone(identifier: "America/Chicago")
        // 1731848503 as a wall clock is 2024-11-17 13:01:43; in Chicago (CST, −6 h) that is 19:01:43Z.
        let m = try decode(#"{"BPDataList":[{"HP":111,"LP":67,"MDate":1731848503}]}"#, .ihealth, topicDevice: "ih-3", zone: chicago)
        #expect(m.accepted.allSatisfy { $0.measuredAt == at(1_731_870_103) && $0.flags == .localTimeAssumed })
    }

    @Test("BodyTrace: values.unit is the display unit only; grams are grams whatever it says")
    func bodyTraceDisplayUnit() throws {
        let m = try decode(#"{"deviceId":8600000000001,"ts":1380562575798,"values":{"unit":2,"weight":90718,"tare":0}}"#, .bodytrace)
        #expect(close(m.accepted[0].canonicalValue, 90.718))
    }

    @Test("FHIR: entered-in-error is refused; a collection Bundle is read; an unknown code is unknown_type")
    func fhirStatusAndCollection() throws {
        let error = try decode(#"{"resourceType":"Observation","status":"entered-in-error","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2024-01-01T08:00:00Z","valueQuantity":{"value":70,"code":"/min"}}"#, .fhir, topicDevice: "d")
        #expect(error.outcomes == ["unknown_format"])
        let collection = try decode(#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"8310-5"}]},"effectiveDateTime":"2024-01-01T08:00:00Z","valueQuantity":{"value":98.6,"code":"[degF]"}}},{"resource":{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},"effectiveDateTime":"2024-01-01T08:00:00Z","valueQuantity":{"value":1,"code":"1"}}}]}"#, .fhir, topicDevice: "d")
        #expect(collection.outcomes == ["ok", "unknown_type"] && close(collection.accepted[0].canonicalValue, 37))
    }

    @Test("SenML: readings of a second device in one pack are device_mismatch; bv adds to v")
    func senmlTwoDevices() throws {
        let m = try decode(#"[{"bn":"gw/scale-1/","bt":1710000000,"bv":80,"n":"weight","u":"kg","v":0.5},{"bn":"gw/scale-2/","n":"weight","u":"kg","v":1}]"#, .senml)
        #expect(m.deviceID == "scale-1" && m.outcomes == ["ok", "device_mismatch"])
        #expect(m.accepted[0].canonicalValue == 80.5)
    }

    @Test("Tenovi: readings of another hwi_device_id in one array are device_mismatch")
    func tenoviTwoDevices() throws {
        let m = try decode(#"[{"metric":"pulse","hwi_device_id":"a-1","value_1":70,"timestamp":"2024-09-10T14:19:32Z"},{"metric":"pulse","hwi_device_id":"a-2","value_1":71,"timestamp":"2024-09-10T14:19:32Z"}]"#, .tenovi)
        #expect(m.deviceID == "a-1" && m.outcomes == ["ok", "device_mismatch"])
    }
}
