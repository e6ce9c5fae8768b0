import Foundation
import GRDB
import VitalsDomain

/// One reading as a chart plots it: its canonical value at its measurement time.
public struct ChartPoint: Sendable, Hashable {
    /// `readings.id`.
    public var readingID: Int64
    public var measuredAt: Date
    /// In the type's ``VitalType/canonicalUnit``.
    public var value: Double

    /// A point of reading `readingID`; `value` in the canonical unit.
    public init(readingID: Int64, measuredAt: Date, value: Double) {
        self.readingID = readingID
        self.measuredAt = measuredAt
        self.value = value
    }
}

/// What a patient's chart draws over a window: the readings of each vital, the readings that opened
/// or updated a task (the chart's markers), and the patient's own limits and trend-rule changes (with
/// the configured policy, the limits in force).
public struct PatientChartData: Sendable {
    /// Readings by type, oldest first (measurement time), in the window.
    public var series: [VitalType: [ChartPoint]]
    /// Reading id → the task it opened or updated (the latest such task), for readings in the window.
    public var taskMarkers: [Int64: Int64]
    /// The patient's own limits, by slot.
    public var overrides: [ThresholdSlot: Double]
    /// The patient's changes to trend rules, by rule id.
    public var ruleOverrides: [String: RuleOverride]
}

