import Foundation
import PostgresNIO
import PostgresTestSupport
import Testing
import VitalsAlerting
import VitalsDomain
import VitalsPostgres

@Suite("Routine checks and maintenance on PostgreSQL: days of data, silence, pauses and batteries by hand; one node's run per interval")
struct PostgresRoutineChecksTests {
    /// `2026-11-02T03:30:00Z` and the like, as a date.
    static func utc(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    /// Patient p1 in New York (care manager ana, diabetes), glucometer g1, an RPM episode from
    /// 2026-11-01, and three readings measured at 2026-11-02T03:30Z (Nov 1, 22:30 in New York),
    /// 2026-11-02T15:00Z (Nov 2) and 2026-11-04T04:59Z (Nov 3, 23:59): three local days of data,
    /// two UTC days. The last is 45 mg/dL, below the critical 54: an open critical task.
    static func enroll(_ client: PostgresClient) async throws {
        try await client.query("""
            INSERT INTO users (username, display_name, role, password_hash, created_at, password_changed_at)
            VALUES ('ana', 'Ana Ruiz', 'care_manager', '$2b$12$abcdefghijklmnopqrstuv', 0, 0)
            """, logger: testLogger)
        try await client.query(
            "INSERT INTO patients (id, timezone, created_at, care_manager) VALUES ('p1', 'America/New_York', 0, 'ana')", logger: testLogger)
        try await client.query("INSERT INTO patient_programs (patient_id, program) VALUES ('p1', 'diabetes')", logger: testLogger)
        try await client.query("INSERT INTO devices (id, kind, patient_id, created_at) VALUES ('g1', 'glucometer', 'p1', 0)", logger: testLogger)
        try await client.query("""
            INSERT INTO episodes (patient_id, start_date, billing_practitioner, created_at, created_by)
            VALUES ('p1', '2026-11-01', 'Dr. A', 0, 'test')
            """, logger: testLogger)
        let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
            .acquire(session: "s", node: "n", ttl: .seconds(600)))
        for (value, at) in [(110.0, "2026-11-02T03:30:00Z"), (120, "2026-11-02T15:00:00Z"), (45, "2026-11-04T04:59:00Z")] {
            let measured = utc(at), received = utc(at).addingTimeInterval(60)
            let decoded = try CanonicalMessageDecoder().decode(payload: glucoseMessage(value, at: measured), deviceID: "g1", receivedAt: received)
            let readings = try decoded.readings.map { StoredReading(observation: try $0.get(), patientID: "p1", receivedAt: received, message: 0) }
            _ = try await PostgresIngest(client: client, logger: testLogger).store(
                batch: IngestBatch(readings: readings), lease: lease,
                alerting: BatchAlerting(policy: PostgresAlertingTests.policy, now: received, incarnation: "t"))
        }
    }

    static func tasks(_ client: PostgresClient) async throws -> [(kind: String, reason: String, stale: Int)] {
        try await client.query("SELECT kind, reason, data_stale FROM tasks ORDER BY id", logger: testLogger)
            .decode((String, String, Int).self).collected().map { (kind: $0.0, reason: $0.1, stale: $0.2) }
    }

