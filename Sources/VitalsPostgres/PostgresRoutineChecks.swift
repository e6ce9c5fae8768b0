import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain

/// Claims of the jobs that run on one node per interval (routine checks, maintenance): the table
/// `timer_runs` (migration 5) holds each job's last start.
///
/// Every node runs the job's timer; at each turn a node claims the job, and the claim succeeds only
/// when the last start, by any node, is at least `spacing` old. So the job runs about once per
/// interval across the cluster, whichever nodes are alive; when the node that claimed it dies, the
/// next turn of any node runs it.
public enum PostgresTimerRuns {
    /// Claims `job` at `now` for `node`.
    /// - Parameters:
    ///   - spacing: how long after the last start another start is allowed.
    ///   - now: the node's clock; the nodes' clocks should agree to well within `spacing`.
    /// - Returns: true when this node is to run the job now.
    /// - Throws: the server's or connection's error.
    public static func claim(
        _ client: PostgresClient, job: String, node: String, now: Date, spacing: Duration, logger: Logger
    ) async throws -> Bool {
        let nowMS = epochMilliseconds(now)
        let spacingMS = spacing.components.seconds * 1000 + spacing.components.attoseconds / 1_000_000_000_000_000
        let rows = try await client.query("""
            INSERT INTO timer_runs (job, started_at, node) VALUES (\(job), \(nowMS), \(node))
            ON CONFLICT (job) DO UPDATE SET started_at = excluded.started_at, node = excluded.node
            WHERE timer_runs.started_at <= \(nowMS - spacingMS)
            RETURNING 1
            """, logger: logger).collect()
        return !rows.isEmpty
    }
}

/// The routine checks (``RoutineRules``) on PostgreSQL: days of data out of reach for CPT 99454,
/// patients whose devices fell silent (which also flags their open reading tasks as stale, F16), one
/// silent device among working ones, and low batteries. The twin of the SQLite store's
/// `openRoutineTasks`: the same snapshot, the same pure rules, applied by ``PostgresTaskWriter``.
///
/// One transaction per patient, which first takes a transaction-level advisory lock on the patient
/// (``lockKey`` and the patient id's hash), so that two runs that overlap (a run longer than the
/// interval) decide each patient one after the other; the second finds the first's tasks. The
/// schema's unique key on each condition (`tasks_once_per_timer_condition`) stays the safety net.
public struct PostgresRoutineChecks: Sendable {
    /// The first key of the per-patient advisory lock: the bytes of "vtlr" as an int.
    public static let lockKey: Int32 = 0x7674_6C72

    private let client: PostgresClient
    private let logger: Logger

    /// - Parameters:
    ///   - client: a running client on a migrated database.
    ///   - logger: for postgres-nio's query logging.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// One run at `now` over every open episode, then every device with a low battery.
    /// - Parameters:
    ///   - rules: the billing rules (days of data a device period needs).
    ///   - noDataDays: days of silence that make a `no_data` task (`adherence.no_data_days`).
    ///   - lowBatteryPercent: a device whose latest `battery_percent` is at or below this gets one
    ///     routine `device` task a day while it stays low; nil: never.
    ///   - now: the daemon clock's time.
    ///   - incarnation: part of each event's `event_id`.
    /// - Returns: the tasks opened, by kind.
    /// - Throws: the server's or connection's error; the patients decided before it keep their tasks.
    public func run(
        rules: BillingRules, noDataDays: Int, lowBatteryPercent: Double?, now: Date, incarnation: String
    ) async throws -> RoutineSummary {
        let logger = logger
        var summary = RoutineSummary()
        let settings = RoutineRules.Settings(minimumDays: rules.fullSupplyMinimumDays, noDataDays: noDataDays)
        let episodes = try await client.query("""
            SELECT e.id, e.patient_id, e.start_date, p.timezone FROM episodes e JOIN patients p ON p.id = e.patient_id
            WHERE e.end_date IS NULL ORDER BY e.patient_id, e.id
            """, logger: logger).decode((Int64, String, String, String).self).collected()
        for (episodeID, patientID, start, zoneName) in episodes {
            guard let episodeStart = LocalDate(start), let zone = TimeZone(identifier: zoneName) else { continue }
            let changes = try await transaction(locking: patientID) { connection -> [TaskChange] in
                let snapshot = try await Self.snapshot(
                    connection, patientID: patientID, timeZone: zone, episodeID: episodeID, episodeStart: episodeStart,
                    rules: rules, now: now, logger: logger)
                let changes = RoutineRules.evaluate(snapshot, settings: settings, now: now)
                try await PostgresTaskWriter.apply(connection, changes, incarnation: incarnation, logger: logger)
                return changes
            }
            summary.count(changes)
        }
        guard let limit = lowBatteryPercent else { return summary }
        let low = try await client.query("""
            SELECT s.device_id, d.patient_id, d.kind, s.value FROM device_status s JOIN devices d ON d.id = s.device_id
            WHERE s.name = 'battery_percent' AND s.value <= \(limit) AND d.patient_id IS NOT NULL ORDER BY s.device_id
            """, logger: logger).decode((String, String, String, Double).self).collected()
        for (deviceID, patientID, kind, percent) in low {
            let changes = try await transaction(locking: patientID) { connection -> [TaskChange] in
                let (keys, unresolved) = try await Self.routineState(connection, patientID: patientID, logger: logger)
                let changes = RoutineRules.lowBattery(
                    LowBattery(deviceID: deviceID, patientID: patientID, kind: kind, percent: percent, raisedKeys: keys,
                               unresolved: unresolved), now: now)
                try await PostgresTaskWriter.apply(connection, changes, incarnation: incarnation, logger: logger)
                return changes
            }
            summary.lowBatteryTasks += changes.count
        }
        return summary
    }

