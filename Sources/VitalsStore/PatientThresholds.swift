import Foundation
import GRDB
import VitalsDomain

extension AppDatabase {
    /// Sets a patient's own limit, in the canonical unit of its type; it wins over program defaults.
    ///
    /// - Parameters:
    ///   - slot: type, level and direction.
    ///   - value: the limit in ``VitalType/canonicalUnit`` (mm[Hg], /min, mg/dL, kg, %, Cel).
    ///   - actor: the clinician or admin who set it, for the audit trail.
    ///   - reason: why, for the audit trail (the workspace asks for one).
    /// - Throws: ``EnrollmentError`` when the patient is not enrolled.
    public func setThreshold(patientID: String, slot: ThresholdSlot, value: Double, actor: String, reason: String? = nil) throws {
        try writer.write { db in
            guard try Self.fetchPatient(db, id: patientID) != nil else {
                throw EnrollmentError("patient \(patientID) is not enrolled")
            }
            let before = try Double.fetchOne(
                db, sql: "SELECT limit_value FROM patient_thresholds WHERE patient_id = ? AND type = ? AND level = ? AND direction = ?",
                arguments: [patientID, slot.type.rawValue, slot.level.rawValue, slot.direction.rawValue])
            try db.execute(
                sql: """
                    INSERT INTO patient_thresholds(patient_id, type, level, direction, limit_value, set_by, set_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(patient_id, type, level, direction)
                    DO UPDATE SET limit_value = excluded.limit_value, set_by = excluded.set_by, set_at = excluded.set_at
                    """,
                arguments: [patientID, slot.type.rawValue, slot.level.rawValue, slot.direction.rawValue, value, actor,
                            epochMilliseconds(Date())])
            try Self.audit(
                db, actor: actor, action: "threshold.set", targetType: "patient", targetID: patientID,
                detail: "\(slot.type.rawValue) \(slot.level.rawValue)_\(slot.direction.rawValue): \(before.map { Observation.format($0) } ?? "default") -> \(Observation.format(value)) \(slot.type.canonicalUnit.rawValue)"
                    + Self.reasonSuffix(reason))
        }
    }

    /// Removes a patient's own limit, so the program default applies again.
    /// - Returns: true if there was one.
    /// - Parameter reason: why, for the audit trail.
    @discardableResult
    public func clearThreshold(patientID: String, slot: ThresholdSlot, actor: String, reason: String? = nil) throws -> Bool {
        try writer.write { db in
            try db.execute(
                sql: "DELETE FROM patient_thresholds WHERE patient_id = ? AND type = ? AND level = ? AND direction = ?",
                arguments: [patientID, slot.type.rawValue, slot.level.rawValue, slot.direction.rawValue])
            guard db.changesCount > 0 else { return false }
            try Self.audit(db, actor: actor, action: "threshold.clear", targetType: "patient", targetID: patientID,
                           detail: "\(slot.type.rawValue) \(slot.level.rawValue)_\(slot.direction.rawValue)" + Self.reasonSuffix(reason))
            return true
        }
    }

    /// `; reason: …` for an audit detail, or nothing.
    static func reasonSuffix(_ reason: String?) -> String {
        reason.map { "; reason: \($0)" } ?? ""
    }

    /// A patient's own limits, by slot.
    public func thresholdOverrides(patientID: String) throws -> [ThresholdSlot: Double] {
        try writer.read { db in try Self.thresholdOverrides(db, patientID: patientID) }
    }

    static func thresholdOverrides(_ db: Database, patientID: String) throws -> [ThresholdSlot: Double] {
        try thresholdOverrides(db, patientIDsJSON: jsonArray([patientID]))[patientID] ?? [:]
    }

    /// The own limits of several patients, by patient id and slot; patients without any are absent.
    /// - Parameter patientIDsJSON: the patient ids as a JSON array of strings.
    static func thresholdOverrides(_ db: Database, patientIDsJSON: String) throws -> [String: [ThresholdSlot: Double]] {
        var result: [String: [ThresholdSlot: Double]] = [:]
        let rows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT patient_id, type, level, direction, limit_value FROM patient_thresholds
                WHERE patient_id IN (SELECT value FROM json_each(?))
                """),
            arguments: [patientIDsJSON])
        while let row = try rows.next() {
            guard let type = VitalType(rawValue: row[1]), let level = ThresholdLevel(rawValue: row[2]),
                  let direction = ThresholdDirection(rawValue: row[3]) else { continue }
            result[row[0], default: [:]][ThresholdSlot(type: type, level: level, direction: direction)] = row[4]
        }
        return result
    }
}
