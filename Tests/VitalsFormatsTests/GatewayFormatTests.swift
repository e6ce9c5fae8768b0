import Foundation
import Testing
import VitalsDomain
import VitalsFormats

/// Expected values are derived by hand from `payload-formats.md` §1.2, §1.8, §1.9 and §1.11 (times
/// with `date -u -d`).
@Suite("gateway and cloud formats")
struct GatewayFormatTests {
    @Test("Qube-Vital WBP_JUMPER: bp_high/bp_low mmHg, pr bpm, time in seconds, device from data.ble_mac (§1.11)")
    func qubeBloodPressure() throws {
        let m = try decode(try fixture("qube-bp.json"), .qube)
        #expect(m.deviceID == "AA:BB:CC:DD:EE:03" && !m.isHeartbeat)
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate])
        #expect(o.map(\.value) == [120, 78, 71] && o.map(\.unit) == ["mmHg", "mmHg", "bpm"])
        // 1739360702 = 2025-02-12T11:45:02Z; no offset is sent.
        #expect(o.allSatisfy { $0.measuredAt == at(1_739_360_702) && $0.timeSource == .device && $0.localOffsetMinutes == nil && $0.flags.isEmpty })
        #expect(m.status.isEmpty && m.events.isEmpty)
    }

    @Test("Qube-Vital CONTOUR, BodyScale_JUMPER, TEMO_Jumper: meal marker, Resistance and mode are not readings")
    func qubeKinds() throws {
        let g = try decode(try fixture("qube-glucose.json"), .qube)
        #expect(g.deviceID == "AA:BB:CC:DD:EE:04" && g.outcomes == ["ok"])
        #expect(g.accepted[0].type == .glucose && g.accepted[0].canonicalValue == 97 && g.accepted[0].unit == "mg/dL")
        let w = try decode(try fixture("qube-scale.json"), .qube)
        #expect(w.outcomes == ["ok"] && w.accepted[0].type == .bodyWeight && w.accepted[0].canonicalValue == 76.3)
        #expect(w.accepted[0].measuredAt == at(1_739_360_902) && w.status.isEmpty)
        let t = try decode(try fixture("qube-temperature.json"), .qube)
        #expect(t.outcomes == ["ok"] && t.accepted[0].type == .bodyTemperature && t.accepted[0].canonicalValue == 36.88)
        #expect(t.accepted[0].unit == "Cel")
    }

    @Test("Qube-Vital Oximeter_JUMPER: spo2 and pulse are readings, pi is device status only")
    func qubeOximeter() throws {
        let m = try decode(try fixture("qube-oximeter.json"), .qube)
        #expect(m.accepted.map(\.type) == [.spo2, .heartRate] && m.accepted.map(\.canonicalValue) == [97, 70])
        #expect(m.status == [DeviceStatusValue(deviceID: "AA:BB:CC:DD:EE:07", name: .perfusionIndex, value: 70, observedAt: at(1_739_361_102))])
    }

    @Test("Qube-Vital HB_Msg is a heartbeat: no reading, no status, no rejection, even with device_field data.ble_mac")
    func qubeHeartbeat() throws {
        for format in [MessageFormat.qube, .auto] {
            let m = try decode(try fixture("qube-heartbeat.json"), format, deviceField: "data.ble_mac")
            #expect(m.isHeartbeat && m.readings.isEmpty && m.status.isEmpty && m.events.isEmpty && m.format == "qube")
        }
    }

    @Test("Qube-Vital personal data (citiz, names, brith, gender) appears in no reading, status, event or rejection")
    func qubePersonalData() throws {
        let pii = #""citiz":"0000000000001","nameEN":"Mr.#Test##Patient","nameTH":"Test Patient","brith":"25000101","gender":"1""#
        let payloads = [
            try String(decoding: fixture("qube-bp.json"), as: UTF8.self).replacingOccurrences(of: #""citiz":"0000000000000""#, with: #""citiz":"0000000000001""#),
            #"{"time":1739360702,"type":"reportAttribute",\#(pii),"data":{"attribute":"WBP_JUMPER","ble_mac":"AA:BB:CC:DD:EE:03","value":{"bp_high":"Err","bp_low":78}}}"#,
            #"{"time":1739360702,"type":"reportAttribute",\#(pii),"data":{"attribute":"ECG_JUMPER","ble_mac":"AA:BB:CC:DD:EE:03","value":{"hr":70}}}"#,
            #"{"time":"x","type":"reportAttribute",\#(pii),"data":{"attribute":"CONTOUR","ble_mac":"AA:BB:CC:DD:EE:03","value":{"blood_glucose":97}}}"#,
        ]
        var outcomes: [[String]] = []
        for json in payloads {
            let m = try decode(json, .qube)
            outcomes.append(m.outcomes)
            let text = String(describing: m)
            for field in ["0000000000001", "Test", "Patient", "25000101"] { #expect(!text.contains(field)) }
        }
        #expect(outcomes == [["ok", "ok", "ok"], ["device_error", "ok"], ["unknown_type"], ["bad_timestamp"]])
        do {
            _ = try decode(#"{"time":1739360702,"type":"reportAttribute",\#(pii),"data":{"attribute":"CONTOUR","value":{"blood_glucose":97}}}"#, .qube)
            Issue.record("accepted without a device")
        } catch {
            #expect(error.reason == .missingField && !error.detail.contains("Test"))
        }
    }

    @Test("Qube-Vital: time in milliseconds is read right; topic and ble_mac must agree; unknown type refused")
    func qubeRules() throws {
        let ms = #"{"time":1739360702000,"type":"reportAttribute","data":{"attribute":"CONTOUR","ble_mac":"AA:BB:CC:DD:EE:04","value":{"blood_glucose":"97"}}}"#
        #expect(try decode(ms, .qube).accepted[0].measuredAt == at(1_739_360_702))
        #expect(throws: Rejection(.deviceMismatch, "the device in the payload differs from the device in the topic")) {
            try decode(ms, .qube, topicDevice: "AA:BB:CC:DD:EE:99")
        }
        #expect(try decode(ms, .qube, topicDevice: "AA:BB:CC:DD:EE:04").outcomes == ["ok"])
        #expect(throws: Rejection(.unknownType, "Qube-Vital type is neither HB_Msg nor reportAttribute")) {
            try decode(#"{"type":"setAttribute","data":{}}"#, .qube, topicDevice: "gw")
        }
    }

    @Test("Smart Meter BP: date_recorded local, time_zone_offset −5.0 hours → 13:15Z, reading_id, battery as status (§1.2 example)")
    func smartMeterBloodPressure() throws {
        let m = try decode(try fixture("smartmeter-bp.json"), .smartmeter)
        #expect(m.deviceID == "860000000000001")
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate] && o.map(\.canonicalValue) == [131, 84, 72])
        // 2023-05-01T08:15:00 at UTC−5 = 2023-05-01T13:15:00Z = 1682946900.
        #expect(o.allSatisfy {
            $0.measuredAt == at(1_682_946_900) && $0.localOffsetMinutes == -300 && $0.timeSource == .device && $0.flags.isEmpty
                && $0.vendorReadingID == "900001"
        })
        #expect(m.status == [DeviceStatusValue(deviceID: "860000000000001", name: .batteryPercent, value: 80, observedAt: at(1_682_946_900))])
    }

    @Test("Smart Meter glucose: both units sent, the mg/dL one stored (6.0 mmol/L × 18.018 = 108.1 ≈ 108 mg/dL)")
    func smartMeterGlucose() throws {
        let o = try #require(try decode(try fixture("smartmeter-glucose.json"), .smartmeter).accepted.first)
        #expect(o.type == .glucose && o.value == 108 && o.unit == "mg/dL" && o.canonicalValue == 108)
        #expect(o.measuredAt == at(1_682_944_200) && o.vendorReadingID == "900002")
        let mmolOnly = try decode(#"{"readings":[{"reading_id":1,"device_id":"860000000000002","reading_type":"blood_glucose","date_recorded":"2023-05-01T07:30:00","time_zone_offset":-5,"blood_glucose_mmol":6.0}]}"#, .smartmeter)
        #expect(mmolOnly.accepted.map(\.unit) == ["mmol/L"] && close(mmolOnly.accepted[0].canonicalValue, 108.108))
    }

    @Test("Smart Meter glucose units that disagree (180 mg/dL vs 6.0 mmol/L = 108) are bad_unit; the agreeing reading is kept")
    func smartMeterUnitsDisagree() throws {
        let m = try decode(try fixture("smartmeter-units-disagree.json"), .smartmeter)
        #expect(m.outcomes == ["bad_unit", "ok"])
        // 12:10 at UTC−5 = 17:10Z = 1682961000.
        #expect(m.accepted[0].canonicalValue == 99 && m.accepted[0].measuredAt == at(1_682_961_000))
    }

    @Test("Smart Meter weight as a float (81.6 kg; 179.9 lb agrees), offset 0.0")
    func smartMeterWeight() throws {
        let m = try decode(try fixture("smartmeter-weight-float.json"), .smartmeter)
        #expect(m.outcomes == ["ok"] && m.accepted[0].canonicalValue == 81.6 && m.accepted[0].unit == "kg")
        #expect(m.accepted[0].measuredAt == at(1_682_977_200) && m.accepted[0].localOffsetMinutes == 0)
        let lbsOnly = try decode(#"{"readings":[{"device_id":"860000000000003","reading_type":"weight","date_recorded":"2023-05-01T21:40:00","time_zone_offset":0,"weight_lbs":179.9}]}"#, .smartmeter)
        #expect(close(lbsOnly.accepted[0].canonicalValue, 81.601_267))
    }

    @Test("Smart Meter pulse_ox with a half-hour offset (5.5 h: 08:15 local = 02:45Z); irregular flags BP and pulse")
    func smartMeterPulseOxAndIrregular() throws {
        let p = try decode(try fixture("smartmeter-pulse-ox.json"), .smartmeter)
        #expect(p.accepted.map(\.type) == [.spo2, .heartRate] && p.accepted.map(\.canonicalValue) == [97, 68])
        #expect(p.accepted.allSatisfy { $0.measuredAt == at(1_682_909_100) && $0.localOffsetMinutes == 330 })
        let i = try decode(try fixture("smartmeter-irregular.json"), .smartmeter)
        #expect(i.accepted.count == 3 && i.accepted.allSatisfy { $0.flags == .irregularHeartbeat && $0.measuredAt == at(1_682_924_700) })
    }

    @Test("Smart Meter without time_zone_offset: a naive local time in the configured zone; none configured: bad_timestamp")
    func smartMeterNaive() throws {
        let json = #"{"readings":[{"device_id":"860000000000001","reading_type":"pulse_ox","date_recorded":"2023-05-01T08:15:00","spo2":96}]}"#
        // 08:15 in Chicago (CDT, UTC−5) = 13:15Z.
        let m = try decode(json, .smartmeter, zone: TimeZone(identifier: "America/Chicago"))
        #expect(m.accepted[0].measuredAt == at(1_682_946_900) && m.accepted[0].flags == .localTimeAssumed)
        #expect(try decode(json, .smartmeter).outcomes == ["bad_timestamp"])
        let other = try decode(#"{"readings":[{"device_id":"a-1","reading_type":"pulse_ox","date_recorded":"2023-05-01T08:15:00","time_zone_offset":0,"spo2":96},{"device_id":"a-2","reading_type":"steps","date_recorded":"2023-05-01T08:15:00"}]}"#, .smartmeter)
        #expect(other.outcomes == ["ok", "device_mismatch"])
    }

    @Test("LibreLinkUp item: FactoryTimestamp is UTC (9:23:45 PM = 21:23:45Z), Timestamp gives the offset (+120 min) (§1.8)")
    func libreItem() throws {
        let m = try decode(try fixture("librelinkup-item.json"), .librelinkup, topicDevice: "libre-1")
        let o = try #require(m.accepted.first)
        #expect(m.outcomes == ["ok"] && o.type == .glucose && o.value == 112 && o.unit == "mg/dL")
        #expect(o.measuredAt == at(1_789_766_625) && o.localOffsetMinutes == 120 && o.timeSource == .device && o.flags.isEmpty)
    }

    @Test("LibreLinkUp graph response: graphData and the connection's glucoseMeasurement; ValueInMgPerDl though GlucoseUnits is 0")
    func libreGraph() throws {
        let m = try decode(try fixture("librelinkup-graph.json"), .librelinkup, topicDevice: "libre-1")
        #expect(m.accepted.map(\.canonicalValue) == [95, 98, 101] && m.accepted.allSatisfy { $0.unit == "mg/dL" })
        // 12:00, 12:15 and 12:30 PM UTC on 2026-09-18; local 7:00 AM etc.: UTC−5.
        #expect(m.accepted.map(\.measuredAt) == [at(1_789_732_800), at(1_789_733_700), at(1_789_734_600)])
        #expect(m.accepted.allSatisfy { $0.localOffsetMinutes == -300 })
    }

    @Test("LibreLinkUp logbook response: data is an array of glucose items (scans and alarms), each a reading")
    func libreLogbook() throws {
        let m = try decode(try fixture("librelinkup-logbook.json"), .librelinkup, topicDevice: "libre-1")
        #expect(m.outcomes == ["ok", "ok", "ok"])
        // ValueInMgPerDl as received, also when GlucoseUnits is 0 (11.7 mmol/L on the app).
        #expect(m.accepted.map(\.canonicalValue) == [142, 64, 210] && m.accepted.allSatisfy { $0.unit == "mg/dL" })
        // 1:10 PM and 6:45 PM UTC on 2026-09-18, 2:05 AM UTC on the 19th; local times 5 h earlier.
        #expect(m.accepted.map(\.measuredAt) == [at(1_789_737_000), at(1_789_757_100), at(1_789_783_500)])
        #expect(m.accepted.allSatisfy { $0.localOffsetMinutes == -300 })
    }

    @Test("LibreLinkUp FactoryTimestamp \"bad\" is bad_timestamp; 12:05 AM is 00:05; the other item is kept")
    func libreBadTimestamp() throws {
        let m = try decode(try fixture("librelinkup-bad-timestamp.json"), .librelinkup, topicDevice: "libre-1")
        #expect(m.outcomes == ["bad_timestamp", "ok"])
        #expect(m.accepted[0].measuredAt == at(1_789_689_900) && m.accepted[0].localOffsetMinutes == -300)
        for text in ["9/18/2026 21:23:45", "13/1/2026 1:00:00 AM", "2/30/2026 1:00:00 AM", "9/18/2026 9:23:45 pm", "9/18/2026 9:23 PM",
                     "9/18/26 9:23:45 PM", "9/18/2026 0:23:45 AM", "9/18/2026  9:23:45 PM", "9/18/2026 9:23:45 PM ", "2026-09-18T21:23:45Z"] {
            let item = #"{"FactoryTimestamp":"\#(text)","ValueInMgPerDl":100}"#
            #expect(try decode(item, .librelinkup, topicDevice: "libre-1").outcomes == ["bad_timestamp"], "\(text)")
        }
        let noon = try decode(#"{"FactoryTimestamp":"9/18/2026 12:00:00 PM","ValueInMgPerDl":100}"#, .librelinkup, topicDevice: "libre-1")
        #expect(noon.accepted[0].measuredAt == at(1_789_732_800) && noon.accepted[0].localOffsetMinutes == nil)
    }

    @Test("LibreLinkUp GlucoseUnits 0 = mmol/L (5.6 × 18.018 = 100.9008 mg/dL); another code is bad_unit")
    func libreUnits() throws {
        let m = try decode(try fixture("librelinkup-mmol.json"), .librelinkup, topicDevice: "libre-1")
        #expect(m.accepted[0].unit == "mmol/L" && m.accepted[0].value == 5.6 && close(m.accepted[0].canonicalValue, 100.9008))
        #expect(m.accepted[0].localOffsetMinutes == 120)
        let bad = try decode(#"{"FactoryTimestamp":"9/18/2026 12:00:00 PM","GlucoseUnits":2,"Value":5.6}"#, .librelinkup, topicDevice: "libre-1")
        #expect(bad.outcomes == ["bad_unit"])
    }

    @Test("LibreLinkUp isHigh is the follower's alarm limit, not a meter marker: 262 mg/dL is stored, no device event")
    func libreHigh() throws {
        let m = try decode(try fixture("librelinkup-high.json"), .librelinkup, topicDevice: "libre-1")
        #expect(m.outcomes == ["ok"] && m.accepted[0].canonicalValue == 262 && m.events.isEmpty)
    }

    @Test("LibreLinkUp: an error status or a region redirect has no readings; the device must come from the topic")
    func libreShapes() throws {
        #expect(throws: Rejection(.unknownFormat, "LibreLinkUp status is not 0: the response carries an error, not readings")) {
            try decode(#"{"status":2,"error":{"message":"notAuthenticated"}}"#, .librelinkup, topicDevice: "libre-1")
        }
        #expect(throws: Rejection(.unknownFormat, "LibreLinkUp region redirect: no readings")) {
            try decode(#"{"status":0,"data":{"redirect":true,"region":"eu2"}}"#, .librelinkup, topicDevice: "libre-1")
        }
        #expect(throws: Rejection(.missingField, "neither the topic nor the payload names the device")) {
            try decode(try fixture("librelinkup-item.json"), .librelinkup)
        }
        #expect(throws: Rejection.self) { try SubscriptionRoute(topic: "libre/graph", format: .librelinkup) }
        _ = try SubscriptionRoute(topic: "libre/graph", format: .librelinkup, deviceField: "data.connection.patientId")
    }

    @Test("Impilo BP: readingTimestamp UTC, deviceTimeZoneOffset −21600 s = −360 min, documented units (§1.9)")
    func impiloBloodPressure() throws {
        let m = try decode(try fixture("impilo-bp.json"), .impilo)
        #expect(m.deviceID == "00000000-0000-4000-8000-000000000101")
        let o = m.accepted
        #expect(o.map(\.type) == [.systolicBP, .diastolicBP, .heartRate] && o.map(\.canonicalValue) == [128, 82, 70])
        // 2026-11-20T14:05:00Z = 1795183500.
        #expect(o.allSatisfy { $0.measuredAt == at(1_795_183_500) && $0.localOffsetMinutes == -360 && $0.source == .device && $0.flags.isEmpty })
    }

    @Test("Impilo glucose: glucoseUnit mgdl, device from deviceIdentifier, offset 19800 s = +330 min; another unit is bad_unit")
    func impiloGlucose() throws {
        let m = try decode(try fixture("impilo-glucose.json"), .impilo)
        #expect(m.deviceID == "860000000000011" && m.outcomes == ["ok"])
        #expect(m.accepted[0].type == .glucose && m.accepted[0].canonicalValue == 104 && m.accepted[0].unit == "mg/dL")
        #expect(m.accepted[0].measuredAt == at(1_795_189_200) && m.accepted[0].localOffsetMinutes == 330)
        let mmol = try decode(#"{"readingTimestamp":"2026-11-20T15:40:00Z","glucose":5.8,"glucoseUnit":"mmol","deviceId":"d-1"}"#, .impilo)
        #expect(mmol.outcomes == ["bad_unit"])
    }

    @Test("Impilo manual: true is a manual reading (source manual, manual_entry), never a day of data")
    func impiloManual() throws {
        let m = try decode(try fixture("impilo-manual.json"), .impilo)
        #expect(m.accepted.count == 3 && m.accepted.allSatisfy { $0.source == .manual && $0.flags == .manualEntry })
        #expect(m.accepted.allSatisfy { $0.measuredAt == at(1_795_223_400) })
    }

    @Test("Impilo heart rate with only patientId: the device comes from the topic; without one, missing_field")
    func impiloHeartRate() throws {
        let m = try decode(try fixture("impilo-heart-rate.json"), .impilo, topicDevice: "hr-1")
        #expect(m.deviceID == "hr-1" && m.accepted.map(\.type) == [.heartRate] && m.accepted[0].canonicalValue == 64)
        #expect(m.accepted[0].measuredAt == at(1_795_176_000) && m.accepted[0].localOffsetMinutes == nil)
        #expect(throws: Rejection(.missingField, "neither the topic nor the payload names the device")) {
            try decode(try fixture("impilo-heart-rate.json"), .impilo)
        }
        let array = try decode(#"[{"readingTimestamp":"2026-11-20T12:00:00","heartRate":64,"deviceId":"d-1"},{"readingTimestamp":"2026-11-20T12:00:00Z","steps":10,"deviceId":"d-1"},{"readingTimestamp":"2026-11-20T12:00:00Z","heartRate":64,"deviceId":"d-2"}]"#, .impilo)
        #expect(array.outcomes == ["ok", "unknown_type", "device_mismatch"] && array.accepted[0].measuredAt == at(1_795_176_000))
    }
}
