import Foundation
import GRDB
import VitalsDomain

/// A pause of a patient's monitoring (hospital stay, travel): from its start until the end of its end
/// date in the patient's time zone, or until it was resumed. While it runs, readings are stored and
/// shown, and the rules raise no alert task (``VitalsAlerting/AlertEngine``).
public struct MonitoringPause: Sendable, Hashable, Codable {
    public var id: Int64
    public var patientID: String
    public var startsAt: Date
    /// The last paused local date (inclusive).
    public var endDate: LocalDate
    /// The first instant after ``endDate`` in the patient's time zone.
    public var endsAt: Date
    public var reason: String
    public var createdBy: String
    /// When it was closed: resumed early, or closed after its end passed (``closedBy`` `expired`).
    public var closedAt: Date?
    public var closedBy: String?

    /// When the pause stopped, or stops, applying.
    public var effectiveEnd: Date { min(endsAt, closedAt ?? endsAt) }

    /// Whether the pause applies at `instant`.
    public func isActive(at instant: Date) -> Bool { startsAt <= instant && instant < effectiveEnd }

    init(row r: Row) {
        id = r["id"]
        patientID = r["patient_id"]
        startsAt = dateFromEpochMilliseconds(r["starts_at"])
        endDate = LocalDate(r["end_date"] as String) ?? LocalDate(year: 2000, month: 1, day: 1)!
        endsAt = dateFromEpochMilliseconds(r["ends_at"])
        reason = r["reason"]
        createdBy = r["created_by"]
        closedAt = (r["closed_at"] as Int64?).map(dateFromEpochMilliseconds)
        closedBy = r["closed_by"]
    }
}

/// A pause or resume that cannot be made.
public struct MonitoringPauseError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension AppDatabase {
    /// Pauses a patient's monitoring from `now` through `endDate` (inclusive, patient's time zone),
    /// with a reason; audited as `monitoring.pause`.
    /// - Throws: ``MonitoringPauseError`` when the patient is unknown, a pause already runs, the end
    ///   date is before today or more than 366 days ahead, or the reason is empty.
    @discardableResult
    public func pauseMonitoring(patientID: String, through endDate: LocalDate, reason: String, actor: String, now: Date = Date()) throws -> MonitoringPause {
        try writer.write { db in try Self.pauseMonitoring(db, patientID: patientID, through: endDate, reason: reason, actor: actor, now: now) }
    }

    /// ``pauseMonitoring(patientID:through:reason:actor:now:)`` for async callers (the workspace).
    @discardableResult
    public func pauseMonitoringAsync(patientID: String, through endDate: LocalDate, reason: String, actor: String, now: Date) async throws -> MonitoringPause {
        try await writer.write { db in try Self.pauseMonitoring(db, patientID: patientID, through: endDate, reason: reason, actor: actor, now: now) }
    }

    /// Ends a patient's running pause now; audited as `monitoring.resume`.
    /// - Throws: ``MonitoringPauseError`` when no pause runs.
    @discardableResult
    public func resumeMonitoring(patientID: String, actor: String, now: Date = Date()) throws -> MonitoringPause {
        try writer.write { db in try Self.resumeMonitoring(db, patientID: patientID, actor: actor, now: now) }
    }

    /// ``resumeMonitoring(patientID:actor:now:)`` for async callers (the workspace).
    @discardableResult
    public func resumeMonitoringAsync(patientID: String, actor: String, now: Date) async throws -> MonitoringPause {
        try await writer.write { db in try Self.resumeMonitoring(db, patientID: patientID, actor: actor, now: now) }
    }

