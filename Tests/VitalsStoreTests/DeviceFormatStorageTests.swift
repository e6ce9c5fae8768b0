import Foundation
import GRDB
import Testing
import VitalsDomain
import VitalsFormats
import VitalsStore

@Suite("device formats in storage")
struct DeviceFormatStorageTests {
    func telli(_ json: String) -> IncomingMessage {
        IncomingMessage(topic: "telli/c1", deviceID: "c1", payload: Array(json.utf8), receivedAt: Date(), format: .telli)
    }

    @Test("flags, time source, offset and format are stored with the reading")
    func flags() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ms = Int64(Date().timeIntervalSince1970 - 3600) * 1000
        let s = try await db.ingest([telli(#"{"data":{"arrhythmia":1,"diastolic":98,"pulse":62,"systolic":122},"deviceId":"c1","readingType":"BloodPressure","time":"\#(ms)","mem":"1","tzOffsetMinutes":"-300"}"#)], pipeline: pipeline)
        #expect(s.readingsStored == 3)
        let rows = try await db.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT flags, time_source, local_offset_minutes, format FROM readings ORDER BY id").map {
                "\($0["flags"] as String? ?? "-") \($0["time_source"] as String) \($0["local_offset_minutes"] as Int? ?? 0) \($0["format"] as String? ?? "-")"
            }
        }
        #expect(rows == Array(repeating: "irregular_heartbeat,from_device_memory device -300 telli", count: 3))
    }

    @Test("Tenovi's separate irregular_heartbeat flags the BP and pulse of its time, arriving before or after them")
    func separateMarker() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        func tenovi(_ metric: String, _ v1: String, _ v2: String, _ time: String) -> IncomingMessage {
            IncomingMessage(topic: "tenovi/c1", deviceID: "c1", payload: Array(
                #"{"metric":"\#(metric)","hwi_device_id":"c1","value_1":\#(v1),"value_2":\#(v2),"timestamp":"\#(time)"}"#.utf8),
                receivedAt: Date(), format: .tenovi)
        }
        // Marker after the readings of 10:00; before the readings of 11:00; none at 12:00.
        _ = try await db.ingest([tenovi("blood_pressure", "150", "95", "2026-01-05T10:00:00Z"), tenovi("pulse", "80", "null", "2026-01-05T10:00:00Z")], pipeline: pipeline)
        _ = try await db.ingest([tenovi("irregular_heartbeat", "1", "null", "2026-01-05T10:00:00Z")], pipeline: pipeline)
        _ = try await db.ingest([tenovi("irregular_heartbeat", "1", "null", "2026-01-05T11:00:00Z")], pipeline: pipeline)
        _ = try await db.ingest([tenovi("blood_pressure", "140", "90", "2026-01-05T11:00:00Z"), tenovi("blood_pressure", "130", "85", "2026-01-05T12:00:00Z")], pipeline: pipeline)
        let rows = try await db.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT type, measured_at, flags FROM readings ORDER BY measured_at, type").map {
                "\($0["type"] as String) \(($0["measured_at"] as Int64) / 1000) \($0["flags"] as String? ?? "-")"
            }
        }
        #expect(rows == [
            "diastolic_bp 1767607200 irregular_heartbeat", "heart_rate 1767607200 irregular_heartbeat", "systolic_bp 1767607200 irregular_heartbeat",
            "diastolic_bp 1767610800 irregular_heartbeat", "systolic_bp 1767610800 irregular_heartbeat",
            "diastolic_bp 1767614400 -", "systolic_bp 1767614400 -",
        ])
        #expect(try db.statistics().deadLetters == 0)
    }

    @Test("device status keeps the latest value per device; an older report does not replace it; never a reading")
    func status() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let now = Int64(Date().timeIntervalSince1970) * 1000
        func heartbeat(_ ms: Int64, _ batt: String) -> IncomingMessage {
            telli(#"{"type":"Heartbeat","deviceId":"c1","time":"\#(ms)","devdata":{"batt":"\#(batt)","r":"2"}}"#)
        }
        _ = try await db.ingest([heartbeat(now - 60_000, "8")], pipeline: pipeline)
        _ = try await db.ingest([heartbeat(now - 600_000, "3")], pipeline: pipeline)  // older, arrives later
        let battery = try await db.writer.read { db in
            try Double.fetchOne(db, sql: "SELECT value FROM device_status WHERE device_id = 'c1' AND name = 'battery_percent'")
        }
        #expect(battery == 80)
        #expect(try db.statistics().readings == 0)
        #expect(try db.statistics().deadLetters == 0)
    }

    @Test("a sentinel is a device event and a dead letter, recorded once when the message is redelivered")
    func events() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let ms = Int64(Date().timeIntervalSince1970 - 3600) * 1000
        let m = telli(#"{"data":{"diastolic":2047,"pulse":2047,"systolic":2047},"deviceId":"c1","readingType":"BloodPressure","time":"\#(ms)"}"#)
        let first = try await db.ingest([m], pipeline: pipeline)
        #expect(first.deadLetters == [.deviceError: 3] && first.deviceEvents == 3)
        let again = try await db.ingest([m], pipeline: pipeline)
        #expect(again.deviceEvents == 0 && again.deadLetterCount == 0)
        let kinds = try await db.writer.read { db in try String.fetchAll(db, sql: "SELECT type FROM device_events ORDER BY type") }
        #expect(kinds == ["diastolic_bp", "heart_rate", "systolic_bp"])
        #expect(try db.statistics().readings == 0)
    }
}

@Suite("gateway heartbeats and personal data in storage")
struct GatewayStorageTests {
    func qube(_ json: String) -> IncomingMessage {
        IncomingMessage(topic: "CM4_BLE_GW_TX", deviceID: nil, payload: Array(json.utf8), receivedAt: Date(), format: .auto,
                        deviceField: "data.ble_mac", matchedSubscription: true)
    }

    @Test("Qube-Vital heartbeats are acknowledged without any row; readings keep no personal data (§1.11)")
    func heartbeatsAndPersonalData() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let heartbeat = #"{"from":"PI_GW","to":"CLOUD","time":1714788661,"mac":"aa:bb:cc:dd:ee:01","IMEI":"860000000000009","type":"HB_Msg","data":{"msg":"Online"}}"#
        let s = try await db.ingest(Array(repeating: qube(heartbeat), count: 5), pipeline: pipeline)
        #expect(s.heartbeats == 5 && s.deadLetterCount == 0 && s.readingsStored == 0 && s.deviceStatusUpdated == 0)
        let pii = #""citiz":"0000000000001","nameEN":"Mr.#Test##Patient","nameTH":"Test Patient","brith":"25000101","gender":"1""#
        let bp = #"{"time":1739360702,"type":"reportAttribute",\#(pii),"data":{"attribute":"WBP_JUMPER","ble_mac":"c1","value":{"bp_high":120,"bp_low":"HI","pr":71}}}"#
        let r = try await db.ingest([qube(bp)], pipeline: pipeline)
        #expect(r.readingsStored == 2 && r.deadLetterCount == 1)
        let text = try await db.writer.read { db in
            try String.fetchAll(db, sql: """
                SELECT device_id || unit || IFNULL(vendor_reading_id, '') || IFNULL(flags, '') FROM readings
                UNION ALL SELECT IFNULL(device_id, '') || reason || detail FROM dead_letters
                UNION ALL SELECT device_id || kind || code FROM device_events
                """).joined(separator: " ")
        }
        for field in ["0000000000001", "Test", "Patient", "25000101"] { #expect(!text.contains(field)) }
    }
}
