import Foundation
import GRDB
import Testing
import VitalsDomain
import VitalsFormats
import VitalsStore

@Suite("ingest into SQLite")
struct IngestTests {
    @Test("a reading is stored once; a redelivery is a duplicate and adds no row or task")
    func idempotent() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let m = glucose(48, minutesAgo: 5)
        let first = try await db.ingest([m], pipeline: pipeline)
        #expect(first.readingsStored == 1)
        #expect(first.tasksOpened[.critical] == 1)
        let again = try await db.ingest([m, m], pipeline: pipeline)
        #expect(again.readingsStored == 0)
        #expect(again.duplicates == 2)
        #expect(again.tasksOpened.isEmpty && again.tasksUpdated == 0)
        let s = try db.statistics()
        #expect(s.readings == 1)
        #expect(s.duplicates == 2)
        #expect(s.tasksOpen == 1)
        #expect(try db.tasks()[0].occurrences == 1)
    }

    @Test("an oversized payload keeps its first 4,096 bytes, its size and its SHA-256, never the whole")
    func oversizedPayloadBounded() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        // One million "a": over the 256 KiB limit. Its SHA-256 is the FIPS 180-2 test vector.
        let big = IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: Array(repeating: UInt8(ascii: "a"), count: 1_000_000),
                                  receivedAt: Date())
        let s = try await db.ingest([big, big], pipeline: pipeline)
        #expect(s.deadLetters == [.tooLarge: 1])
        let letter = try #require(try db.deadLetters().first)
        #expect(letter.payloadBytes == 1_000_000)
        let stored = try #require(try db.storedDeadLetterPayload(id: letter.id))
        #expect(stored.bytes == Data(repeating: UInt8(ascii: "a"), count: 4096))
        #expect(stored.size == 1_000_000)
        #expect(stored.isTruncated)
        #expect(stored.sha256?.map { String(format: "%02x", $0) }.joined() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let bytesOnDisk = try await db.writer.read { db in try Int.fetchOne(db, sql: "SELECT sum(length(payload)) FROM dead_letter_payloads") }
        #expect(bytesOnDisk == 4096)
        // A payload within the limit is kept whole.
        _ = try await db.ingest([message("g1", #"{"hello":1}"#)], pipeline: pipeline)
        let newest = try #require(try db.deadLetters().first)
        let small = try #require(try db.storedDeadLetterPayload(id: newest.id))
        #expect(small.bytes == Data(#"{"hello":1}"#.utf8) && !small.isTruncated)
    }

    @Test("same key, another value: kept as a conflicting_duplicate dead letter")
    func conflicting() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([message("g1", #"{"type":"glucose","value":100,"unit":"mg/dL","measured_at":"2026-01-01T10:00:00Z"}"#)], pipeline: pipeline)
        let s = try await db.ingest([message("g1", #"{"type":"glucose","value":101,"unit":"mg/dL","measured_at":"2026-01-01T10:00:00Z"}"#)], pipeline: pipeline)
        #expect(s.deadLetters == [.conflictingDuplicate: 1])
        #expect(try db.statistics().readings == 1)
    }

    @Test("every dead-letter reason, each followed by a valid reading that is stored")
    func everyReason() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        // Handed to the patient an hour ago.
        try db.upsertDevice(Device(id: "g9", kind: .glucometer, patientID: "p1"), actor: "test", from: Date().addingTimeInterval(-3_600))
        let bad: [(IncomingMessage, DeadLetterReason)] = [
            (message("g9", #"{"type":"glucose","value":90,"unit":"mg/dL","measured_at":\#(now - 7_200_000)}"#), .beforeBinding),
            (IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: [0xFF, 0xFE, 0x7B, 0x22], receivedAt: Date()), .invalidUTF8),
            (message("g1", #"{"sys":12"#), .malformedJSON),
            (message("g1", #"{"hello":1}"#), .missingField),
            (message("nobody", #"{"type":"glucose","value":90,"unit":"mg/dL","measured_at":\#(now)}"#), .unknownDevice),
            (message("g1", #"{"device_id":"g2","type":"glucose","value":90,"unit":"mg/dL","measured_at":\#(now)}"#), .deviceMismatch),
            (message("g1", #"{"type":"ketones","value":1,"unit":"mmol/L","measured_at":\#(now)}"#), .unknownType),
            (message("g1", #"{"type":"glucose","value":90,"unit":"furlongs","measured_at":\#(now)}"#), .badUnit),
            (message("g1", #"{"type":"glucose","value":"ten","unit":"mg/dL","measured_at":\#(now)}"#), .notANumber),
            (message("g1", #"{"type":"glucose","value":110,"unit":"mmol/L","measured_at":\#(now)}"#), .implausibleValue),
            (message("g1", #"{"type":"glucose","value":90,"unit":"mg/dL","measured_at":1648731311}"#), .badTimestamp),
            (message("g1", String(repeating: " ", count: 262_145)), .tooLarge),
            (IncomingMessage(topic: "elsewhere/g1", deviceID: nil, payload: Array("{}".utf8), receivedAt: Date()), .badTopic),
            (IncomingMessage(topic: "tenovi/g1", deviceID: "g1", payload: Array(#"{"metric":"glucose","value_1":2047,"timestamp":"2026-01-01T10:00:00Z"}"#.utf8),
                             receivedAt: Date(), format: .tenovi), .deviceError),
            (IncomingMessage(topic: "tenovi/g1", deviceID: "g1", payload: Array(#"{"metric":"glucose","value_1":"HI","timestamp":"2026-01-01T10:00:00Z"}"#.utf8),
                             receivedAt: Date(), format: .tenovi), .outOfMeterRange),
            (IncomingMessage(topic: "senml/g1", deviceID: "g1", payload: Array("{}".utf8), receivedAt: Date(), format: .senml), .unknownFormat),
        ]
        #expect(Set(bad.map(\.1)).count == DeadLetterReason.allCases.count - 1)  // all but conflicting_duplicate (tested above)
        for (index, (m, reason)) in bad.enumerated() {
            let s = try await db.ingest([m, glucose(100, minutesAgo: Double(index + 1))], pipeline: pipeline)
            #expect(s.deadLetters == [reason: 1], "\(reason)")
            #expect(s.readingsStored == 1, "valid reading after \(reason)")
        }
        let stats = try db.statistics()
        #expect(stats.readings == bad.count)
        #expect(stats.deadLetters == bad.count)
        // The raw bytes are kept.
        let letters = try db.deadLetters(reason: "invalid_utf8")
        #expect(try db.deadLetterPayload(id: letters[0].id) == Data([0xFF, 0xFE, 0x7B, 0x22]))
    }

    @Test("a breach opens a task; more breaches update it; worse raises and reopens; resolved opens anew")
    func taskLifecycle() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([glucose(65, minutesAgo: 30)], pipeline: pipeline)
        var tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].priority == .warning)
        #expect(tasks[0].reason == "Glucose 65 mg/dL below warning limit 70 mg/dL")
        _ = try db.acknowledgeTask(id: tasks[0].id, by: "nurse.a")
        _ = try await db.ingest([glucose(66, minutesAgo: 20)], pipeline: pipeline)
        tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].occurrences == 2)
        #expect(tasks[0].status == .acknowledged)
        _ = try await db.ingest([glucose(48, minutesAgo: 10)], pipeline: pipeline)
        tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].priority == .critical)
        #expect(tasks[0].status == .open)  // a worsening is seen again
        #expect(tasks[0].reason == "Glucose 48 mg/dL below critical limit 54 mg/dL")
        #expect(tasks[0].occurrences == 3)
        // A high reading is another condition.
        _ = try await db.ingest([glucose(300, minutesAgo: 9)], pipeline: pipeline)
        #expect(try db.tasks().count == 2)
        _ = try db.resolveTask(id: tasks[0].id, by: "nurse.b", note: "called patient, ate")
        #expect(throws: TaskError.self) { try db.resolveTask(id: tasks[0].id, by: "nurse.b") }
        _ = try await db.ingest([glucose(50, minutesAgo: 1)], pipeline: pipeline)
        let lows = try db.tasks(patientID: "p1").filter { $0.direction == .low }
        #expect(lows.count == 2)
        #expect(lows.filter { $0.status != .resolved }.count == 1)
        let history = try #require(try db.task(id: tasks[0].id)).events.map(\.event)
        // The 300 mg/dL reading, 1 min after the critical 48, is the re-measurement within 15 min: it is
        // not critically low (not confirmed), and at ≥ 70 it clears the low condition (recovered).
        #expect(history == ["opened", "acknowledged", "updated", "priority_raised", "confirmation", "recovered", "resolved"])
        #expect(try db.task(id: tasks[0].id)?.task.confirmation == .notConfirmed)
    }

    @Test("a cuff reading of 185/125 opens one critical blood-pressure task")
    func bloodPressure() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let s = try await db.ingest([message("c1", """
            {"measured_at":"\(Date().addingTimeInterval(-60).formatted(.iso8601))","readings":[
             {"type":"systolic_bp","value":185,"unit":"mmHg"},{"type":"diastolic_bp","value":125,"unit":"mmHg"},
             {"type":"heart_rate","value":80,"unit":"bpm"}]}
            """)], pipeline: pipeline)
        #expect(s.readingsStored == 3)
        let tasks = try db.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].vital == "blood_pressure")
        #expect(tasks[0].priority == .critical)
        #expect(tasks[0].reason == "Systolic blood pressure 185 mmHg at or above critical limit 180 mmHg; Diastolic blood pressure 125 mmHg at or above critical limit 120 mmHg")
    }

    @Test("two processes ingesting breaches at once leave one task (F14)")
    func concurrentWriters() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        _ = try enrolledDatabase(dir)
        // Two pools on one file behave as two processes.
        let a = try AppDatabase.open(path: dir.path + "/vitalsd.sqlite")
        let b = try AppDatabase.open(path: dir.path + "/vitalsd.sqlite")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                let db = i.isMultiple(of: 2) ? a : b
                group.addTask { _ = try await db.ingest([glucose(45, minutesAgo: Double(i + 1))], pipeline: pipeline) }
            }
            try await group.waitForAll()
        }
        let tasks = try a.tasks()
        #expect(tasks.count == 1)
        #expect(tasks[0].occurrences == 20)
    }

    @Test("the schema refuses a second unresolved task for one condition")
    func partialUniqueIndex() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([glucose(45, minutesAgo: 1)], pipeline: pipeline)
        #expect(throws: DatabaseError.self) {
            try db.writer.write { d in
                try d.execute(sql: """
                    INSERT INTO tasks(patient_id, vital, direction, priority, reason, first_reading_id, last_reading_id,
                                      last_measured_at, opened_at, updated_at)
                    SELECT patient_id, vital, direction, priority, reason, first_reading_id, last_reading_id,
                           last_measured_at, opened_at, updated_at FROM tasks
                    """)
            }
        }
    }

    @Test("a patient's own limit wins over the program default")
    func patientThreshold() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.setThreshold(patientID: "p1", slot: ThresholdSlot(type: .glucose, level: .warning, direction: .low), value: 80, actor: "dr.x")
        _ = try await db.ingest([glucose(75, minutesAgo: 1)], pipeline: pipeline)
        #expect(try db.tasks().first?.reason == "Glucose 75 mg/dL below warning limit 80 mg/dL")
    }
}

@Suite("enrollment and audit")
struct EnrollmentTests {
    @Test("importing twice changes nothing")
    func importIdempotent() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try AppDatabase.open(path: dir.path + "/v.sqlite")
        let rows = [
            AppDatabase.ImportRow(patient: Patient(id: "a", timezone: "America/Denver", programs: [.diabetes]),
                                  device: Device(id: "ga", kind: .glucometer, patientID: "a")),
            AppDatabase.ImportRow(patient: Patient(id: "a", timezone: "America/Denver", programs: [.hypertension]),
                                  device: Device(id: "ca", kind: .bpCuff, patientID: "a")),
        ]
        let first = try db.importEnrollment(rows, actor: "ops")
        #expect(first.patientsCreated == 1 && first.devicesCreated == 2)
        let auditRows = try db.writer.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM audit_log") }
        let second = try db.importEnrollment(rows, actor: "ops")
        #expect(second.patientsCreated == 0 && second.patientsUpdated == 0 && second.devicesCreated == 0 && second.devicesUpdated == 0)
        #expect(second.unchanged == 3)
        #expect(try db.writer.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM audit_log") } == auditRows)
        #expect(Set(try db.patient(id: "a")!.programs) == [.diabetes, .hypertension])
    }

    @Test("bad enrollment is refused with the reason")
    func refused() throws {
        let db = try AppDatabase.inMemory()
        #expect(throws: EnrollmentError.self) {
            try db.upsertPatient(Patient(id: "x", timezone: "Mars/Olympus", programs: [.copd]), actor: "t")
        }
        #expect(throws: EnrollmentError.self) {
            try db.upsertDevice(Device(id: "d", kind: .scale, patientID: "nobody"), actor: "t")
        }
    }

    @Test("the audit trail is append-only")
    func appendOnly() throws {
        let db = try AppDatabase.inMemory()
        try db.upsertPatient(Patient(id: "x", timezone: "UTC", programs: [.copd]), actor: "t")
        #expect(throws: DatabaseError.self) { try db.writer.write { try $0.execute(sql: "UPDATE audit_log SET actor = 'y'") } }
        #expect(throws: DatabaseError.self) { try db.writer.write { try $0.execute(sql: "DELETE FROM audit_log") } }
    }
}

@Suite("hostile input in storage")
struct HostileStorageTests {
    @Test("one message with 10,000 bad readings writes 101 dead letters and its payload once")
    func amplification() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let json = #"{"readings":["# + Array(repeating: "{}", count: 10_000).joined(separator: ",") + "]}"
        let s = try await db.ingest([message("g1", json)], pipeline: pipeline)
        #expect(s.deadLetters == [.missingField: 101])
        let rows = try await db.writer.read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM dead_letter_payloads"),
             try Int.fetchOne(db, sql: "SELECT sum(length(payload)) FROM dead_letter_payloads"),
             try Int.fetchOne(db, sql: "SELECT sum(length(payload)) FROM dead_letters"))
        }
        #expect(rows.0 == 1)
        #expect(rows.1 == json.utf8.count)
        #expect(rows.2 == 0)
        let last = try #require(try db.deadLetters(limit: 1).first)
        #expect(last.detail == "9900 further readings of this message rejected: missing_field x9900")
    }

    @Test("a redelivered or retained bad message is recorded once")
    func redeliveredDeadLetter() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let bad = message("g1", #"{"sys":12"#)
        _ = try await db.ingest([bad], pipeline: pipeline)
        let again = try await db.ingest([bad, bad], pipeline: pipeline)
        #expect(again.deadLetters.isEmpty)
        #expect(again.repeatedDeadLetters == 2)
        #expect(try db.statistics().deadLetters == 1)
    }

    @Test("a device is not moved to another patient without --reassign")
    func reassign() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        #expect(throws: EnrollmentError.self) {
            try db.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p2"), actor: "t")
        }
        #expect(try db.devices(patientID: "p1").map(\.id).contains("g1"))
        #expect(try db.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p2"), actor: "t", reassign: true) == .updated)
        #expect(try db.devices(patientID: "p2").map(\.id).contains("g1"))
    }

    @Test("ids that could never match a topic are refused", arguments: ["a/b", "a+b", "a#", " sp ", "", "I11,x", "tab\there", String(repeating: "x", count: 129)])
    func identifiers(id: String) throws {
        let db = try AppDatabase.inMemory()
        #expect(throws: EnrollmentError.self) { try db.upsertPatient(Patient(id: id, timezone: "UTC", programs: [.copd]), actor: "t") }
        try db.upsertPatient(Patient(id: "ok-1", timezone: "UTC", programs: [.copd]), actor: "t")
        #expect(throws: EnrollmentError.self) { try db.upsertDevice(Device(id: id, kind: .scale, patientID: "ok-1"), actor: "t") }
    }

    @Test("one batch, several patients: each reading meets its own patient's programs and limits")
    func batchOfPatients() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        try db.upsertPatient(Patient(id: "p3", timezone: "UTC", programs: [.diabetes]), actor: "t")
        try db.upsertDevice(Device(id: "g3", kind: .glucometer, patientID: "p3"), actor: "t")
        // p1's own warning-low limit is 90 mg/dL; p3 keeps the diabetes default of 70 mg/dL.
        try db.setThreshold(patientID: "p1", slot: ThresholdSlot(type: .glucose, level: .warning, direction: .low), value: 90, actor: "dr.x")
        let ms = Int64(Date().timeIntervalSince1970 * 1000) - 60_000
        let s = try await db.ingest([
            glucose(85, minutesAgo: 1),
            glucose(85, minutesAgo: 1, device: "g3"),
            glucose(85, minutesAgo: 1, device: "nobody"),
            // p2 (hypertension): systolic 185 mmHg is at or above the critical 180.
            message("c1", #"{"measured_at":\#(ms),"readings":[{"type":"systolic_bp","value":185,"unit":"mm[Hg]"}]}"#),
        ], pipeline: pipeline)
        #expect(s.readingsStored == 3)
        #expect(s.deadLetters == [.unknownDevice: 1])
        #expect(s.tasksOpened == [.warning: 1, .critical: 1])
        let tasks = try db.tasks()
        #expect(Set(tasks.map(\.patientID)) == ["p1", "p2"])
    }

    @Test("a topic level that is not a device id is a bad_topic dead letter, and the text is kept nowhere but the payload row")
    func topicDeviceIDValidated() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        let s = try await db.ingest([message("Jane Doe MRN 12345", #"{"type":"heart_rate","value":70,"unit":"/min","measured_at":1795871400000}"#),
                                     message(String(repeating: "x", count: 300), #"{"type":"heart_rate","value":70,"unit":"/min","measured_at":1795871400000}"#)],
                                    pipeline: pipeline)
        #expect(s.deadLetters == [.badTopic: 2])
        #expect(s.rejections.allSatisfy { $0.deviceID == nil })
        let letters = try db.deadLetters(reason: "bad_topic")
        #expect(letters.count == 2)
        #expect(letters.allSatisfy { $0.deviceID == nil })
    }
}
