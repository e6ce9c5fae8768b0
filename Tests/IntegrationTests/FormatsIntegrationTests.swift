import Foundation
import GRDB
import MQTTClient
import Testing
import VitalsDaemon
import VitalsDomain
import VitalsStore

/// One message of each format and one of each ingestion bad input of `failure-modes.md` (F9–F12,
/// F20–F22), through a real mosquitto into a real SQLite file.
@Suite("device formats against a real broker", .serialized)
struct FormatsIntegrationTests {
    static let subscriptions = """
          subscriptions:
            - {topic: "gw/+/senml", format: senml}
            - {topic: "fhir/in", format: fhir}
            - {topic: "vendors/tenovi", format: tenovi}
            - {topic: "vendors/bodytrace", format: bodytrace}
            - {topic: "vendors/withings", format: withings}
            - {topic: "vendors/dexcom", format: dexcom}
            - {topic: "vendors/telli/+", format: telli}
            - {topic: "vendors/ihealth/+", format: ihealth}
            - {topic: "auto/+", format: auto}
            - {topic: "CM4_BLE_GW_TX", format: qube}
            - {topic: "vendors/smartmeter", format: smartmeter}
            - {topic: "vendors/libre/+", format: librelinkup}
            - {topic: "vendors/impilo", format: impilo}
        """

