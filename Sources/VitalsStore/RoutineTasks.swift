import Foundation
import GRDB
import VitalsDomain

extension AppDatabase {
    /// What one run of the routine checks opened.
    public struct RoutineSummary: Sendable, Hashable {
        public var daysOfDataTasks = 0
        public var noDataTasks = 0
        /// `device` tasks for one silent device of a patient whose other devices still send.
        public var silentDeviceTasks = 0
        /// `device` tasks for a battery at or below the limit.
        public var lowBatteryTasks = 0
        public init() {}
    }

    /// Opens the routine tasks that timers owe, for every open episode:
    /// - one `days_of_data` task per patient and device period once 16 days of data (CPT 99454) can no
    ///   longer be reached (`days_with_data + days_remaining < 16`, `clinical-and-billing.md` §3.2);
    /// - one `no_data` task per silence once a patient's devices have sent nothing for `noDataDays`
    ///   days (since their last reading, or since the episode start if none).
    ///
    /// Safe to run as often as wanted, and after a restart: each condition has a key (episode and
    /// period, or the silence's start) that the schema lets into `tasks` only once, ever.
    ///
    /// - Parameters:
    ///   - noDataDays: days of silence that make a `no_data` task (default 3).
    ///   - now: the current instant.
    ///   - lowBatteryPercent: a device whose latest `battery_percent` status is at or below this gets
    ///     one routine `device` task a day (`battery:<device>`) while it stays low; nil: never.
    public func openRoutineTasks(
        rules: BillingRules, noDataDays: Int = 3, lowBatteryPercent: Double? = 15, now: Date = Date()
    ) throws -> RoutineSummary {
        var summary = RoutineSummary()
        let adherence = Dictionary(try adherence(rules: rules, today: now).map { ($0.patientID, $0) }, uniquingKeysWith: { a, _ in a })
        let open = try episodes().filter { $0.endDate == nil }
        try writer.write { db in
            for episode in open {
                guard let patient = try Self.fetchPatient(db, id: episode.patientID),
                      let zone = TimeZone(identifier: patient.timezone) else { continue }
                if let a = adherence[episode.patientID], !a.reachable16 {
                    let reason = "Days of data: 16 can no longer be reached in period \(a.period.number) (\(a.period.start) to \(a.period.end)): \(a.dataDaysSoFar) so far, \(a.daysLeft) days left"
                    if try Self.insertRoutineTask(db, patientID: episode.patientID, kind: .daysOfData, vital: "days_of_data",
                                                  key: "episode \(episode.id) period \(a.period.number)", reason: reason, now: now) {
                        summary.daysOfDataTasks += 1
                    }
                }
                let lastMS = try Int64.fetchOne(
                    db, sql: "SELECT max(measured_at) FROM readings WHERE patient_id = ? AND source = 'device'",
                    arguments: [episode.patientID])
                let since = lastMS.map(dateFromEpochMilliseconds) ?? episode.startDate.start(in: zone)
                let silentDays = now.timeIntervalSince(since) / 86_400
                if silentDays >= Double(noDataDays) {
                    let what = lastMS.map { "since the last reading on \(LocalDate(dateFromEpochMilliseconds($0), in: zone))" }
                        ?? "since the episode started on \(episode.startDate)"
                    let key = lastMS.map { "silent after \($0)" } ?? "silent from episode \(episode.id) start"
                    if try Self.insertRoutineTask(db, patientID: episode.patientID, kind: .noData, vital: "no_data", key: key,
                                                  reason: "No device data for \(Int(silentDays)) days \(what)", now: now) {
                        summary.noDataTasks += 1
                        try Self.markStale(db, patientID: episode.patientID, now: now)
                    }
                    continue
                }
                // The patient still sends, but one of their devices may have gone quiet (a dead scale
                // next to a working cuff): one device task per silence.
                let devices = try Row.fetchAll(db, sql: """
                    SELECT d.id, d.kind, (SELECT max(measured_at) FROM readings r WHERE r.device_id = d.id AND r.source = 'device') AS last
                    FROM devices d WHERE d.patient_id = ? ORDER BY d.id
                    """, arguments: [episode.patientID])
                for device in devices {
                    let id: String = device["id"]
                    let last: Int64? = device["last"]
                    let since = last.map(dateFromEpochMilliseconds) ?? episode.startDate.start(in: zone)
                    let days = now.timeIntervalSince(since) / 86_400
                    guard days >= Double(noDataDays) else { continue }
                    let kind: String = device["kind"]
                    let key = "device \(id) " + (last.map { "silent after \($0)" } ?? "silent from episode \(episode.id) start")
                    if try Self.insertRoutineTask(
                        db, patientID: episode.patientID, kind: .device, vital: "device:\(id)", key: key,
                        reason: "Device \(id) (\(kind)) has sent no data for \(Int(days)) days; the patient's other devices still send",
                        now: now) {
                        summary.silentDeviceTasks += 1
                    }
                }
            }
        }
        if let limit = lowBatteryPercent {
            try writer.write { db in
                let low = try Row.fetchAll(db, sql: """
                    SELECT s.device_id, d.patient_id, d.kind, s.value FROM device_status s JOIN devices d ON d.id = s.device_id
                    WHERE s.name = 'battery_percent' AND s.value <= ? ORDER BY s.device_id
                    """, arguments: [limit])
                let day = LocalDate(now, in: TimeZone(identifier: "UTC")!)
                for row in low {
                    let id: String = row["device_id"]
                    let kind: String = row["kind"]
                    let value: Double = row["value"]
                    if try Self.insertRoutineTask(
                        db, patientID: row["patient_id"], kind: .device, vital: "battery:\(id)", key: "battery \(id) low on \(day)",
                        reason: "Device \(id) (\(kind)) battery at \(Observation.format(value)) %; replace or charge it before it stops sending",
                        now: now) {
                        summary.lowBatteryTasks += 1
                    }
                }
            }
        }
        return summary
    }

