import Foundation
import Testing
import VitalsDomain
import VitalsFormats

/// Expected values derived by hand from `payload-formats.md` §2 (SenML) and §3 (FHIR).
@Suite("SenML and FHIR")
struct StandardFormatTests {
    @Test("SenML strict pack: BP in Pa (÷ 133.322), pulse 1/s (× 60), battery %EL as status, device from urn:dev (§2.4)")
    func senmlStrict() throws {
        let m = try decode(try fixture("senml-strict.json"), .senml)
        #expect(m.deviceID == "860000000000001")
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate])
        #expect(close(o[0].canonicalValue, 128.00063) && o[0].value == 17065.3 && o[0].unit == "Pa")
        #expect(close(o[1].canonicalValue, 81.99997))
        #expect(close(o[2].canonicalValue, 72))
        #expect(o.allSatisfy { $0.measuredAt == at(1_710_000_000) && $0.flags.isEmpty })
        #expect(m.status.map(\.name) == [.batteryPercent] && m.status.map(\.value) == [80])
    }

    @Test("SenML real-world pack: bu carried forward, unregistered mmHg flagged, /100, relative t, kg/m3 glucose (§2.4)")
    func senmlRealWorld() throws {
        let m = try decode(try fixture("senml-real-world.json"), .senml)
        #expect(m.deviceID == "bpcuff-7")
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate, .spo2, .bodyWeight, .glucose])
        #expect(o.map(\.canonicalValue) == [128, 82, 72, 97, 81.4, 112])
        #expect(o[0].flags == .unregisteredUnit && o[1].flags == .unregisteredUnit && o[2].flags.isEmpty)
        #expect(o[4].measuredAt == at(1_709_999_970))
        #expect(o[5].measuredAt == at(1_710_000_000) && o[5].unit == "kg/m3" && close(o[5].value, 1.12))
    }

    @Test("SenML % is a 0–1 ratio: 0.97 % is 97 %, 97 % is implausible; ms times read by magnitude")
    func senmlRatioAndMilliseconds() throws {
        let m = try decode(#"[{"bn":"ox-1/","bt":1710000000000,"n":"spo2","u":"%","v":0.97},{"n":"spo2","u":"%","v":97,"t":1}]"#, .senml)
        #expect(m.outcomes == ["ok", "implausible_value"])
        #expect(close(m.accepted[0].canonicalValue, 97) && m.accepted[0].measuredAt == at(1_710_000_000))
    }

    @Test("SenML without time: receive time, flagged; relative t: seconds before receipt")
    func senmlRelative() throws {
        let m = try decode(#"[{"n":"scale-2/weight","u":"kg","v":80},{"n":"scale-2/weight","u":"kg","v":80.2,"t":-120}]"#, .senml)
        let o = m.accepted
        #expect(o[0].measuredAt == received && o[0].timeSource == .receivedAt && o[0].flags == .estimatedTime)
        #expect(o[1].measuredAt == received.addingTimeInterval(-120) && o[1].timeSource == .receivedAt)
    }

    @Test("SenML packs refused whole: not an array, a name RFC 8428 forbids, an unknown must-understand label, a later bver")
    func senmlRefused() throws {
        for (json, reason) in [("{}", DeadLetterReason.unknownFormat), (#"[{"n":"-bad name","v":1}]"#, .unknownFormat),
                               (#"[{"n":"x/weight","u":"kg","v":80,"ext_":1}]"#, .unknownFormat),
                               // RFC 8428 §4.4: a version above 10 must not be used.
                               (#"[{"bn":"gw/cuff/","bver":11,"n":"sys","u":"mmHg","v":130}]"#, .unknownFormat),
                               (#"[{"bn":"gw/cuff/","bver":9223372036854775807,"n":"sys","u":"mmHg","v":130}]"#, .unknownFormat)] {
            do {
                _ = try decode(json, .senml)
                Issue.record("accepted \(json)")
            } catch { #expect(error.reason == reason) }
        }
        // Version 10 (the RFC's) and earlier are read.
        #expect(try decode(#"[{"bn":"gw/cuff/","bver":10,"n":"weight","u":"kg","v":80}]"#, .senml).outcomes == ["ok"])
    }

    @Test("SenML per record: vs HI is a range marker; an unknown name is unknown_type; a record without unit is bad_unit")
    func senmlRecords() throws {
        let m = try decode(#"[{"bn":"gm-1/","bt":1710000000,"n":"glucose","u":"mg/dL","vs":"HI"},{"n":"steps","v":5},{"n":"weight","v":80}]"#, .senml)
        #expect(m.outcomes == ["out_of_meter_range", "unknown_type", "bad_unit"])
        #expect(m.events.map(\.kind) == [.aboveRange])
    }

    @Test("FHIR R4 BP example: date-only effectiveDateTime has no instant (bad_timestamp); codings matched by system+code (§3.2)")
    func fhirDateOnly() throws {
        let m = try decode(try fixture("fhir-bp-date-only.json"), .fhir, topicDevice: "cuff-1")
        #expect(m.outcomes == ["bad_timestamp", "bad_timestamp"])
    }

    @Test("FHIR PHD compound BP: MDC and LOINC codings, MAP skipped, device from device.reference (§3.4)")
    func fhirCompound() throws {
        let m = try decode(try fixture("fhir-phd-compound-bp.json"), .fhir)
        #expect(m.deviceID == "phd-711000FEFF5F49B0.B0495F001071")
        #expect(m.outcomes == ["ok", "ok"])
        #expect(m.accepted.map(\.canonicalValue) == [116, 71])
        #expect(m.accepted.allSatisfy { $0.measuredAt == at(1_541_954_295) && $0.localOffsetMinutes == -300 })
    }

    @Test("FHIR PHD transaction bundle: junk 'unit' text ignored, units from valueQuantity.code; Patient and Device skipped")
    func fhirBundle() throws {
        let m = try decode(try fixture("fhir-phd-bundle.json"), .fhir)
        #expect(m.deviceID == "nonin-3150-fake-0001")
        #expect(m.accepted.map(\.type) == [.spo2, .heartRate] && m.accepted.map(\.canonicalValue) == [97, 67])
        #expect(m.accepted.map(\.unit) == ["%", "/min"])
        #expect(m.accepted.allSatisfy { $0.measuredAt == at(1_547_057_125) })
    }

    @Test("FHIR PHD glucose coded MDC_CONC_GLU_UNDETERMINED_PLASMA (160368), as in the HL7 PHD IG's example")
    func fhirPlasmaGlucose() throws {
        let m = try decode(try fixture("fhir-phd-glucose-plasma.json"), .fhir)
        #expect(m.deviceID == "phd-fake-glucometer-0001")
        let o = try #require(m.accepted.first)
        // 2025-01-08T19:07:48-05:00 = 2025-01-09T00:07:48Z.
        #expect(o.type == .glucose && o.canonicalValue == 99 && o.unit == "mg/dL" && o.measuredAt == at(1_736_381_268))
    }

    @Test("every IEEE 11073 MDC_CONC_GLU_* sample type is glucose; control solution is unknown_type", arguments: [
        ("160020", "ok"), ("160184", "ok"), ("160188", "ok"), ("160192", "ok"), ("160196", "ok"), ("160200", "ok"),
        ("160204", "ok"), ("160212", "ok"), ("160364", "ok"), ("160368", "ok"),
        ("160208", "unknown_type"), ("160372", "unknown_type"), ("160376", "unknown_type"), ("160380", "unknown_type"),
    ])
    func fhirGlucoseCodes(code: String, outcome: String) throws {
        let json = #"{"resourceType":"Observation","code":{"coding":[{"system":"urn:iso:std:iso:11073:10101","code":"\#(code)"}]},"effectiveDateTime":"2025-01-08T19:07:48-05:00","valueQuantity":{"value":5.5,"code":"mmol/L"}}"#
        let m = try decode(json, .fhir, topicDevice: "g-1")
        #expect(m.outcomes == [outcome])
        if outcome == "ok" { #expect(close(m.accepted[0].canonicalValue, 99.099)) }  // 5.5 × 18.018
    }

    @Test("FHIR glucose in mmol/L with effectivePeriod.start: 6.3 × 18.018 = 113.5134 mg/dL (§3.3)")
    func fhirGlucose() throws {
        let o = try #require(try decode(try fixture("fhir-glucose-period.json"), .fhir, topicDevice: "gm-1").accepted.first)
        #expect(o.type == .glucose && close(o.canonicalValue, 113.5134) && o.measuredAt == at(1_364_891_410))
        #expect(o.vendorReadingID == "f001")
    }

    @Test("FHIR leniency: STU3 panel code and bare string code accepted; no valueQuantity.code is bad_unit; comparator is a range marker")
    func fhirLeniency() throws {
        let stu3 = try decode(#"{"resourceType":"Observation","code":"55284-4","effectiveDateTime":"2024-01-01T08:00:00Z","component":[{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":120,"code":"mm[Hg]"}},{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg"}}]}"#, .fhir, topicDevice: "c-1")
        #expect(stu3.outcomes == ["ok", "bad_unit"])
        let above = try decode(#"{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},"effectiveDateTime":"2024-01-01T08:00:00Z","valueQuantity":{"value":600,"comparator":">","code":"mg/dL"}}"#, .fhir, topicDevice: "g-1")
        #expect(above.outcomes == ["out_of_meter_range"] && above.events.map(\.kind) == [.aboveRange])
        let naive = try decode(#"{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"effectiveDateTime":"2024-01-01T08:00:00","valueQuantity":{"value":185,"code":"[lb_av]"}}"#, .fhir, topicDevice: "s-1", zone: TimeZone(identifier: "America/Chicago"))
        let w = try #require(naive.accepted.first)
        #expect(w.measuredAt == at(1_704_117_600) && w.flags == .localTimeAssumed && w.timeSource == .deviceLocal)
        #expect(close(w.canonicalValue, 83.914588))
        #expect(throws: Rejection.self) { try decode(#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#, .fhir) }
    }
}