extension AppDatabase {
    /// A patient's chart data for readings measured in [`from`, `to`), read in one transaction: one
    /// query for the readings, one for the task markers (and the patient's own limits by key).
    ///
    /// - Throws: GRDB errors.
    public func chartData(patientID: String, from: Date, to: Date) async throws -> PatientChartData {
        try await writer.read { db in
            var series: [VitalType: [ChartPoint]] = [:]
            // By position: a 3-month CGM window is about 26,000 rows.
            let rows = try Row.fetchCursor(
                db.cachedStatement(sql: """
                    SELECT type, id, measured_at, canonical_value FROM readings
                    WHERE patient_id = ?1 AND measured_at >= ?2 AND measured_at < ?3
                    ORDER BY measured_at, id
                    """),
                arguments: [patientID, epochMilliseconds(from), epochMilliseconds(to)])
            var typeByName: [String: VitalType] = [:]
            while let row = try rows.next() {
                let name: String = row[0]
                let type: VitalType
                if let known = typeByName[name] {
                    type = known
                } else {
                    guard let parsed = VitalType(rawValue: name) else { continue }
                    typeByName[name] = parsed
                    type = parsed
                }
                series[type, default: []].append(
                    ChartPoint(readingID: row[1], measuredAt: dateFromEpochMilliseconds(row[2]), value: row[3]))
            }
            var markers: [Int64: Int64] = [:]
            for row in try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT e.reading_id, e.task_id FROM tasks t
                    JOIN task_events e ON e.task_id = t.id
                    JOIN readings r ON r.id = e.reading_id
                    WHERE t.patient_id = ?1 AND e.event IN ('opened', 'updated')
                      AND r.measured_at >= ?2 AND r.measured_at < ?3
                    ORDER BY e.id
                    """),
                arguments: [patientID, epochMilliseconds(from), epochMilliseconds(to)]) {
                markers[row[0]] = row[1]
            }
            return PatientChartData(
                series: series, taskMarkers: markers, overrides: try Self.thresholdOverrides(db, patientID: patientID),
                ruleOverrides: try Self.ruleOverrides(db, patientID: patientID))
        }
    }

    /// A page of a patient's logbook: readings measured in [`from`, `to`), newest first, with the
    /// number of readings in the window; and the device events (error codes, HI/LO) of the patient's
    /// devices in the same window, newest first (at most `limit`).
    ///
    /// - Parameters:
    ///   - limit: readings per page (and most device events).
    ///   - offset: readings skipped (page × limit).
    /// - Throws: GRDB errors.
    public func logbook(
        patientID: String, from: Date, to: Date, limit: Int, offset: Int = 0
    ) async throws -> (readings: [ReadingRow], total: Int, events: [StoredDeviceEvent]) {
        try await writer.read { db in
            let window: StatementArguments = [patientID, epochMilliseconds(from), epochMilliseconds(to)]
            let readings = try Self.fetchReadingRows(db, sql: """
                WHERE patient_id = ?1 AND measured_at >= ?2 AND measured_at < ?3
                ORDER BY measured_at DESC, id DESC LIMIT ?4 OFFSET ?5
                """, arguments: window + [limit, offset])
            let total = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM readings WHERE patient_id = ?1 AND measured_at >= ?2 AND measured_at < ?3",
                arguments: window) ?? 0
            let events = try Self.fetchDeviceEvents(db, where: """
                device_id IN (SELECT id FROM devices WHERE patient_id = ?1)
                  AND coalesce(measured_at, received_at) >= ?2 AND coalesce(measured_at, received_at) < ?3
                """, arguments: window + [limit])
            return (readings, total, events)
        }
    }

    /// Every reading of a patient measured in [`from`, `to`), oldest first, for a CSV download.
    /// - Throws: GRDB errors.
    public func readingRows(patientID: String, from: Date, to: Date) async throws -> [ReadingRow] {
        try await writer.read { db in
            try Self.fetchReadingRows(db, sql: """
                WHERE patient_id = ?1 AND measured_at >= ?2 AND measured_at < ?3 ORDER BY measured_at, id
                """, arguments: [patientID, epochMilliseconds(from), epochMilliseconds(to)])
        }
    }
}

/// One of a patient's devices as the chart's devices panel shows it.
public struct DeviceOverview: Sendable {
    public var device: Device
    /// The measurement time of its newest reading.
    public var lastReadingAt: Date?
    /// Its latest telemetry (battery, signal, …), as `device status` shows it.
    public var status: [StoredDeviceStatus]
    /// Its newest error codes and HI/LO markers, newest first, as `device events` shows them.
    public var events: [StoredDeviceEvent]
}

extension AppDatabase {
    /// The patient's devices with their newest reading, telemetry and events, read in one transaction.
    /// - Parameter eventLimit: events per device.
    /// - Throws: GRDB errors.
    public func deviceOverview(patientID: String, eventLimit: Int = 5) async throws -> [DeviceOverview] {
        let loincCodes = try Self.jsonArray(Set(VitalType.allCases.map(\.loinc)))
        return try await writer.read { db in
            try Self.fetchDevices(db, patientID: patientID).map { device in
                // Per LOINC code, so that each maximum is one step down the (device_id, loinc, measured_at) key.
                let last = try Int64.fetchOne(
                    db, sql: """
                        SELECT max(m) FROM (SELECT (SELECT max(measured_at) FROM readings r WHERE r.device_id = ?1 AND r.loinc = codes.value) AS m
                                            FROM json_each(?2) AS codes)
                        """, arguments: [device.id, loincCodes])
                return DeviceOverview(
                    device: device, lastReadingAt: last.map(dateFromEpochMilliseconds),
                    status: try Self.fetchDeviceStatus(db, deviceID: device.id),
                    events: try Self.fetchDeviceEvents(db, where: "device_id = ?1", arguments: [device.id, eventLimit]))
            }
        }
    }
}

/// A patient's history for the chart's timeline: the events and notes of all their tasks, their time
/// entries (with voids), the changes to their limits and trend rules, and the pauses of their monitoring.
public struct PatientTimeline: Sendable {
    /// A task event with the task it belongs to.
    public struct Event: Sendable, Hashable {
        public var taskID: Int64
        /// The task's condition (`glucose`, `blood_pressure`, `no_data`, …) and direction.
        public var vital: String
        public var direction: ThresholdDirection
        public var event: TaskEvent
    }

    /// A note with the task it belongs to.
    public struct Note: Sendable, Hashable {
        public var taskID: Int64
        public var note: TaskNote
    }

    /// Newest first, at most the limit asked for.
    public var events: [Event]
    public var notes: [Note]
    /// Time entries and their voids, newest first.
    public var timeEntries: [TimeEntry]
    /// Audit entries `threshold.set`, `threshold.clear`, `rule.override`, `monitoring.pause` and
    /// `monitoring.resume` of the patient, newest first.
    public var thresholdChanges: [AuditEntry]
    /// The patient's monitoring pauses, newest first.
    public var pauses: [MonitoringPause] = []
}

extension AppDatabase {
    /// The newest `limit` items of each kind of a patient's timeline, read in one transaction.
    /// - Throws: GRDB errors.
    public func patientTimeline(patientID: String, limit: Int = 100) async throws -> PatientTimeline {
        try await writer.read { db in
            let events = try Row.fetchAll(
                db, sql: """
                    SELECT e.task_id, t.vital, t.direction, e.at, e.event, e.actor, e.reading_id, e.detail
                    FROM tasks t JOIN task_events e ON e.task_id = t.id
                    WHERE t.patient_id = ? ORDER BY e.at DESC, e.id DESC LIMIT ?
                    """, arguments: [patientID, limit]
            ).map { r in
                PatientTimeline.Event(
                    taskID: r["task_id"], vital: r["vital"], direction: ThresholdDirection(rawValue: r["direction"]) ?? .high,
                    event: TaskEvent(at: dateFromEpochMilliseconds(r["at"]), event: r["event"], actor: r["actor"],
                                     readingID: r["reading_id"], detail: r["detail"]))
            }
            let notes = try Row.fetchAll(
                db, sql: """
                    SELECT n.task_id, n.id, n.at, n.author, n.text FROM tasks t JOIN task_notes n ON n.task_id = t.id
                    WHERE t.patient_id = ? ORDER BY n.at DESC, n.id DESC LIMIT ?
                    """, arguments: [patientID, limit]
            ).map { r in
                PatientTimeline.Note(taskID: r["task_id"], note: TaskNote(
                    id: r["id"], at: dateFromEpochMilliseconds(r["at"]), author: r["author"], text: r["text"]))
            }
            let time = try Row.fetchAll(
                db, sql: """
                    SELECT e.*, EXISTS (SELECT 1 FROM time_entries v WHERE v.voids_entry_id = e.id) AS voided
                    FROM time_entries e WHERE e.patient_id = ? ORDER BY e.performed_at DESC, e.id DESC LIMIT ?
                    """, arguments: [patientID, limit]
            ).map(TimeEntry.init(row:))
            let changes = try Row.fetchAll(
                db, sql: """
                    SELECT * FROM audit_log
                    WHERE target_type = 'patient' AND target_id = ? AND action IN ('threshold.set', 'threshold.clear', 'rule.override', 'monitoring.pause', 'monitoring.resume')
                    ORDER BY id DESC LIMIT ?
                    """, arguments: [patientID, limit]
            ).map(AuditEntry.init(row:))
            let pauses = try Row.fetchAll(
                db, sql: "SELECT * FROM monitoring_pauses WHERE patient_id = ? ORDER BY starts_at DESC, id DESC LIMIT ?",
                arguments: [patientID, limit]
            ).map(MonitoringPause.init(row:))
            return PatientTimeline(events: events, notes: notes, timeEntries: time, thresholdChanges: changes, pauses: pauses)
        }
    }
}
