import Foundation
import GRDB
import VitalsDomain

/// One entry of the access log: who read what, and every token issued or refused.
public struct AccessEntry: Sendable, Hashable, Codable {
    public var id: Int64
    public var at: Date
    /// A user name, or `client:<client id>` for a FHIR client.
    public var actor: String
    /// `fhir.read`, `fhir.search`, `fhir.forbidden`, `token.issued`, `token.refused`, …
    public var action: String
    /// A resource type (`Observation`), `token`, or what the workspace reads.
    public var targetType: String
    public var targetID: String?
    /// Parameter names, scopes, reasons: never PHI values.
    public var detail: String?

    enum CodingKeys: String, CodingKey {
        case id, at, actor, action, detail
        case targetType = "target_type"
        case targetID = "target_id"
    }
}

extension AppDatabase {
    /// Appends one entry to the access log (append-only: the table refuses updates and deletes).
    ///
    /// - Parameters:
    ///   - actor: a user name, or `client:<client id>`.
    ///   - action: e.g. `fhir.read`, `fhir.search`, `token.issued`, `token.refused`.
    ///   - targetType: e.g. `Observation`, `Patient`, `token`.
    ///   - targetID: the id read, when one resource was.
    ///   - detail: ids and parameter names only; never a stored value, name or birth date.
    ///   - at: when; default now.
    /// - Throws: GRDB errors (disk full, lock timeout).
    public func recordAccess(
        actor: String, action: String, targetType: String, targetID: String? = nil, detail: String? = nil, at: Date = Date()
    ) async throws {
        try await writer.write { db in
            try Self.recordAccess(db, actor: actor, action: action, targetType: targetType, targetID: targetID, detail: detail, at: at)
        }
    }

    /// Appends an access and, in the same transaction, one `fhir.disclosed` entry per patient whose
    /// data it returned (`target_type` `patient`, the patient's id, and in the detail how many
    /// resources of which type), so that `audit list --access --patient P` shows every search and
    /// read that disclosed P's data, not only those that named P.
    ///
    /// - Parameters:
    ///   - disclosed: patient id → the number of resources of `targetType` returned about them.
    /// - Throws: GRDB errors.
    public func recordAccess(
        actor: String, action: String, targetType: String, targetID: String? = nil, detail: String? = nil,
        disclosed: [String: Int], at: Date = Date()
    ) async throws {
        try await writer.write { db in
            try Self.recordAccess(db, actor: actor, action: action, targetType: targetType, targetID: targetID, detail: detail, at: at)
            for (patientID, count) in disclosed.sorted(by: { $0.key < $1.key }) {
                try Self.recordAccess(db, actor: actor, action: "fhir.disclosed", targetType: "patient", targetID: patientID,
                                      detail: "\(action) \(targetType): \(count)", at: at)
            }
        }
    }

    /// The same, inside a transaction the caller holds.
    public static func recordAccess(
        _ db: Database, actor: String, action: String, targetType: String, targetID: String? = nil, detail: String? = nil,
        at: Date = Date()
    ) throws {
        try db.execute(
            sql: "INSERT INTO access_log(at, actor, action, target_type, target_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [epochMilliseconds(at), actor, action, targetType, targetID, detail])
    }

    /// Access-log entries, oldest first.
    /// - Parameters:
    ///   - actor: only this actor's entries (`client:<id>` or a user name).
    ///   - patientID: only entries about this patient: their chart (`patient`), a FHIR `Patient` read,
    ///     or one of their tasks (`task` entries whose detail is ``patientDetail(_:)``).
    ///   - since: only entries at or after this instant.
    public func accessEntries(actor: String? = nil, patientID: String? = nil, since: Date? = nil, limit: Int = 1000) throws -> [AccessEntry] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM access_log WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR at >= ?2)
                      AND (?4 IS NULL OR (target_type IN ('patient', 'Patient') AND target_id = ?4)
                           OR (target_type = 'task' AND detail = ?5))
                    ORDER BY id LIMIT ?3
                    """,
                arguments: [actor, since.map(epochMilliseconds), limit, patientID, patientID.map(Self.patientDetail)]
            ).map { r in
                AccessEntry(id: r["id"], at: dateFromEpochMilliseconds(r["at"]), actor: r["actor"], action: r["action"],
                            targetType: r["target_type"], targetID: r["target_id"], detail: r["detail"])
            }
        }
    }

    /// The detail of an access to something of a patient's other than their chart (a task): `patient <id>`.
    public static func patientDetail(_ patientID: String) -> String {
        "patient \(patientID)"
    }

    /// Records that `actor` opened a task's page (`task.viewed`), with the task's patient in the detail
    /// (``patientDetail(_:)``) so that `audit list --access --patient` finds it.
    /// - Throws: GRDB errors.
    public func recordTaskView(actor: String, taskID: Int64, at: Date = Date()) async throws {
        try await writer.write { db in
            let patientID = try String.fetchOne(db, sql: "SELECT patient_id FROM tasks WHERE id = ?", arguments: [taskID])
            try Self.recordAccess(db, actor: actor, action: "task.viewed", targetType: "task", targetID: String(taskID),
                                  detail: patientID.map(Self.patientDetail), at: at)
        }
    }
}