    static func fixture(_ name: String) throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("VitalsFormatsTests/Fixtures/\(name)")
        return Array(try Data(contentsOf: url))
    }

    @Test("a mixed stream ends with exactly the expected readings, dead letters, device status and events")
    func mixedStream() async throws {
        let env = try await TestEnvironment(mqttExtra: Self.subscriptions)
        let db = env.database
        for (id, kind) in [("860000000000001", DeviceKind.bpCuff), ("phd-711000FEFF5F49B0.B0495F001071", .bpCuff),
                           ("00000000-0000-4000-8000-000000000001", .bpCuff), ("8600000000000", .scale),
                           ("0000000000000000000000000000000000000001", .bpCuff), ("FAKE01", .cgm),
                           ("860000000000002", .scale), ("ih-1", .bpCuff), ("bpcuff-7", .other),
                           ("AA:BB:CC:DD:EE:03", .bpCuff), ("libre-1", .cgm), ("00000000-0000-4000-8000-000000000101", .bpCuff)] {
            try db.upsertDevice(Device(id: id, kind: kind, patientID: "p1"), actor: "test")
        }
        let daemon = try env.startDaemon()
        try await daemon.waitUntilSubscribed()
        let pub = try await env.publisher()
        defer { pub.close() }
        let base = msAgo(7200)

        // One message of each format: 234 readings in all.
        var batch: [String] = []
        for i in 0..<200 {
            let value = i == 50 ? #""HI""# : i == 150 ? #""ten""# : "\(100 + i % 50)"
            batch.append(#"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":\#(msAgo(86_400) + Int64(i) * 300_000)}"#)
        }
        let good: [(String, [UInt8])] = [
            ("devices/g1/readings", glucoseJSON(100, at: base)),                                  // 1
            ("gw/860000000000001/senml", try Self.fixture("senml-strict.json")),                 // 3 + battery
            ("fhir/in", try Self.fixture("fhir-phd-compound-bp.json")),                          // 2
            ("vendors/tenovi", try Self.fixture("tenovi-array.json")),                           // 3 + battery
            ("vendors/bodytrace", try Self.fixture("bodytrace.json")),                           // 1 + mV + dBm
            ("vendors/withings", try Self.fixture("withings-getmeas.json")),                     // 4, fat ratio unknown_type
            ("vendors/dexcom", try Self.fixture("dexcom-egv.json")),                             // 2, one HI
            ("vendors/telli/860000000000002", try Self.fixture("telli-weight.json")),            // 1
            ("vendors/ihealth/ih-1", try Self.fixture("ihealth-bp.json")),                       // 3
            ("auto/bpcuff-7", try Self.fixture("senml-real-world.json")),                        // 6
            ("CM4_BLE_GW_TX", try Self.fixture("qube-heartbeat.json")),                          // nothing, no dead letter
            ("CM4_BLE_GW_TX", try Self.fixture("qube-bp.json")),                                 // 3
            ("CM4_BLE_GW_TX", try Self.fixture("qube-heartbeat.json")),                          // nothing
            ("vendors/smartmeter", try Self.fixture("smartmeter-units-disagree.json")),          // 1, bad_unit + battery
            ("vendors/libre/libre-1", try Self.fixture("librelinkup-graph.json")),               // 3
            ("vendors/impilo", try Self.fixture("impilo-manual.json")),                          // 3 manual
            ("devices/g2/readings", Array(#"{"readings":[\#(batch.joined(separator: ","))]}"#.utf8)),  // 198; HI out_of_meter_range, "ten" not_a_number
        ]
        let tenovi = #""hwi_device_id":"00000000-0000-4000-8000-000000000001","timestamp":"2024-09-12T10:00:00Z""#
        let bad: [(String, [UInt8])] = [
            // F9: epoch seconds where the canonical format has milliseconds: 1970.
            ("devices/g1/readings", Array(#"{"type":"glucose","value":90,"unit":"mg/dL","measured_at":1648731311}"#.utf8)),
            // F10: not UTF-8; truncated JSON.
            ("devices/g1/readings", [0xFF, 0xFE, 0x7B, 0x22]),
            ("devices/g1/readings", Array(#"{"sys":12"#.utf8)),
            // F11: a renamed field.
            ("devices/g1/readings", Array(#"{"Type":"glucose","value":"145","unit":"mg/dL","measured_at":\#(base)}"#.utf8)),
            // F12: over the size limit.
            ("devices/g1/readings", Array(repeating: UInt8(ascii: " "), count: 300_000)),
            // F20: 110 "mmol/L"; no unit.
            ("devices/g1/readings", Array(#"{"type":"glucose","value":110,"unit":"mmol/L","measured_at":\#(base + 1000)}"#.utf8)),
            ("devices/g1/readings", Array(#"{"type":"glucose","value":110,"measured_at":\#(base + 2000)}"#.utf8)),
            // F21: SFLOAT NaN for both pressures; a glucometer's HI.
            ("vendors/tenovi", Array(#"{"metric":"blood_pressure","value_1":2047,"value_2":2047,\#(tenovi)}"#.utf8)),
            ("vendors/tenovi", Array(#"{"metric":"glucose","value_1":"HI",\#(tenovi)}"#.utf8)),
            // F22: an unset clock (0 ms; 2000-01-01).
            ("vendors/bodytrace", Array(#"{"deviceId":8600000000000,"ts":0,"values":{"unit":1,"weight":70100,"tare":0}}"#.utf8)),
            ("vendors/telli/860000000000002", Array(#"{"data":{"unit":"kg","weight":70},"deviceId":"860000000000002","readingType":"Weight","time":"946684800000"}"#.utf8)),
            // The topic names one device, the payload another.
            ("gw/cuff-99/senml", try Self.fixture("senml-strict.json")),
        ]
        for (topic, payload) in good + bad { try pub.publish(topic: topic, payload: payload) }
        try await pub.waitUntilDelivered()
        #expect(try await eventually { try env.statistics().readings == 234 && env.statistics().deadLetters == 18 })
        let s = try env.statistics()
        #expect(s.readings == 234)
        #expect(s.deadLettersByReason == [
            "unknown_type": 1, "out_of_meter_range": 3, "not_a_number": 1, "bad_timestamp": 3, "invalid_utf8": 1,
            "malformed_json": 1, "missing_field": 1, "too_large": 1, "implausible_value": 1, "bad_unit": 2,
            "device_error": 2, "device_mismatch": 1,
        ])
        let rows = try await db.writer.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM device_events")!,
             try Row.fetchAll(db, sql: "SELECT device_id, name, value FROM device_status ORDER BY device_id, name").map {
                 "\($0["device_id"] as String) \($0["name"] as String) \($0["value"] as Double)"
             },
             try Int.fetchOne(db, sql: "SELECT count(*) FROM readings WHERE flags = 'irregular_heartbeat'")!,
             try String.fetchAll(db, sql: "SELECT DISTINCT format FROM readings ORDER BY format"))
        }
        #expect(rows.0 == 5)
        #expect(rows.1 == [
            "00000000-0000-4000-8000-000000000001 battery_percent 87.0",
            "8600000000000 battery_mv 5522.0",
            "8600000000000 signal_dbm -91.0",
            "860000000000001 battery_percent 80.0",
            "860000000000002 battery_percent 74.0",
        ])
        #expect(rows.2 == 3)
        #expect(rows.3 == ["bodytrace", "canonical", "dexcom", "fhir", "ihealth", "impilo", "librelinkup", "qube", "senml", "smartmeter",
                           "telli", "tenovi", "withings"])
        let manual = try await db.writer.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM readings WHERE source = 'manual'")! }
        #expect(manual == 3)

        #expect(try db.deviceStatus(deviceID: "8600000000000").map(\.name) == ["battery_mv", "signal_dbm"])
        #expect(Set(try db.deviceEvents().map(\.kind)) == ["device_error", "above_range"])

        // The daemon keeps running: a later reading is stored.
        try pub.publish(topic: "devices/g1/readings", payload: glucoseJSON(101, at: base + 60_000))
        #expect(try await eventually { try env.statistics().readings == 235 })
        #expect(daemon.service.connectionStatus.subscribed)
        try await daemon.stop()
    }
}