    @Test("a silent patient gets one no-data and one days-of-data task, counted in the patient's days; the open critical task is flagged stale")
    func silence() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await Self.enroll(client)
            #expect(try await Self.tasks(client).map(\.kind) == ["threshold"])
            // 2026-11-20 12:00 in New York. Period 1 runs 2026-11-01 to 2026-11-30 (30 days). Days of
            // data: Nov 1, 2, 3 (3); days left after today: 10; today has none: 3 + 10 + 1 = 14 < 16.
            // Silence since 2026-11-04T04:59Z: 16 days 12 hours 1 minute, at least 3.
            let now = Self.utc("2026-11-20T17:00:00Z")
            let checks = PostgresRoutineChecks(client: client, logger: testLogger)
            let s = try await checks.run(rules: BillingRules(), noDataDays: 3, lowBatteryPercent: 15, now: now, incarnation: "t")
            #expect(s.daysOfDataTasks == 1 && s.noDataTasks == 1 && s.silentDeviceTasks == 0 && s.lowBatteryTasks == 0)
            let tasks = try await Self.tasks(client)
            #expect(tasks.map(\.kind) == ["threshold", "days_of_data", "no_data"])
            #expect(tasks[1].reason == "Days of data: 16 can no longer be reached in period 1 (2026-11-01 to 2026-11-30): 3 so far, 10 days left")
            #expect(tasks[2].reason == "No device data for 16 days since the last reading on 2026-11-03")
            #expect(tasks[0].stale == 1)
            // The critical task at ingest; then both routine tasks and the stale flag: each event with its outbox copy.
            #expect(try await client.query("SELECT event FROM task_events ORDER BY id", logger: testLogger)
                .decode(String.self).collected() == ["opened", "opened", "opened", "data_stale"])
            #expect(try await rowCount(client, "outbox") == 4)
            // An hour later, and a day later: nothing new (each condition is raised once, ever).
            for later in [3_600.0, 86_400] {
                let again = try await checks.run(
                    rules: BillingRules(), noDataDays: 3, lowBatteryPercent: 15, now: now.addingTimeInterval(later), incarnation: "t")
                #expect(again.total == 0)
            }
            #expect(try await rowCount(client, "tasks") == 3)
        }
    }

    @Test("a patient whose monitoring is paused gets no routine task; a low battery gets one a day")
    func pausedAndBattery() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await Self.enroll(client)
            let now = Self.utc("2026-11-20T17:00:00Z")
            // A hospital stay from 2026-11-15 through 2026-11-21 (New York).
            try await client.query("""
                INSERT INTO monitoring_pauses (patient_id, starts_at, end_date, ends_at, reason, created_by, created_at)
                VALUES ('p1', \(epochMilliseconds(Self.utc("2026-11-15T05:00:00Z"))), '2026-11-21',
                        \(epochMilliseconds(Self.utc("2026-11-22T05:00:00Z"))), 'hospital stay', 'ana', 0)
                """, logger: testLogger)
            // g1 reports 12 % (adherence.low_battery_percent 15).
            try await client.query("""
                INSERT INTO device_status (device_id, name, value, observed_at, received_at) VALUES ('g1', 'battery_percent', 12, 0, 0)
                """, logger: testLogger)
            let checks = PostgresRoutineChecks(client: client, logger: testLogger)
            let s = try await checks.run(rules: BillingRules(), noDataDays: 3, lowBatteryPercent: 15, now: now, incarnation: "t")
            #expect(s.daysOfDataTasks == 0 && s.noDataTasks == 0)
            #expect(s.lowBatteryTasks == 1)
            let battery = try await Self.tasks(client).last
            #expect(battery?.kind == "device")
            #expect(battery?.reason == "Device g1 (glucometer) battery at 12 %; replace or charge it before it stops sending")
            #expect(try await checks.run(rules: BillingRules(), noDataDays: 3, lowBatteryPercent: 15, now: now.addingTimeInterval(60),
                                         incarnation: "t").lowBatteryTasks == 0)
            // Without a limit, no battery check at all, even on a day without a battery task.
            try await client.query("UPDATE tasks SET status = 'resolved', resolved_at = 1, resolved_by = 'ana', disposition = 'device_problem' WHERE kind = 'device'", logger: testLogger)
            #expect(try await checks.run(rules: BillingRules(), noDataDays: 3, lowBatteryPercent: nil, now: now.addingTimeInterval(86_400),
                                         incarnation: "t").lowBatteryTasks == 0)
            // With it, the next day (UTC) has a task of its own, the first being resolved.
            #expect(try await checks.run(rules: BillingRules(), noDataDays: 3, lowBatteryPercent: 15, now: now.addingTimeInterval(86_400),
                                         incarnation: "t").lowBatteryTasks == 1)
        }
    }

    @Test("two nodes' runs at the same moment open each task once")
    func twoNodesAtOnce() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        try await cluster.withDatabase { client, database in
            try await Self.enroll(client)
            let now = Self.utc("2026-11-20T17:00:00Z")
            let totals = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await cluster.withClient(database: database, maximumConnections: 2) { node in
                            try await PostgresRoutineChecks(client: node, logger: testLogger).run(
                                rules: BillingRules(), noDataDays: 3, lowBatteryPercent: 15, now: now, incarnation: "t").total
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(totals == 2)
            #expect(try await Self.tasks(client).map(\.kind) == ["threshold", "days_of_data", "no_data"])
        }
    }

    @Test("a job is claimed by one node per interval, whichever node asks")
    func claims() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            let t = Self.utc("2026-11-20T17:00:00Z"), spacing = Duration.seconds(270)
            var claimed: [Bool] = []
            for (node, seconds) in [("a", 0.0), ("b", 0), ("b", 269.999), ("b", 270), ("a", 300)] {
                claimed.append(try await PostgresTimerRuns.claim(
                    client, job: "routine", node: node, now: t.addingTimeInterval(seconds), spacing: spacing, logger: testLogger))
            }
            #expect(claimed == [true, false, false, true, false])
            // Another job is claimed on its own.
            let maintenance = try await PostgresTimerRuns.claim(
                client, job: "maintenance", node: "a", now: t, spacing: spacing, logger: testLogger)
            #expect(maintenance)
            let rows = try await client.query("SELECT job, node FROM timer_runs ORDER BY job", logger: testLogger)
                .decode((String, String).self).collected().map { "\($0.0) \($0.1)" }
            #expect(rows == ["maintenance a", "routine b"])
        }
    }

    @Test("purged dead-letter payloads keep their digest, so a redelivery is still recorded once; delivered outbox rows go once every channel took them")
    func maintenance() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            func deadLetter(receivedAt: Int64) async throws -> Int {
                try await client.query("""
                    INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, reading_index, payload, payload_bytes)
                    VALUES (\(receivedAt), 'devices/x/readings', NULL, 'unknown_device', 'no such device', NULL, 'abc'::bytea, 3)
                    ON CONFLICT DO NOTHING RETURNING 1
                    """, logger: testLogger).collect().count
            }
            #expect(try await deadLetter(receivedAt: 1_000) == 1)
            let maintenance = PostgresMaintenance(client: client, logger: testLogger)
            #expect(try await maintenance.purgeDeadLetterPayloads(before: dateFromEpochMilliseconds(1_000)) == 0)
            #expect(try await maintenance.purgeDeadLetterPayloads(before: dateFromEpochMilliseconds(1_001)) == 1)
            #expect(try await client.query("SELECT length(payload), payload_bytes FROM dead_letters", logger: testLogger)
                .decode((Int, Int).self).collected().map { [$0.0, $0.1] } == [[0, 3]])
            #expect(try await deadLetter(receivedAt: 2_000) == 0)
            #expect(try await maintenance.purgeDeadLetterPayloads(before: dateFromEpochMilliseconds(3_000)) == 0)

            // Four events (see silence()): the webhook took them all, MQTT the first two.
            try await Self.enroll(client)
            _ = try await PostgresRoutineChecks(client: client, logger: testLogger).run(
                rules: BillingRules(), noDataDays: 3, lowBatteryPercent: nil, now: Self.utc("2026-11-20T17:00:00Z"), incarnation: "t")
            let ids = try await client.query("SELECT id FROM outbox ORDER BY id", logger: testLogger).decode(Int64.self).collected()
            #expect(ids.count == 4)
            try await client.query("""
                INSERT INTO delivery_cursors (channel, last_event_id, updated_at) VALUES ('webhook', \(ids[3]), 0), ('mqtt', \(ids[1]), 0)
                """, logger: testLogger)
            let late = Self.utc("2027-01-01T00:00:00Z")
            // A channel without a cursor keeps everything.
            #expect(try await maintenance.purgeDeliveredEvents(channels: ["webhook", "fhir"], olderThanDays: 30, now: late) == 0)
            // Both channels took the first two. The first is from 2026-11-04T05:00Z, 30 days old on
            // 2026-12-05 at 00:00 UTC; the second from 2026-11-20.
            #expect(try await maintenance.purgeDeliveredEvents(
                channels: ["webhook", "mqtt"], olderThanDays: 30, now: Self.utc("2026-12-04T05:00:00Z")) == 0)
            #expect(try await maintenance.purgeDeliveredEvents(
                channels: ["webhook", "mqtt"], olderThanDays: 30, now: Self.utc("2026-12-05T00:00:00Z")) == 1)
            #expect(try await maintenance.purgeDeliveredEvents(channels: ["webhook", "mqtt"], olderThanDays: 30, now: late) == 1)
            #expect(try await client.query("SELECT id FROM outbox ORDER BY id", logger: testLogger)
                .decode(Int64.self).collected() == Array(ids[2...]))
            #expect(try await rowCount(client, "task_events") == 4)
        }
    }
}

extension AsyncSequence where Element: Sendable {
    /// Every element, in order.
    func collected() async throws -> [Element] {
        var all: [Element] = []
        for try await element in self { all.append(element) }
        return all
    }
}
