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
    /// - Throws: ``EnrollmentError`` when the patient is not enrolled.
    public func setThreshold(patientID: String, slot: ThresholdSlot, value: Double, actor: String) throws {
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
                detail: "\(slot.type.rawValue) \(slot.level.rawValue)_\(slot.direction.rawValue): \(before.map { Observation.format($0) } ?? "default") -> \(Observation.format(value)) \(slot.type.canonicalUnit.rawValue)")
        }
    }

    /// Removes a patient's own limit, so the program default applies again.
    /// - Returns: true if there was one.
    @discardableResult
    public func clearThreshold(patientID: String, slot: ThresholdSlot, actor: String) throws -> Bool {
        try writer.write { db in
            try db.execute(
                sql: "DELETE FROM patient_thresholds WHERE patient_id = ? AND type = ? AND level = ? AND direction = ?",
                arguments: [patientID, slot.type.rawValue, slot.level.rawValue, slot.direction.rawValue])
            guard db.changesCount > 0 else { return false }
            try Self.audit(db, actor: actor, action: "threshold.clear", targetType: "patient", targetID: patientID,
                           detail: "\(slot.type.rawValue) \(slot.level.rawValue)_\(slot.direction.rawValue)")
            return true
        }
    }

    /// A patient's own limits, by slot.
    public func thresholdOverrides(patientID: String) throws -> [ThresholdSlot: Double] {
        try writer.read { db in try Self.thresholdOverrides(db, patientID: patientID) }
    }

    static func thresholdOverrides(_ db: Database, patientID: String) throws -> [ThresholdSlot: Double] {
        var result: [ThresholdSlot: Double] = [:]
        let rows = try Row.fetchAll(
            db, sql: "SELECT type, level, direction, limit_value FROM patient_thresholds WHERE patient_id = ?",
            arguments: [patientID])
        for row in rows {
            guard let type = VitalType(rawValue: row["type"]), let level = ThresholdLevel(rawValue: row["level"]),
                  let direction = ThresholdDirection(rawValue: row["direction"]) else { continue }
            result[ThresholdSlot(type: type, level: level, direction: direction)] = row["limit_value"]
        }
        return result
    }
}