    /// Flags the patient's unresolved reading tasks as resting on stale data (F16): silence does not
    /// clear a high alert, but the care manager sees that no newer reading exists.
    private static func markStale(_ db: Database, patientID: String, now: Date) throws {
        let ids = try Int64.fetchAll(
            db, sql: """
                SELECT id FROM tasks WHERE patient_id = ? AND status <> 'resolved' AND kind IN ('threshold', 'trend') AND data_stale = 0
                """, arguments: [patientID])
        let ms = epochMilliseconds(now)
        for id in ids {
            try db.execute(sql: "UPDATE tasks SET data_stale = 1, updated_at = ? WHERE id = ?", arguments: [ms, id])
            try db.execute(
                sql: "INSERT INTO task_events(task_id, at, event, actor, detail) VALUES (?, ?, 'data_stale', 'vitalsd', 'no_data')",
                arguments: [id, ms])
        }
    }

    /// Inserts a routine task unless its key was ever raised, or an unresolved task of its kind exists.
    /// - Returns: true when a task was opened.
    private static func insertRoutineTask(
        _ db: Database, patientID: String, kind: TaskKind, vital: String, key: String, reason: String, now: Date
    ) throws -> Bool {
        let ms = epochMilliseconds(now)
        try db.execute(
            sql: """
                INSERT INTO tasks(patient_id, kind, vital, direction, priority, status, reason, condition_key, opened_at, updated_at)
                VALUES (?, ?, ?, 'low', 'routine', 'open', ?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                """,
            arguments: [patientID, kind.rawValue, vital, reason, key, ms, ms])
        guard db.changesCount > 0 else { return false }
        try db.execute(
            sql: "INSERT INTO task_events(task_id, at, event, actor, detail) VALUES (?, ?, 'opened', 'vitalsd', ?)",
            arguments: [db.lastInsertedRowID, ms, kind.rawValue])
        return true
    }
}
