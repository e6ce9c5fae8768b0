import Foundation
import PostgresNIO
import PostgresTestSupport
import Testing
import VitalsDomain
import VitalsPostgres

@Suite("Messages into PostgreSQL: readings, duplicates and dead letters as the SQLite ingest sorts them")
struct PostgresMessageIngestTests {
    /// 2026-12-01T12:00:00Z.
    static let now = Date(timeIntervalSince1970: 1_796_126_400)
    /// 2026-12-01T10:00:00Z, when d1 was handed to its patient.
    static let boundFrom: Int64 = 1_796_119_200_000

    static func message(_ device: String, _ json: String) -> ReceivedMessage {
        let payload = Array(json.utf8)
        let decoded = Result { () throws(Rejection) -> DecodedMessage in
            try CanonicalMessageDecoder().decode(payload: payload, deviceID: device, receivedAt: now)
        }
        return ReceivedMessage(topic: "devices/\(device)/readings", deviceID: device, payload: payload, receivedAt: now, decoded: decoded)
    }

    /// The test devices, d1 bound to its patient since `from` (epoch ms; nil: before any reading), and a lease.
    static func bindD1(_ client: PostgresClient, from: Int64? = nil) async throws -> Lease {
        try await enrollTestDevices(client)
        try await client.query("""
            INSERT INTO device_bindings (device_id, patient_id, bound_from, created_at, created_by) VALUES ('d1', 'p-d1', \(from), 0, 'ops')
            """, logger: testLogger)
        return try #require(try await SessionLeases(client: client, logger: testLogger).acquire(session: "s", node: "n", ttl: .seconds(60)))
    }

