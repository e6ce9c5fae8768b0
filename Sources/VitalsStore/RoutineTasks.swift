import Foundation
import GRDB
import VitalsAlerting
import VitalsDomain

extension AppDatabase {
    /// Opens the routine tasks that timers owe (``RoutineRules``), for every open episode: days of
    /// data out of reach for CPT 99454, silence of the patient's devices (which also flags their open
    /// reading tasks as stale, F16) or of one device; and, for every device, a low battery.
    ///
    /// Safe to run as often as wanted, and after a restart: each condition has a key (episode and
    /// period, or the silence's start) that the rules raise, and the schema admits, only once, ever.
    /// One transaction per patient, so that a run never holds the write lock for long.
    ///
    /// - Parameters:
    ///   - noDataDays: days of silence that make a `no_data` task (default 3).
    ///   - lowBatteryPercent: a device whose latest `battery_percent` status is at or below this gets
    ///     one routine `device` task a day (`battery:<device>`) while it stays low; nil: never.
    ///   - now: the daemon clock's time.
    public func openRoutineTasks(
        rules: BillingRules, noDataDays: Int = 3, lowBatteryPercent: Double? = 15, now: Date
    ) async throws -> RoutineSummary {
        var summary = RoutineSummary()
        let settings = RoutineRules.Settings(minimumDays: rules.fullSupplyMinimumDays, noDataDays: noDataDays)
        let open = try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT id, patient_id, start_date FROM episodes WHERE end_date IS NULL ORDER BY patient_id")
                .compactMap { r -> Episode? in
                    LocalDate(r["start_date"] as String).map {
                        Episode(id: r["id"], patientID: r["patient_id"], startDate: $0, endDate: nil, billingPractitioner: "")
                    }
                }
        }
        for episode in open {
            let changes = try await writer.write { db -> [TaskChange] in
                guard let snapshot = try Self.adherenceSnapshot(db, episode: episode, rules: rules, now: now) else { return [] }
                let changes = RoutineRules.evaluate(snapshot, settings: settings, now: now)
                try Self.apply(db, changes, incarnation: incarnation)
                return changes
            }
            summary.count(changes)
        }
        if let limit = lowBatteryPercent {
            summary.lowBatteryTasks = try await writer.write { db in
                let low = try Row.fetchAll(db, sql: """
                    SELECT s.device_id, d.patient_id, d.kind, s.value FROM device_status s JOIN devices d ON d.id = s.device_id
                    WHERE s.name = 'battery_percent' AND s.value <= ? ORDER BY s.device_id
                    """, arguments: [limit])
                var opened = 0
                for row in low {
                    let patientID: String = row["patient_id"]
                    let (keys, unresolved) = try Self.routineState(db, patientID: patientID)
                    let changes = RoutineRules.lowBattery(
                        LowBattery(deviceID: row["device_id"], patientID: patientID, kind: row["kind"], percent: row["value"],
                                   raisedKeys: keys, unresolved: unresolved), now: now)
                    try Self.apply(db, changes, incarnation: incarnation)
                    opened += changes.count
                }
                return opened
            }
        }
        return summary
    }

    /// The condition keys a patient's tasks were ever raised with, and their unresolved tasks.
    static func routineState(_ db: Database, patientID: String) throws -> (keys: Set<String>, unresolved: [CareTask]) {
        let keys = try String.fetchSet(
            db.cachedStatement(sql: "SELECT condition_key FROM tasks WHERE patient_id = ? AND condition_key IS NOT NULL"),
            arguments: [patientID])
        let unresolved = try Row.fetchAll(
            db.cachedStatement(sql: "SELECT \(CareTask.columns) FROM tasks WHERE patient_id = ? AND status <> 'resolved'"), arguments: [patientID]
        ).map(CareTask.init(row:))
        return (keys, unresolved)
    }

    /// What the routine rules need about one open episode's patient.
    static func adherenceSnapshot(_ db: Database, episode: Episode, rules: BillingRules, now: Date) throws -> AdherenceSnapshot? {
        guard let patient = try fetchPatient(db, id: episode.patientID), let zone = TimeZone(identifier: patient.timezone) else { return nil }
        let adherence = try adherence(db, episode: episode, rules: rules, today: now)
        let last = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT max(measured_at) FROM readings WHERE patient_id = ? AND source = 'device'"),
            arguments: [episode.patientID])
        let devices = try Row.fetchAll(
            db.cachedStatement(sql: """
                SELECT d.id, d.kind, (SELECT max(measured_at) FROM readings r WHERE r.device_id = d.id AND r.source = 'device') AS last
                FROM devices d WHERE d.patient_id = ? ORDER BY d.id
                """), arguments: [episode.patientID]
        ).map {
            AdherenceSnapshot.DeviceActivity(
                deviceID: $0["id"], kind: $0["kind"], lastReadingAt: ($0["last"] as Int64?).map(dateFromEpochMilliseconds))
        }
        let (keys, unresolved) = try routineState(db, patientID: episode.patientID)
        var snapshot = AdherenceSnapshot(
            patientID: episode.patientID, timeZone: zone, episodeID: episode.id, episodeStart: episode.startDate,
            period: adherence?.period, dataDaysSoFar: adherence?.dataDaysSoFar ?? 0,
            todayHasData: adherence.map { $0.lastDataDay == LocalDate(now, in: zone) } ?? false,
            lastReadingAt: last.map(dateFromEpochMilliseconds), devices: devices, raisedKeys: keys, unresolved: unresolved)
        snapshot.paused = try monitoringPauseIntervals(db, patientIDsJSON: try jsonArray([episode.patientID]))
            .contains { $0.1.start <= now && now < $0.1.end }
        return snapshot
    }
}