    /// A patient's pauses, newest first.
    public func monitoringPauses(patientID: String) async throws -> [MonitoringPause] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM monitoring_pauses WHERE patient_id = ? ORDER BY starts_at DESC, id DESC", arguments: [patientID])
                .map(MonitoringPause.init(row:))
        }
    }

    /// A reading stored while monitoring was paused, as the patient page lists it.
    public struct PausedReading: Sendable, Hashable {
        /// The vital type's raw value, e.g. `glucose`.
        public var type: String
        /// As received, in ``unit``.
        public var value: Double
        public var unit: String
        public var measuredAt: Date
    }

    /// The readings measured since `start` (a pause's start), newest first, at most `limit`, and how many there are.
    public func readingsSince(patientID: String, start: Date, limit: Int = 5) async throws -> (count: Int, latest: [PausedReading]) {
        try await writer.read { db in
            let count = try Int.fetchOne(
                db, sql: "SELECT count(*) FROM readings WHERE patient_id = ? AND measured_at >= ?",
                arguments: [patientID, epochMilliseconds(start)]) ?? 0
            let latest = try Row.fetchAll(
                db,
                sql: """
                    SELECT type, value, unit, measured_at FROM readings WHERE patient_id = ? AND measured_at >= ?
                    ORDER BY measured_at DESC, id DESC LIMIT ?
                    """,
                arguments: [patientID, epochMilliseconds(start), limit]
            ).map { PausedReading(type: $0[0], value: $0[1], unit: $0[2], measuredAt: dateFromEpochMilliseconds($0[3])) }
            return (count, latest)
        }
    }

    static func pauseMonitoring(
        _ db: Database, patientID: String, through endDate: LocalDate, reason: String, actor: String, now: Date
    ) throws -> MonitoringPause {
        guard let patient = try fetchPatient(db, id: patientID) else { throw MonitoringPauseError("patient \(patientID) is not enrolled") }
        let reason = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reason.isEmpty else { throw MonitoringPauseError("a pause needs a reason (hospital stay, travel, …)") }
        guard reason.count <= 500 else { throw MonitoringPauseError("the reason is longer than 500 characters") }
        let zone = TimeZone(identifier: patient.timezone) ?? .gmt
        let today = LocalDate(now, in: zone)
        guard endDate >= today else { throw MonitoringPauseError("the end date \(endDate) is before today (\(today) in \(patient.timezone))") }
        guard endDate.days(since: today) <= 366 else { throw MonitoringPauseError("a pause lasts at most 366 days; end the episode instead") }
        let nowMS = epochMilliseconds(now)
        // A pause whose end has passed is closed by the time it ended, so that a new one can start.
        try db.execute(
            sql: "UPDATE monitoring_pauses SET closed_at = ends_at, closed_by = 'expired' WHERE patient_id = ? AND closed_at IS NULL AND ends_at <= ?",
            arguments: [patientID, nowMS])
        if let running = try Row.fetchOne(
            db, sql: "SELECT end_date FROM monitoring_pauses WHERE patient_id = ? AND closed_at IS NULL", arguments: [patientID]) {
            throw MonitoringPauseError("patient \(patientID)'s monitoring is already paused through \(running["end_date"] as String); resume it first")
        }
        try db.execute(
            sql: """
                INSERT INTO monitoring_pauses(patient_id, starts_at, end_date, ends_at, reason, created_by, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [patientID, nowMS, endDate.description, epochMilliseconds(endDate.adding(days: 1).start(in: zone)), reason,
                        actor, nowMS])
        let id = db.lastInsertedRowID
        try audit(db, actor: actor, action: "monitoring.pause", targetType: "patient", targetID: patientID,
                  detail: "pause \(id) through \(endDate): \(reason)")
        return try Row.fetchOne(db, sql: "SELECT * FROM monitoring_pauses WHERE id = ?", arguments: [id]).map(MonitoringPause.init(row:))!
    }

    static func resumeMonitoring(_ db: Database, patientID: String, actor: String, now: Date) throws -> MonitoringPause {
        let nowMS = epochMilliseconds(now)
        guard let row = try Row.fetchOne(
            db, sql: "SELECT * FROM monitoring_pauses WHERE patient_id = ? AND closed_at IS NULL AND ends_at > ? AND starts_at <= ?",
            arguments: [patientID, nowMS, nowMS]) else {
            throw MonitoringPauseError("patient \(patientID)'s monitoring is not paused")
        }
        let id: Int64 = row["id"]
        try db.execute(sql: "UPDATE monitoring_pauses SET closed_at = ?, closed_by = ? WHERE id = ?", arguments: [nowMS, actor, id])
        try audit(db, actor: actor, action: "monitoring.resume", targetType: "patient", targetID: patientID,
                  detail: "pause \(id) ended early")
        return try Row.fetchOne(db, sql: "SELECT * FROM monitoring_pauses WHERE id = ?", arguments: [id]).map(MonitoringPause.init(row:))!
    }

    /// The pauses of several patients as intervals (start to end or close), for the rules' snapshots.
    static func monitoringPauseIntervals(_ db: Database, patientIDsJSON: String) throws -> [(String, DateInterval)] {
        try Row.fetchAll(
            db.cachedStatement(sql: """
                SELECT patient_id, starts_at, min(ends_at, coalesce(closed_at, ends_at)) FROM monitoring_pauses
                WHERE patient_id IN (SELECT value FROM json_each(?))
                """),
            arguments: [patientIDsJSON]
        ).compactMap { row in
            let start = dateFromEpochMilliseconds(row[1]), end = dateFromEpochMilliseconds(row[2])
            let patientID: String = row[0]
            return end > start ? (patientID, DateInterval(start: start, end: end)) : nil
        }
    }
}
