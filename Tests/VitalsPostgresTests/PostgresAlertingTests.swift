import PostgresTestSupport
import Foundation
import GRDB
import PostgresNIO
import Testing
import VitalsAlerting
import VitalsDomain
import VitalsPostgres
import VitalsStore

/// One glucose reading as a device sends it (canonical format, mg/dL).
func glucoseMessage(_ value: Double, at: Date) -> [UInt8] {
    Array(#"{"measured_at":\#(Int64(at.timeIntervalSince1970 * 1000)),"readings":[{"type":"glucose","value":\#(value),"unit":"mg/dL"}]}"#.utf8)
}

/// `task-event-<id>-<incarnation>` with the incarnation left out: it differs by design between databases.
func withoutIncarnation(_ text: String) -> String {
    text.replacingOccurrences(of: #"task-event-([0-9]+)-[^"]+"#, with: "task-event-$1", options: .regularExpression)
}

@Suite("The clinical rules in the PostgreSQL ingest transaction, against the SQLite ingest", .serialized)
struct PostgresAlertingTests {
    static let policy = AlertingPolicy(thresholds: .clinicalDefaults)
    static let t0 = Date(timeIntervalSince1970: 1_796_000_000)  // 2026-11-28T13:33:20Z
    /// Three batches of the glucometer g1 of p1 (diabetes, care manager ana), each received a minute
    /// after its measurement: 45 mg/dL (below the critical 54), 50 ten minutes later (still critical
    /// low, within the 15-minute confirmation window), 300 twenty minutes later (at or above the
    /// warning 250, and above the low limits: the low condition recovers; ADA, ClinicalDefaults.swift).
    static let batches: [(value: Double, minutes: Double)] = [(45, 0), (50, 10), (300, 20)]

    @Test("a critical low opens one task for the care manager, a second low confirms and updates it, a high opens another; rows and outbox bodies equal SQLite's; a redelivery adds nothing")
    func sameTasksAsSQLite() async throws {
        // SQLite, through the daemon's ingest.
        let directory = NSTemporaryDirectory() + "vitalsd-parity-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sqlite = try AppDatabase.open(path: directory + "/v.sqlite")
        _ = try sqlite.addUser(username: "ana", displayName: "Ana Ruiz", role: .careManager, passwordHash: Self.hash, actor: "test")
        try sqlite.upsertPatient(Patient(id: "p1", timezone: "UTC", programs: [.diabetes], careManager: "ana"), actor: "test")
        try sqlite.upsertDevice(Device(id: "g1", kind: .glucometer, patientID: "p1"), actor: "test")
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        for (value, minutes) in Self.batches {
            let measured = Self.t0.addingTimeInterval(minutes * 60)
            _ = try await sqlite.ingest(
                [IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: glucoseMessage(value, at: measured),
                                 receivedAt: measured.addingTimeInterval(60))],
                pipeline: pipeline, now: measured.addingTimeInterval(60))
        }
        try sqlite.close()
        let queue = try DatabaseQueue(path: directory + "/v.sqlite")
        let sqliteTasks = try await queue.read { db in
            try Row.fetchAll(db, sql: "SELECT \(Self.compared) FROM tasks ORDER BY id").map { row in
                row.databaseValues.map(Self.text).joined(separator: "|")
            }
        }
        let sqliteEvents = try await queue.read { db in
            try Row.fetchAll(db, sql: "SELECT task_id, event, actor, reading_id, detail FROM task_events ORDER BY id").map { row in
                row.databaseValues.map(Self.text).joined(separator: "|")
            }
        }
        let sqliteBodies = try await queue.read { db in
            try String.fetchAll(db, sql: "SELECT body FROM outbox ORDER BY id").map(withoutIncarnation)
        }
        try queue.close()

        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await Self.enrollGlucometer(client)
            let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
                .acquire(session: "s", node: "n", ttl: .seconds(600)))
            let ingest = PostgresIngest(client: client, logger: testLogger)
            func store(_ value: Double, minutes: Double) async throws -> IngestOutcome {
                let measured = Self.t0.addingTimeInterval(minutes * 60)
                let received = measured.addingTimeInterval(60)
                let decoded = try CanonicalMessageDecoder().decode(payload: glucoseMessage(value, at: measured), deviceID: "g1", receivedAt: received)
                let readings = try decoded.readings.map { StoredReading(observation: try $0.get(), patientID: "p1", receivedAt: received, message: 0) }
                return try await ingest.store(
                    batch: IngestBatch(readings: readings), lease: lease,
                    alerting: BatchAlerting(policy: Self.policy, now: received, incarnation: "pg-test"))
            }
            var outcomes: [IngestOutcome] = []
            for (value, minutes) in Self.batches { outcomes.append(try await store(value, minutes: minutes)) }
            // By hand (README, "Alerts care managers can trust"): the first batch opens a critical
            // task; the second low is another occurrence and confirms it; the high opens a warning
            // task, and the low condition recovers.
            #expect(outcomes.map(\.newReadings) == [1, 1, 1])
            #expect(outcomes.map { $0.alerting.opened[.critical] ?? 0 } == [1, 0, 0])
            #expect(outcomes.map { $0.alerting.opened[.warning] ?? 0 } == [0, 0, 1])
            #expect(outcomes.map(\.alerting.updated) == [0, 1, 0])

            let tasks = try await client.query("SELECT \(unescaped: Self.compared) FROM tasks ORDER BY id", logger: testLogger)
                .collect().map { row in row.makeRandomAccess().map { Self.text($0) }.joined(separator: "|") }
            #expect(tasks.count == 2)
            // vital|direction|priority|status|occurrences|owner|kind|first_reading_id|last_reading_id
            #expect(tasks.first?.hasPrefix("glucose|low|critical|open|2|ana|threshold|1|2|") == true, "\(tasks)")
            #expect(tasks.last?.hasPrefix("glucose|high|warning|open|1|ana|threshold|3|3|") == true, "\(tasks)")
            #expect(tasks == sqliteTasks)

            let events = try await client.query("SELECT task_id, event, actor, reading_id, detail FROM task_events ORDER BY id", logger: testLogger)
                .collect().map { row in row.makeRandomAccess().map { Self.text($0) }.joined(separator: "|") }
            #expect(events.map { $0.split(separator: "|").prefix(2).joined(separator: "|") }
                == ["1|opened", "1|confirmation", "1|updated", "1|recovered", "2|opened"])
            #expect(events == sqliteEvents)

            let bodies = try await client.query("SELECT body, event_id FROM outbox ORDER BY id", logger: testLogger)
                .collect().map { try $0.decode((String, String).self) }
            #expect(bodies.map(\.1) == (1...5).map { "task-event-\($0)-pg-test" })
            let first = try JSONSerialization.jsonObject(with: Data(bodies[0].0.utf8)) as? [String: Any]
            #expect(first?["event"] as? String == "opened")
            #expect((first?["task"] as? [String: Any])?["owner"] as? String == "ana")
            #expect(bodies.map { withoutIncarnation($0.0) } == sqliteBodies)

            let states = try await client.query("SELECT rule, active, level FROM alert_states ORDER BY rule", logger: testLogger)
                .collect().map { try $0.decode((String, Int, String?).self) }
            #expect(states.map(\.0) == ["limit:glucose:high", "limit:glucose:low"])
            #expect(states.map(\.1) == [1, 0])

            // The broker delivers the first message again (not acknowledged before a crash): no new
            // reading, so the rules see nothing and no task or event changes.
            let again = try await store(45, minutes: 0)
            #expect(again.newReadings == 0 && again.alerting == AlertingOutcome())
            #expect(try await rowCount(client, "task_events") == 5)
            #expect(try await rowCount(client, "tasks") == 2)
        }
    }

    /// One message of a scenario: a device's canonical payload, received `delay` seconds after `at`.
    struct Message {
        var device: String
        var at: Date
        /// The `readings` array's members, without `measured_at` (added from `at`).
        var readings: String
        var delay: Double = 60
        var payload: [UInt8] {
            Array(#"{"measured_at":\#(Int64(at.timeIntervalSince1970 * 1000)),"readings":[\#(readings)]}"#.utf8)
        }
    }

    /// What a scenario left in one backend, as text rows to compare.
    struct Result: Equatable {
        var tasks: [String]
        var events: [String]
        var bodies: [String]
        var states: [String]
    }

    /// The tables a scenario's setup fills on SQLite, copied as they are to PostgreSQL (same
    /// columns on both: the parity test), in the order their foreign keys need.
    static let setupTables = [
        "users", "patients", "patient_programs", "devices", "patient_thresholds", "patient_rule_overrides", "monitoring_pauses",
    ]

    /// Runs `messages` through the SQLite ingest after `setup`, copies the setup to a fresh PostgreSQL
    /// database, runs them through the PostgreSQL batch store there, and returns both results.
    static func runBoth(
        setup: (AppDatabase) throws -> Void, _ messages: [Message]
    ) async throws -> (sqlite: Result, postgres: Result) {
        let directory = NSTemporaryDirectory() + "vitalsd-parity-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try AppDatabase.open(path: directory + "/v.sqlite")
        _ = try database.addUser(username: "ana", displayName: "Ana Ruiz", role: .careManager, passwordHash: hash, actor: "test")
        try setup(database)
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        for m in messages {
            let received = m.at.addingTimeInterval(m.delay)
            _ = try await database.ingest(
                [IncomingMessage(topic: "devices/\(m.device)/readings", deviceID: m.device, payload: m.payload, receivedAt: received)],
                pipeline: pipeline, now: received)
        }
        try database.close()
        let queue = try DatabaseQueue(path: directory + "/v.sqlite")
        defer { try? queue.close() }
        func rows(_ sql: String) throws -> [String] {
            try queue.read { db in try Row.fetchAll(db, sql: sql).map { $0.databaseValues.map(text).joined(separator: "|") } }
        }
        func bodies() throws -> [String] {
            try queue.read { db in try String.fetchAll(db, sql: "SELECT body FROM outbox ORDER BY id").map(withoutIncarnation) }
        }
        func copied(_ table: String) throws -> (table: String, columns: [String], values: [[DatabaseValue]]) {
            let all = try queue.read { db in try Row.fetchAll(db, sql: "SELECT * FROM \(table)") }
            return (table, all.first.map { Array($0.columnNames) } ?? [], all.map { Array($0.databaseValues) })
        }
        func devicePatients() throws -> [String: String] {
            try queue.read { db in
                Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, patient_id FROM devices").map { ($0[0] as String, $0[1] as String) })
            }
        }
        let sqlite = Result(
            tasks: try rows("SELECT \(compared) FROM tasks ORDER BY id"),
            events: try rows("SELECT task_id, event, actor, reading_id, detail FROM task_events ORDER BY id"),
            bodies: try bodies(),
            states: try rows("SELECT patient_id, rule, active, level, since FROM alert_states ORDER BY patient_id, rule"))
        let setupRows = try setupTables.map(copied)
        let devices = try devicePatients()

        let postgres = try await ThrowawayPostgres.shared().withDatabase { client, _ in
            for (table, columns, values) in setupRows {
                for row in values {
                    var query = PostgresQuery(unsafeSQL: "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES (\((1...columns.count).map { "$\($0)" }.joined(separator: ", ")))")
                    for value in row {
                        switch value.storage {
                        case .null: query.binds.appendNull()
                        case .int64(let v): query.binds.append(v)
                        case .double(let v): query.binds.append(v)
                        case .string(let v): query.binds.append(v)
                        case .blob: query.binds.appendNull()
                        }
                    }
                    try await client.query(query, logger: testLogger)
                }
            }
            let lease = try #require(try await SessionLeases(client: client, logger: testLogger).acquire(session: "s", node: "n", ttl: .seconds(600)))
            let ingest = PostgresIngest(client: client, logger: testLogger)
            for m in messages {
                let received = m.at.addingTimeInterval(m.delay)
                let decoded = try CanonicalMessageDecoder().decode(payload: m.payload, deviceID: m.device, receivedAt: received)
                let readings = try decoded.readings.map {
                    StoredReading(observation: try $0.get(), patientID: devices[m.device]!, receivedAt: received, message: 0)
                }
                _ = try await ingest.store(
                    batch: IngestBatch(readings: readings), lease: lease,
                    alerting: BatchAlerting(policy: policy, now: received, incarnation: "pg-test"))
            }
            func rows(_ sql: String) async throws -> [String] {
                try await client.query(PostgresQuery(unsafeSQL: sql), logger: testLogger).collect().map { row in
                    row.makeRandomAccess().map { text($0) }.joined(separator: "|")
                }
            }
            return Result(
                tasks: try await rows("SELECT \(compared) FROM tasks ORDER BY id"),
                events: try await rows("SELECT task_id, event, actor, reading_id, detail FROM task_events ORDER BY id"),
                bodies: try await client.query("SELECT body FROM outbox ORDER BY id", logger: testLogger).collect()
                    .map { withoutIncarnation(try $0.decode(String.self)) },
                states: try await rows("SELECT patient_id, rule, active, level, since FROM alert_states ORDER BY patient_id, rule"))
        }
        return (sqlite, postgres)
    }

    @Test("heart failure: 2.5 kg over 5 days with a missed day opens one weight-gain task on both, from the stored weights")
    func weightTrend() async throws {
        let start = Self.t0.addingTimeInterval(-6 * 86_400)
        // Day 3 missed. The 7-day rule sees 82.5 - 80.0 at day 5 (AlertingTests, heartFailureWeights).
        let weights: [(Double, Double)] = [(0, 80.0), (1, 80.5), (2, 81.0), (4, 82.0), (5, 82.5)]
        let (sqlite, postgres) = try await Self.runBoth(setup: { db in
            try db.upsertPatient(Patient(id: "p3", timezone: "UTC", programs: [.heartFailure], careManager: "ana"), actor: "test")
            try db.upsertDevice(Device(id: "s3", kind: .scale, patientID: "p3"), actor: "test")
        }, weights.map { day, kg in
            Message(device: "s3", at: start.addingTimeInterval(day * 86_400), readings: #"{"type":"body_weight","value":\#(kg),"unit":"kg"}"#)
        })
        #expect(postgres.tasks.count == 1)
        #expect(postgres.tasks.first?.hasPrefix("body_weight|high|warning|open|1|ana|trend|") == true, "\(postgres.tasks)")
        #expect(postgres.tasks.first?.contains(
            "|Body weight rose 2.5 kg within 7 days (80 kg to 82.5 kg); rule weight_gain_7d: Body weight rise ≥ 2.26 kg within 7 days|") == true)
        #expect(postgres == sqlite)
    }

    @Test("a patient's own systolic limit opens a critical task below the program's; a reading during a pause changes nothing; the same on both")
    func ownLimitAndPause() async throws {
        let (sqlite, postgres) = try await Self.runBoth(setup: { db in
            try db.upsertPatient(Patient(id: "p2", timezone: "UTC", programs: [.hypertension], careManager: "ana"), actor: "test")
            try db.upsertDevice(Device(id: "c1", kind: .bpCuff, patientID: "p2"), actor: "test")
            try db.setThreshold(patientID: "p2", slot: ThresholdSlot(type: .systolicBP, level: .critical, direction: .high), value: 170, actor: "dr.ng")
            // Paused from t0 + 2 h through the next day (a hospital stay).
            try db.pauseMonitoring(patientID: "p2", through: LocalDate(Self.t0.addingTimeInterval(86_400), in: TimeZone(identifier: "UTC")!),
                                   reason: "hospital stay", actor: "ana", now: Self.t0.addingTimeInterval(7_200))
        }, [
            // 175/95: critical by the own limit 170 (the program's is 180), before the pause.
            Message(device: "c1", at: Self.t0, readings: #"{"type":"systolic_bp","value":175,"unit":"mmHg"},{"type":"diastolic_bp","value":95,"unit":"mmHg"}"#),
            // 190/125 during the pause: stored, no task change.
            Message(device: "c1", at: Self.t0.addingTimeInterval(3 * 3_600), readings: #"{"type":"systolic_bp","value":190,"unit":"mmHg"},{"type":"diastolic_bp","value":125,"unit":"mmHg"}"#),
        ])
        #expect(postgres.tasks.count == 1)
        #expect(postgres.tasks.first?.hasPrefix("blood_pressure|high|critical|open|1|ana|threshold|1|1|") == true, "got \(postgres.tasks)")
        #expect(postgres.tasks.first?.contains("critical limit 170 mmHg") == true, "\(postgres.tasks)")
        #expect(postgres.events.count == 1)
        #expect(postgres == sqlite)
    }

    @Test("a batch under a lost lease opens no task and writes no event")
    func fenced() async throws {
        try await ThrowawayPostgres.shared().withDatabase { client, _ in
            try await enrollTestDevices(client)
            try await client.query("INSERT INTO patient_programs (patient_id, program) VALUES ('p-d1', 'diabetes')", logger: testLogger)
            let leases = SessionLeases(client: client, logger: testLogger)
            let old = try #require(try await leases.acquire(session: "s", node: "a", ttl: .milliseconds(1)))
            try await Task.sleep(for: .milliseconds(20))
            _ = try #require(try await leases.acquire(session: "s", node: "b", ttl: .seconds(600)))
            let measured = Self.t0
            let decoded = try CanonicalMessageDecoder().decode(payload: glucoseMessage(45, at: measured), deviceID: "d1", receivedAt: measured)
            let readings = try decoded.readings.map { StoredReading(observation: try $0.get(), patientID: "p-d1", receivedAt: measured, message: 0) }
            await #expect(throws: LeaseLost.self) {
                try await PostgresIngest(client: client, logger: testLogger).store(
                    batch: IngestBatch(readings: readings), lease: old,
                    alerting: BatchAlerting(policy: Self.policy, now: measured, incarnation: "pg-test"))
            }
            #expect(try await rowCount(client, "readings") == 0)
            #expect(try await rowCount(client, "tasks") == 0)
            #expect(try await rowCount(client, "task_events") == 0)
            #expect(try await rowCount(client, "outbox") == 0)
        }
    }

    /// The columns compared between the backends (ids of readings and tasks count alike from 1 in both).
    static let compared = """
        vital, direction, priority, status, occurrences, owner, kind, first_reading_id, last_reading_id, last_measured_at,
        reason, condition_key, latest_summary, worst_reading_id, worst_summary, worst_measured_at, worst_severity,
        worst_level, opened_at, updated_at, acknowledged_at, escalation_level, next_escalation_at, confirmation,
        confirmation_due_at, data_stale, suppressed_breaches, version
        """

    /// A bcrypt-shaped hash (the schema checks the shape); nobody signs in here.
    static let hash = "$2b$04$" + String(repeating: "a", count: 53)

    /// The care manager ana, her patient p1 (diabetes, UTC) and p1's glucometer g1.
    /// Stores one glucose reading of g1 (patient p1, ``enrollGlucometer(_:)``) under a lease of its own
    /// and runs the rules on it at `received`.
    static func storeGlucose(_ client: PostgresClient, _ value: Double, measured: Date, received: Date) async throws -> IngestOutcome {
        let lease = try #require(try await SessionLeases(client: client, logger: testLogger)
            .acquire(session: "s", node: "n", ttl: .seconds(600)))
        let decoded = try CanonicalMessageDecoder().decode(payload: glucoseMessage(value, at: measured), deviceID: "g1", receivedAt: received)
        let readings = try decoded.readings.map { StoredReading(observation: try $0.get(), patientID: "p1", receivedAt: received, message: 0) }
        return try await PostgresIngest(client: client, logger: testLogger).store(
            batch: IngestBatch(readings: readings), lease: lease, alerting: BatchAlerting(policy: policy, now: received, incarnation: "t"))
    }

    static func enrollGlucometer(_ client: PostgresClient) async throws {
        try await client.query("""
            INSERT INTO users (username, display_name, role, password_hash, created_at, password_changed_at)
            VALUES ('ana', 'Ana Ruiz', 'care_manager', \(hash), 0, 0)
            """, logger: testLogger)
        try await client.query("INSERT INTO patients (id, timezone, created_at, care_manager) VALUES ('p1', 'UTC', 0, 'ana')", logger: testLogger)
        try await client.query("INSERT INTO patient_programs (patient_id, program) VALUES ('p1', 'diabetes')", logger: testLogger)
        try await client.query("INSERT INTO devices (id, kind, patient_id, created_at) VALUES ('g1', 'glucometer', 'p1', 0)", logger: testLogger)
    }

    /// A SQLite value as text: NULL, an integer, a real, or the text itself.
    static func text(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .null: return "NULL"
        case .int64(let v): return String(v)
        case .double(let v): return "\(v)"
        case .string(let s): return s
        case .blob: return "?"
        }
    }

    /// A PostgreSQL cell as ``text(_:)-(DatabaseValue)`` prints a SQLite value.
    static func text(_ cell: PostgresCell) -> String {
        if cell.bytes == nil { return "NULL" }
        if let v = try? cell.decode(Int64.self) { return String(v) }
        if let v = try? cell.decode(Double.self) { return "\(v)" }
        return (try? cell.decode(String.self)) ?? "?"
    }
}
