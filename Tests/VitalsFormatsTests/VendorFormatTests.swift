import Foundation
import Testing
import VitalsDomain
import VitalsFormats

/// Expected values are derived by hand from `payload-formats.md` §1 (times with `date -u -d`).
@Suite("vendor formats")
struct VendorFormatTests {
    @Test("Tenovi object: value strings \"128.00\", device from hwi_device_id, offset in hours (§1.1 example 1)")
    func tenoviObject() throws {
        let m = try decode(try fixture("tenovi-bp.json"), .tenovi)
        #expect(m.deviceID == "00000000-0000-4000-8000-000000000001")
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP])
        #expect(o.map(\.canonicalValue) == [128, 82])
        #expect(o.allSatisfy { close($0.measuredAt.timeIntervalSince1970, 1_725_977_972.202863) })
        #expect(o.allSatisfy { $0.localOffsetMinutes == -240 && $0.timeSource == .device && $0.flags.isEmpty })
    }

    @Test("Tenovi array: BP, pulse and irregular_heartbeat of one measurement_index; battery is status (§1.1 example 2)")
    func tenoviArray() throws {
        let m = try decode(try fixture("tenovi-array.json"), .tenovi)
        #expect(m.outcomes == ["ok", "ok", "ok"])
        #expect(m.accepted.map(\.canonicalValue) == [128, 82, 71])
        #expect(m.accepted.allSatisfy { $0.flags == .irregularHeartbeat })
        #expect(m.status == [DeviceStatusValue(deviceID: m.deviceID, name: .batteryPercent, value: 87, observedAt: at(1_725_977_972))])
    }

    @Test("Tenovi glucose with estimated_timestamp: flagged, time source vendor_estimate (§1.1 example 3)")
    func tenoviGlucose() throws {
        let o = try #require(try decode(try fixture("tenovi-glucose.json"), .tenovi).accepted.first)
        #expect(o.type == .glucose && o.canonicalValue == 142 && o.unit == "mg/dL")
        #expect(o.flags == .estimatedTime && o.timeSource == .vendorEstimate)
        #expect(o.measuredAt == at(1_726_056_300))
    }

    @Test("Tenovi quirks: HI and above-range alert are range events, 2047 a device error, weight unit never guessed")
    func tenoviQuirks() throws {
        let base = #""hwi_device_id":"00000000-0000-4000-8000-000000000002","timestamp":"2024-09-11T12:05:00Z""#
        let hi = try decode(#"{"metric":"glucose","value_1":"HI",\#(base)}"#, .tenovi)
        #expect(hi.outcomes == ["out_of_meter_range"])
        #expect(hi.events.map(\.kind) == [.aboveRange])
        let alert = try decode(#"{"metric":"glucose","value_1":"600","filter_params":{"alert":"sensor_result_above_range"},\#(base)}"#, .tenovi)
        #expect(alert.outcomes == ["out_of_meter_range"])
        let nan = try decode(#"{"metric":"blood_pressure","value_1":2047,"value_2":2047,\#(base)}"#, .tenovi)
        #expect(nan.outcomes == ["device_error", "device_error"])
        #expect(nan.events.count == 2 && nan.events.allSatisfy { $0.kind == .deviceError && $0.measuredAt == at(1_726_056_300) })
        let weight = try decode(#"{"metric":"weight","value_1":81.2,\#(base)}"#, .tenovi)
        #expect(weight.outcomes == ["bad_unit"])
        let alone = try decode(#"{"metric":"irregular_heartbeat","value_1":1,\#(base)}"#, .tenovi)
        #expect(alone.readings.isEmpty)
        #expect(alone.markers == [ReadingMarker(deviceID: alone.deviceID, measuredAt: at(1_726_056_300), flags: .irregularHeartbeat)])
        let control = try decode(#"{"metric":"glucose","value_1":"120","filter_params":{"measurement_location":"control solution"},\#(base)}"#, .tenovi)
        #expect(control.outcomes == ["unknown_type"])
    }

    @Test("the topic's device and the payload's must agree (device_mismatch); a configured device field overrides")
    func deviceSources() throws {
        #expect(throws: Rejection(.deviceMismatch, "the device in the payload differs from the device in the topic")) {
            try decode(try fixture("tenovi-bp.json"), .tenovi, topicDevice: "cuff-9")
        }
        let same = try decode(try fixture("tenovi-bp.json"), .tenovi, topicDevice: "00000000-0000-4000-8000-000000000001")
        #expect(same.accepted.count == 2)
        let byField = try decode(try fixture("tenovi-bp.json"), .tenovi, deviceField: "patient_id")
        #expect(byField.deviceID == "TEST-PATIENT-001")
    }

    @Test("BodyTrace: grams, milliseconds, IMEI as a number, rssi positive = −dBm, the \"values \" typo (§1.3)")
    func bodyTrace() throws {
        for name in ["bodytrace.json", "bodytrace-values-typo.json"] {
            let m = try decode(try fixture(name), .bodytrace)
            #expect(m.deviceID == "8600000000000")
            let o = try #require(m.accepted.first)
            #expect(o.type == .bodyWeight && o.value == 69_800 && o.unit == "g" && close(o.canonicalValue, 69.8))
            #expect(close(o.measuredAt.timeIntervalSince1970, 1_380_562_575.798))
            #expect(Set(m.status.map(\.name)) == [.batteryMillivolts, .signalDBm])
            #expect(m.status.first { $0.name == .signalDBm }?.value == -91)
            #expect(m.status.first { $0.name == .batteryMillivolts }?.value == 5522)
        }
        let drift = try decode(#"{"deviceId":8600000000000,"ts":1380562575798,"values":{"unit":1,"weight":69800,"tare":150}}"#, .bodytrace)
        #expect(drift.outcomes == ["device_error"])
        #expect(drift.events.first?.code == "tare_drift")
    }

    @Test("Telli BP: ms as a string, tzOffsetMinutes, mem \"1\", arrhythmia, devdata as status (§1.4)")
    func telliBP() throws {
        let m = try decode(try fixture("telli-bp.json"), .telli)
        #expect(m.deviceID == "860000000000001")
        #expect(m.accepted.map(\.type) == [.systolicBP, .diastolicBP, .heartRate])
        #expect(m.accepted.map(\.canonicalValue) == [122, 98, 62])
        #expect(m.accepted.allSatisfy {
            $0.flags == [.irregularHeartbeat, .fromDeviceMemory] && $0.measuredAt == at(1_721_382_524) && $0.localOffsetMinutes == -200
        })
        #expect(m.status.map(\.name) == [.batteryPercent, .signalBars])
        #expect(m.status.map(\.value) == [90, 1])
    }

    @Test("Telli weight in lb, SpO2 with battery and pi as status, the vendor's glucose example with a stray key")
    func telliOthers() throws {
        let w = try #require(try decode(try fixture("telli-weight.json"), .telli).accepted.first)
        #expect(w.unit == "lb" && w.value == 135 && close(w.canonicalValue, 61.23497))
        #expect(close(w.measuredAt.timeIntervalSince1970, 1_721_400_730.106))
        let s = try decode(try fixture("telli-spo2.json"), .telli)
        #expect(s.accepted.map(\.type) == [.spo2, .heartRate] && s.accepted.map(\.canonicalValue) == [98, 83])
        #expect(Dictionary(uniqueKeysWithValues: s.status.map { ($0.name, $0.value) }) == [.signalBars: 1, .batteryPercent: 61, .perfusionIndex: 20])
        let g = try #require(try decode(try fixture("telli-glucose-vendor-example.json"), .telli).accepted.first)
        #expect(g.type == .glucose && g.canonicalValue == 110)
        let f = try decode(#"{"data":{"temperature":98.6,"unit":"F"},"deviceId":"860000000000005","readingType":"Temperature","time":"1721400715000"}"#, .telli)
        #expect(close(f.accepted[0].canonicalValue, 37))
        let noUnit = try decode(#"{"data":{"glucose":6.1},"deviceId":"860000000000005","readingType":"BloodGlucose","time":"1721400715000"}"#, .telli)
        #expect(noUnit.outcomes == ["bad_unit"])
        let heartbeat = try decode(#"{"type":"Heartbeat","deviceId":"860000000000005","time":"1721400715000","devdata":{"r":"3","batt":"pwr"}}"#, .telli)
        #expect(heartbeat.readings.isEmpty && heartbeat.status.map(\.name) == [.externalPower, .signalBars])
    }

    @Test("Withings: value × 10^unit (65750, −3 → 65.75 kg), BP types 9/10/11, unknown meastype, timezone offset (§1.5)")
    func withings() throws {
        let m = try decode(try fixture("withings-getmeas.json"), .withings)
        #expect(m.deviceID == "0000000000000000000000000000000000000001")
        #expect(m.outcomes == ["ok", "ok", "ok", "ok", "unknown_type"])
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate, .bodyWeight])
        #expect(o.map(\.canonicalValue) == [128, 82, 71, 65.75])
        #expect(o[0].measuredAt == at(1_594_245_600) && o[0].localOffsetMinutes == -240 && o[0].vendorReadingID == "1000000001")
        #expect(o[3].measuredAt == at(1_594_246_000) && o[3].vendorReadingID == "1000000002")
    }

    @Test("Withings attrib and category policy: manual entries are manual readings, ambiguous user and objectives refused")
    func withingsPolicy() throws {
        func group(_ extra: String) throws(Rejection) -> DecodedMessage {
            try decode(#"{"measuregrps":[{"grpid":1,"date":1594245600,"deviceid":"w1","measures":[{"value":80000,"type":1,"unit":-3}],\#(extra)}]}"#, .withings)
        }
        let manual = try group(#""attrib":2,"category":1"#)
        #expect(manual.accepted.first?.source == .manual && manual.accepted.first?.flags == .manualEntry)
        #expect(try group(#""attrib":1,"category":1"#).outcomes == ["device_mismatch"])
        #expect(try group(#""attrib":0,"category":2"#).outcomes == ["unknown_type"])
        #expect(throws: Rejection.self) { try decode(#"{"status":401,"body":{}}"#, .withings) }
    }

    @Test("Dexcom v3: UTC systemTime with and without offset, null value with status high, 39/401 placeholders (§1.7)")
    func dexcom() throws {
        let m = try decode(try fixture("dexcom-egv.json"), .dexcom)
        #expect(m.deviceID == "FAKE01")
        #expect(m.outcomes == ["ok", "out_of_meter_range", "ok"])
        let o = m.accepted
        #expect(o[0].canonicalValue == 142 && o[0].measuredAt == at(1_709_301_912) && o[0].localOffsetMinutes == -300)
        #expect(o[0].vendorReadingID == "00000000-0000-4000-8000-0000000000b1")
        #expect(o[1].canonicalValue == 118 && o[1].measuredAt == at(1_709_301_912 + 600) && o[1].localOffsetMinutes == nil)
        #expect(m.events == [DeviceEvent(deviceID: "FAKE01", kind: .aboveRange, type: .glucose, measuredAt: at(1_709_301_912 + 300), code: "hi_marker")])
        let placeholders = try decode(#"{"records":[{"systemTime":"2024-03-01T14:05:12Z","value":39,"unit":"mg/dL"},{"systemTime":"2024-03-01T14:10:12Z","value":401,"unit":"mg/dL"},{"systemTime":"2024-03-01T14:15:12Z","value":120,"unit":"unknown"}]}"#, .dexcom, topicDevice: "cgm-1")
        #expect(placeholders.outcomes == ["out_of_meter_range", "out_of_meter_range", "bad_unit"])
        #expect(placeholders.events.map(\.kind) == [.belowRange, .aboveRange])
    }

    @Test("iHealth: MDate is local time encoded as UTC; the instant is MDate − offset; HP/LP/HR (§1.6)")
    func iHealth() throws {
        let m = try decode(try fixture("ihealth-bp.json"), .ihealth, topicDevice: "ih-1")
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate] && o.map(\.canonicalValue) == [111, 67, 80])
        #expect(o.allSatisfy { $0.measuredAt == at(1_731_866_503) && $0.localOffsetMinutes == -300 && $0.flags.isEmpty })
        #expect(o[0].vendorReadingID == "00000000000000000000000000000001")
        let manual = try decode(#"{"BPDataList":[{"HP":150,"LP":95,"IsArr":1,"MDate":1731848503,"TimeZone":"-0500","DataSource":"Manual"}]}"#, .ihealth, topicDevice: "ih-1")
        #expect(manual.accepted.allSatisfy { $0.source == .manual && $0.flags == [.irregularHeartbeat, .manualEntry] })
        #expect(throws: Rejection.self) { try decode(#"{"BPDataList":[]}"#, .ihealth) }  // no device anywhere
    }
}