    @Test("duplicate, conflicting duplicate, unknown device, malformed, before binding, and the cap of 100 rejected readings; a redelivery adds nothing")
    func sortsLikeSQLite() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let lease = try await Self.bindD1(client, from: Self.boundFrom)
            let elevenUTC = #""measured_at":"2026-12-01T11:00:00Z""#
            let unknownTypes = (0..<103).map { _ in #"{"type":"not_a_vital","value":1,"unit":"mg/dL"}"# }.joined(separator: ",")
            let batch = [
                Self.message("d1", #"{"type":"glucose","value":110,"unit":"mg/dL",\#(elevenUTC)}"#),
                Self.message("d1", #"{"type":"glucose","value":110,"unit":"mg/dL",\#(elevenUTC)}"#),
                Self.message("d1", #"{"type":"glucose","value":140,"unit":"mg/dL",\#(elevenUTC)}"#),
                Self.message("zz-unknown", #"{"type":"glucose","value":110,"unit":"mg/dL",\#(elevenUTC)}"#),
                Self.message("d1", "{not json"),
                Self.message("d1", #"{"type":"glucose","value":95,"unit":"mg/dL","measured_at":"2026-12-01T09:00:00Z"}"#),
                Self.message("d1", #"{\#(elevenUTC),"readings":[\#(unknownTypes)]}"#),
            ]
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let first = try await ingest.store(messages: batch, lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(first.messages == 7)
            #expect(first.readingsStored == 1)
            #expect(first.duplicates == 1)
            #expect(first.deadLetters == [
                "conflicting_duplicate": 1, "unknown_device": 1, "malformed_json": 1, "before_binding": 1,
                // 100 rows of their own, and one that counts the other 3.
                "unknown_type": 101,
            ])

            let rows = try await client.query("""
                SELECT reason, device_id, reading_index, detail FROM dead_letters
                WHERE reason IN ('conflicting_duplicate', 'before_binding') OR reading_index IS NULL ORDER BY reason
                """, logger: testLogger).decode((String, String?, Int?, String).self)
            var letters: [(String, String?, Int?, String)] = []
            for try await row in rows { letters.append(row) }
            #expect(letters.map(\.0) == ["before_binding", "conflicting_duplicate", "malformed_json", "unknown_device", "unknown_type"])
            #expect(letters[0].1 == "d1" && letters[0].2 == 0)
            #expect(letters[0].3 == "measured at 2026-12-01T09:00:00Z, before the device's first binding to a patient (or an old reading from its memory)")
            #expect(letters[1].3 == "a glucose reading with this device and measured_at is stored with another value")
            #expect(letters[2].1 == "d1" && letters[2].2 == nil)
            #expect(letters[3].1 == "zz-unknown")
            #expect(letters[4].3 == "3 further readings of this message rejected: unknown_type x3")
            // The stored reading is the first copy, bound to d1's patient.
            #expect(try await rowCount(client, "readings WHERE device_id = 'd1' AND patient_id = 'p-d1' AND value = 110") == 1)

            // The broker delivers the whole batch again: nothing new, the two copies are duplicates.
            let again = try await ingest.store(messages: batch, lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(again.readingsStored == 0)
            #expect(again.duplicates == 2)
            #expect(again.deadLetters.isEmpty)
            #expect(try await rowCount(client, "dead_letters") == 105)
        }
    }

    @Test("a payload over the size limit keeps its first 4096 bytes and its whole size")
    func oversizedPayload() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
                .acquire(session: "s", node: "n", ttl: .seconds(60)))
            let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 10_000)
            let message = ReceivedMessage(
                topic: "devices/d9/readings", deviceID: "d9", payload: payload, receivedAt: Self.now,
                decoded: .failure(Rejection(.tooLarge, "payload is 10000 bytes; the limit is 5000")))
            let outcome = try await PostgresIngest(client: client, logger: testLogger)
                .store(messages: [message], lease: lease, alerting: nil, maxPayloadBytes: 5_000)
            #expect(outcome.deadLetters == ["too_large": 1])
            let rows = try await client.query("SELECT length(payload), payload_bytes FROM dead_letters", logger: testLogger)
                .decode((Int, Int).self)
            for try await (kept, size) in rows {
                #expect(kept == 4096)
                #expect(size == 10_000)
            }
        }
    }

    @Test("device status keeps the latest value per device and name; a meter's HI is a device event once and a dead letter")
    func deviceReports() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let lease = try await Self.bindD1(client)
            func status(_ percent: Double, minutesBefore: Double) -> ReceivedMessage {
                let at = Self.now.addingTimeInterval(-minutesBefore * 60)
                return ReceivedMessage(
                    topic: "gateways/d1", deviceID: "d1", payload: Array("status".utf8), receivedAt: Self.now,
                    decoded: .success(DecodedMessage(
                        messageID: nil, deviceID: "d1", readings: [],
                        status: [DeviceStatusValue(deviceID: "d1", name: .batteryPercent, value: percent, observedAt: at)])))
            }
            let hi = Self.message("d1", #"{"type":"glucose","value":"HI","unit":"mg/dL","measured_at":"2026-12-01T11:30:00Z"}"#)
            let ingest = PostgresIngest(client: client, logger: testLogger)
            // 40 % reported 5 minutes ago, then an older 60 % in the same batch: 40 % stays.
            let first = try await ingest.store(
                messages: [status(40, minutesBefore: 5), status(60, minutesBefore: 30), hi], lease: lease, alerting: nil,
                maxPayloadBytes: 262_144)
            #expect(first.deviceStatusUpdated == 1)
            #expect(first.deviceEvents == 1)
            #expect(first.deadLetters == ["out_of_meter_range": 1])
            // Later batches: an older value changes nothing, a newer one replaces it; the HI again is not a second event.
            let older = try await ingest.store(messages: [status(55, minutesBefore: 10), hi], lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(older.deviceStatusUpdated == 0)
            #expect(older.deviceEvents == 0)
            let newer = try await ingest.store(messages: [status(35, minutesBefore: 1)], lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(newer.deviceStatusUpdated == 1)
            var values: [Double] = []
            for try await v in try await client.query("SELECT value FROM device_status WHERE device_id = 'd1' AND name = 'battery_percent'", logger: testLogger)
                .decode(Double.self) { values.append(v) }
            #expect(values == [35])
            var events: [String] = []
            for try await (kind, type) in try await client.query("SELECT kind, type FROM device_events", logger: testLogger)
                .decode((String, String?).self) { events.append("\(kind) \(type ?? "-")") }
            #expect(events == ["above_range glucose"])
        }
    }

    @Test("a meter's HI, an implausible value and a reading from before the binding raise the review tasks SQLite raises; a redelivery adds nothing")
    func reviewTasks() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let lease = try await Self.bindD1(client, from: Self.boundFrom)
            let batch = [
                Self.message("d1", #"{"type":"glucose","value":"HI","unit":"mg/dL","measured_at":"2026-12-01T11:30:00Z"}"#),
                Self.message("d1", #"{"type":"glucose","value":650,"unit":"mg/dL","measured_at":"2026-12-01T11:40:00Z"}"#),
                // F22: bound at 10:00 today, its clock reads 2024-01-01; 45 mg/dL is below the critical 54.
                Self.message("d1", #"{"type":"glucose","value":45,"unit":"mg/dL","measured_at":"2024-01-01T00:00:00Z"}"#),
            ]
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let alerting = BatchAlerting(policy: PostgresAlertingTests.policy, now: Self.now, incarnation: "t")
            let first = try await ingest.store(messages: batch, lease: lease, alerting: alerting, maxPayloadBytes: 262_144)
            #expect(first.readingsStored == 0)
            #expect(first.deviceEvents == 1)
            #expect(first.deadLetters == ["out_of_meter_range": 1, "implausible_value": 1, "before_binding": 1])
            #expect(first.alerting.opened == [.critical: 2, .routine: 1])

            func tasks() async throws -> [String: (kind: String, priority: String, reason: String, occurrences: Int, patient: String)] {
                var result: [String: (kind: String, priority: String, reason: String, occurrences: Int, patient: String)] = [:]
                for try await (vital, direction, kind, priority, reason, occurrences, patient) in try await client.query(
                    "SELECT vital, direction, kind, priority, reason, occurrences, patient_id FROM tasks", logger: testLogger
                ).decode((String, String, String, String, String, Int, String).self) {
                    result["\(vital) \(direction)"] = (kind, priority, reason, occurrences, patient)
                }
                return result
            }
            // The reasons as the SQLite ingest words them (AlertingTests: deviceProblems,
            // implausibleValue, clockBeforeBinding).
            let opened = try await tasks()
            #expect(opened.count == 3)
            #expect(opened.values.allSatisfy { $0.patient == "p-d1" && $0.occurrences == 1 })
            let hi = try #require(opened["glucose high"])
            #expect(hi.kind == "device" && hi.priority == "critical")
            #expect(hi.reason == "Glucose above the measuring range of device d1 (the device showed HI instead of a value); re-measure or check by other means")
            let implausible = try #require(opened["value:d1 high"] ?? opened["value:d1 low"])
            #expect(implausible.kind == "device" && implausible.priority == "routine")
            #expect(implausible.reason == "Device d1 sent Glucose 650 mg/dL, outside what home devices measure (glucose outside plausible range 10–600 mg/dL); "
                + "not stored or evaluated: check the device and its unit setting with the patient, and re-measure")
            let clock = try #require(opened.first { $0.key.hasPrefix("clock:d1 ") }?.value)
            #expect(clock.kind == "device" && clock.priority == "critical")
            #expect(clock.reason.contains("measured at 2024-01-01T00:00:00Z, before the device's first binding to a patient"))
            #expect(clock.reason.hasSuffix("Glucose 45 mg/dL below critical limit 54 mg/dL"))
            let events = try await rowCount(client, "task_events")

            // The broker delivers the batch again: no new event, dead letter, task or occurrence.
            let again = try await ingest.store(messages: batch, lease: lease, alerting: alerting, maxPayloadBytes: 262_144)
            #expect(again.deviceEvents == 0 && again.deadLetterCount == 0 && again.alerting == AlertingOutcome())
            #expect(try await tasks().values.map(\.occurrences) == [1, 1, 1])
            #expect(try await rowCount(client, "task_events") == events)
        }
    }

    @Test("an irregular-heartbeat marker sent apart flags the blood pressure and pulse of its time, stored before or after it, and nothing else")
    func readingMarkers() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let lease = try await Self.bindD1(client)
            func marker(at: String) -> ReceivedMessage {
                var decoded = DecodedMessage(messageID: nil, deviceID: "d1", readings: [])
                decoded.markers = [ReadingMarker(
                    deviceID: "d1", measuredAt: ISO8601DateFormatter().date(from: at)!, flags: .irregularHeartbeat)]
                return ReceivedMessage(topic: "vendors/tenovi", deviceID: "d1", payload: Array("marker".utf8), receivedAt: Self.now,
                                       decoded: .success(decoded))
            }
            func bloodPressure(at: String) -> ReceivedMessage {
                Self.message("d1", #"{"measured_at":"\#(at)","readings":[{"type":"systolic_bp","value":128,"unit":"mmHg"},"#
                    + #"{"type":"diastolic_bp","value":82,"unit":"mmHg"},{"type":"heart_rate","value":71,"unit":"/min"}]}"#)
            }
            let (t1, t2) = ("2026-12-01T11:00:00Z", "2026-12-01T11:30:00Z")
            let ingest = PostgresIngest(client: client, logger: testLogger)
            // The marker of t1 comes before its readings; the readings of t2 before their marker.
            let first = try await ingest.store(
                messages: [marker(at: t1), bloodPressure(at: t2)], lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(first.readingMarkers == 1 && first.readingsStored == 3)
            let second = try await ingest.store(
                messages: [bloodPressure(at: t1), marker(at: t2),
                           Self.message("d1", #"{"type":"glucose","value":110,"unit":"mg/dL","measured_at":"\#(t2)"}"#)],
                lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(second.readingMarkers == 1 && second.readingsStored == 4)
            var flags: [String] = []
            for try await (type, at, flag) in try await client.query(
                "SELECT type, measured_at, flags FROM readings ORDER BY measured_at, type", logger: testLogger
            ).decode((String, Int64, String?).self) {
                flags.append("\(type) \(at == 1_796_122_800_000 ? "t1" : "t2") \(flag ?? "-")")
            }
            #expect(flags == [
                "diastolic_bp t1 irregular_heartbeat", "heart_rate t1 irregular_heartbeat", "systolic_bp t1 irregular_heartbeat",
                "diastolic_bp t2 irregular_heartbeat", "glucose t2 -", "heart_rate t2 irregular_heartbeat",
                "systolic_bp t2 irregular_heartbeat",
            ])
        }
    }

    @Test("a retained copy of a message whose reading was timed by its receipt adds nothing; an unseen retained message is stored")
    func retainedRepeat() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let lease = try await Self.bindD1(client)
            // A scale that sends no time: the reading is timed by its receipt.
            func weight(_ payload: String, receivedAt: Date, retained: Bool) -> ReceivedMessage {
                let observation = Observation(
                    deviceID: "d1", type: .bodyWeight, value: 80, unit: "kg", canonicalValue: 80, measuredAt: receivedAt,
                    timeSource: .receivedAt)
                return ReceivedMessage(
                    topic: "scales/d1", deviceID: "d1", payload: Array(payload.utf8), receivedAt: receivedAt,
                    decoded: .success(DecodedMessage(messageID: nil, deviceID: "d1", readings: [.success(observation)])),
                    retained: retained)
            }
            let ingest = PostgresIngest(client: client, logger: testLogger)
            let first = try await ingest.store(
                messages: [weight(#"{"kg":80}"#, receivedAt: Self.now, retained: true)], lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(first.readingsStored == 1)
            #expect(first.retainedRepeats == 0)
            // The node restarts and subscribes again an hour later: the broker sends the retained copy.
            let later = Self.now.addingTimeInterval(3_600)
            let again = try await ingest.store(
                messages: [weight(#"{"kg":80}"#, receivedAt: later, retained: true), weight(#"{"kg":80.0}"#, receivedAt: later, retained: true)],
                lease: lease, alerting: nil, maxPayloadBytes: 262_144)
            #expect(again.retainedRepeats == 1)
            #expect(again.readingsStored == 1)
            #expect(try await rowCount(client, "readings") == 2)
            #expect(try await rowCount(client, "received_payloads") == 2)
        }
    }
}