    /// `body` in a transaction that first waits for the patient's advisory lock.
    private func transaction<T: Sendable>(
        locking patientID: String, _ body: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let logger = logger
        return try await unwrappingTransactionError {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey), hashtext(\(patientID)))", logger: logger)
                return try await body(connection)
            }
        }
    }

    /// What the routine rules need about one open episode's patient (the SQLite store's
    /// `adherenceSnapshot`).
    static func snapshot(
        _ connection: PostgresConnection, patientID: String, timeZone zone: TimeZone, episodeID: Int64, episodeStart: LocalDate,
        rules: BillingRules, now: Date, logger: Logger
    ) async throws -> AdherenceSnapshot {
        let today = LocalDate(now, in: zone)
        let period = episodeStart <= today
            ? rules.devicePeriods(episodeStart: episodeStart, episodeEnd: nil, through: today).last : nil
        var dataDays = Set<LocalDate>()
        if let period {
            // The days with a transmitted reading, from quarter hours: every time zone in use today
            // changes its date on a quarter hour, so a quarter hour's start has the date of all of it,
            // and a CGM's 96 quarter hours a day are read rather than its 288 readings.
            let from = epochMilliseconds(period.start.start(in: zone)), to = epochMilliseconds(today.adding(days: 1).start(in: zone))
            let calendar = LocalDate.calendar(zone)
            for try await quarter in try await connection.query("""
                SELECT DISTINCT measured_at / 900000 FROM readings
                WHERE patient_id = \(patientID) AND source = 'device' AND measured_at >= \(from) AND measured_at < \(to)
                """, logger: logger).decode(Int64.self) {
                dataDays.insert(LocalDate(dateFromEpochMilliseconds(quarter * 900_000), calendar: calendar))
            }
        }
        var devices: [AdherenceSnapshot.DeviceActivity] = []
        for try await (id, kind, last) in try await connection.query("""
            SELECT d.id, d.kind, (SELECT max(measured_at) FROM readings r WHERE r.device_id = d.id AND r.source = 'device')
            FROM devices d WHERE d.patient_id = \(patientID) ORDER BY d.id
            """, logger: logger).decode((String, String, Int64?).self) {
            devices.append(.init(deviceID: id, kind: kind, lastReadingAt: last.map(dateFromEpochMilliseconds)))
        }
        let last = try await connection.query("""
            SELECT max(measured_at) FROM readings WHERE patient_id = \(patientID) AND source = 'device'
            """, logger: logger).decode(Int64?.self).collected().first ?? nil
        let (keys, unresolved) = try await routineState(connection, patientID: patientID, logger: logger)
        var snapshot = AdherenceSnapshot(
            patientID: patientID, timeZone: zone, episodeID: episodeID, episodeStart: episodeStart, period: period,
            dataDaysSoFar: dataDays.count, todayHasData: dataDays.contains(today), lastReadingAt: last.map(dateFromEpochMilliseconds),
            devices: devices, raisedKeys: keys, unresolved: unresolved)
        let nowMS = epochMilliseconds(now)
        snapshot.paused = try await !connection.query("""
            SELECT 1 FROM monitoring_pauses
            WHERE patient_id = \(patientID) AND starts_at <= \(nowMS) AND \(nowMS) < least(ends_at, coalesce(closed_at, ends_at))
            """, logger: logger).collected().isEmpty
        return snapshot
    }

    /// The condition keys a patient's tasks were ever raised with, and their unresolved tasks.
    static func routineState(
        _ connection: PostgresConnection, patientID: String, logger: Logger
    ) async throws -> (keys: Set<String>, unresolved: [CareTask]) {
        let keys = try await connection.query("""
            SELECT condition_key FROM tasks WHERE patient_id = \(patientID) AND condition_key IS NOT NULL
            """, logger: logger).decode(String.self).collected()
        var unresolved: [CareTask] = []
        var query = PostgresQuery(unsafeSQL: """
            SELECT \(PostgresTaskWriter.taskColumns) FROM tasks WHERE patient_id = $1 AND status <> 'resolved' ORDER BY id FOR UPDATE
            """)
        query.binds.append(patientID)
        for try await row in try await connection.query(query, logger: logger) {
            unresolved.append(try PostgresTaskWriter.task(row))
        }
        return (Set(keys), unresolved)
    }
}
