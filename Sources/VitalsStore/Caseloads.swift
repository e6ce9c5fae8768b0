import Foundation
import GRDB
import VitalsDomain

/// Characters that a page or a terminal would show as something else, or not at all.
enum HiddenCharacters {
    /// Whether `text` holds a control character (but a newline or tab when `allowNewlines`), a format
    /// character (bidirectional overrides such as U+202E, zero-width spaces and joiners) or a line or
    /// paragraph separator: each can forge or hide what a care manager reads.
    static func contain(_ text: String, allowNewlines: Bool = false) -> Bool {
        text.unicodeScalars.contains { c in
            if allowNewlines, c == "\n" || c == "\t" || c == "\r" { return false }
            switch c.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator: return true
            default: return false
            }
        }
    }
}

/// Checks of a patient's name, date of birth and phone number before they are stored.
///
/// They are PHI: errors name the field, never the value.
public enum PatientDetails {
    /// A name: 1–200 characters after trimming, no control, format or separator characters
    /// (``HiddenCharacters``).
    /// - Throws: ``EnrollmentError``.
    public static func name(_ text: String) throws -> String {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(t.count), !HiddenCharacters.contain(t) else {
            throw EnrollmentError("name must have 1 to 200 characters and no control, invisible or text-direction characters")
        }
        return t
    }

    /// A date of birth `YYYY-MM-DD`: a real date from 1900-01-01 up to `today`.
    /// - Throws: ``EnrollmentError``.
    public static func birthDate(_ text: String, today: LocalDate) throws -> String {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard let date = LocalDate(t), date.description == t, date <= today, date >= LocalDate(year: 1900, month: 1, day: 1)! else {
            throw EnrollmentError("birth date must be a date YYYY-MM-DD from 1900 up to today")
        }
        return t
    }

    /// A phone number: digits with `+ - ( ) .`, spaces and an `x` before an extension; 3–40 characters.
    /// - Throws: ``EnrollmentError``.
    public static func phone(_ text: String) throws -> String {
        let t = text.trimmingCharacters(in: .whitespaces)
        let digits = t.filter(\.isASCII).filter(\.isNumber).count
        guard (3...40).contains(t.count), digits >= 3,
              t.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) || " +-().xX".unicodeScalars.contains($0) })
        else {
            throw EnrollmentError("phone must have 3 to 40 characters: digits, spaces, + - ( ) . and x for an extension")
        }
        return t
    }
}

extension AppDatabase {
    /// Stores the contact details and care manager that `patient` names, keeping those it leaves nil.
    /// Audited by field name, never by value.
    /// - Returns: whether anything changed.
    /// - Throws: ``EnrollmentError`` for a value ``PatientDetails`` refuses or an unknown care manager.
    static func setPatientDetails(_ db: Database, _ patient: Patient, existing: Patient?, actor: String) throws -> Bool {
        let today = LocalDate(Date(), in: TimeZone(identifier: patient.timezone) ?? .gmt)
        var changes: [DetailChange] = []
        if let name = patient.name { changes.append(("name", try PatientDetails.name(name), existing?.name)) }
        if let birth = patient.birthDate {
            changes.append(("birth_date", try PatientDetails.birthDate(birth, today: today), existing?.birthDate))
        }
        if let phone = patient.phone { changes.append(("phone", try PatientDetails.phone(phone), existing?.phone)) }
        let changed = try writeDetails(db, patientID: patient.id, changes, actor: actor, at: Date())
        let assigned = try patient.careManager.map {
            try setCareManager(db, patientID: patient.id, username: $0, actor: actor, at: Date())
        } ?? false
        return changed || assigned
    }

    /// A contact detail to store: column, new value (nil clears), value before.
    typealias DetailChange = (column: String, value: String?, before: String?)

    /// Writes the details that differ from what is stored and audits them by column name.
    /// - Returns: whether anything changed.
    static func writeDetails(_ db: Database, patientID: String, _ changes: [DetailChange], actor: String, at: Date) throws -> Bool {
        let changed = changes.filter { $0.value != $0.before }
        for change in changed {
            try db.execute(sql: "UPDATE patients SET \(change.column) = ? WHERE id = ?", arguments: [change.value, patientID])
        }
        if !changed.isEmpty {
            try audit(db, actor: actor, action: "patient.details", targetType: "patient", targetID: patientID,
                      detail: changed.map { ($0.value == nil ? "cleared " : "set ") + $0.column }.joined(separator: ", "), at: at)
        }
        return !changed.isEmpty
    }

    /// Makes `username` the patient's care manager (nil: none). New tasks of the patient go to them.
    /// - Returns: whether it changed.
    /// - Throws: ``EnrollmentError`` for an unknown patient, or a user who does not exist, is disabled,
    ///   or is a clinician.
    static func setCareManager(_ db: Database, patientID: String, username: String?, actor: String, at: Date) throws -> Bool {
        guard let before = try String?.fetchOne(db, sql: "SELECT care_manager FROM patients WHERE id = ?", arguments: [patientID])
        else { throw EnrollmentError("patient \(patientID) is not enrolled") }
        let name = username.map(Username.normalized)
        if let name {
            guard let user = try fetchUser(db, username: name), !user.disabled else {
                throw EnrollmentError("care manager \(name) is not an active user (vitalsd user list)")
            }
            guard user.role.managesCaseloads else {
                throw EnrollmentError("the user \(name) is a \(user.role.rawValue); a care manager has the role care_manager or admin")
            }
        }
        guard before != name else { return false }
        try db.execute(sql: "UPDATE patients SET care_manager = ? WHERE id = ?", arguments: [name, patientID])
        try audit(db, actor: actor, action: "patient.assign", targetType: "patient", targetID: patientID,
                  detail: "care manager \(before ?? "none") -> \(name ?? "none")", at: at)
        return true
    }

    /// Puts a patient in a care manager's caseload (`vitalsd patient assign`), or in none with nil.
    /// Tasks opened from then on go to them; unresolved tasks keep their owner. Audited.
    /// - Returns: whether it changed.
    /// - Throws: ``EnrollmentError``.
    @discardableResult
    public func assignCareManager(patientID: String, username: String?, actor: String, at: Date = Date()) throws -> Bool {
        try writer.write { db in try Self.setCareManager(db, patientID: patientID, username: username, actor: actor, at: at) }
    }

    /// Replaces a patient's name, date of birth, phone and care manager from the workspace: nil clears
    /// a value. Audited by field name, never by value.
    /// - Throws: ``EnrollmentError``.
    public func updatePatientDetails(
        patientID: String, name: String?, birthDate: String?, phone: String?, careManager: String?, actor: String, at: Date
    ) async throws {
        try await writer.write { db in
            guard let existing = try Self.fetchPatient(db, id: patientID) else {
                throw EnrollmentError("patient \(patientID) is not enrolled")
            }
            let today = LocalDate(at, in: TimeZone(identifier: existing.timezone) ?? .gmt)
            _ = try Self.writeDetails(db, patientID: patientID, [
                ("name", try name.map(PatientDetails.name), existing.name),
                ("birth_date", try birthDate.map { try PatientDetails.birthDate($0, today: today) }, existing.birthDate),
                ("phone", try phone.map(PatientDetails.phone), existing.phone),
            ], actor: actor, at: at)
            _ = try Self.setCareManager(db, patientID: patientID, username: careManager, actor: actor, at: at)
        }
    }
}

extension AppDatabase {
    /// The patient with `id`, or nil (for the workspace, off the cooperative pool).
    public func patientRecord(id: String) async throws -> Patient? {
        try await writer.read { db in try Self.fetchPatient(db, id: id) }
    }

    /// A patient's unresolved tasks, in queue order.
    public func caseloadTasks(patientID: String) async throws -> [CareTask] {
        try await writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(CareTask.columns) FROM tasks WHERE patient_id = ? AND status <> 'resolved'
                    ORDER BY CASE priority WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, opened_at, id
                    """,
                arguments: [patientID]
            ).map(CareTask.init(row:))
        }
    }

    /// Active users, by display name: who can own a task or a caseload.
    public func activeUsers() async throws -> [WorkspaceUser] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM users WHERE disabled = 0 ORDER BY display_name, username")
                .map(WorkspaceUser.init(row:))
        }
    }
}

/// One patient of a caseload listing.
public struct CaseloadEntry: Sendable, Hashable {
    public var patient: Patient
    /// The care manager's display name.
    public var careManagerName: String?
    /// Unresolved tasks of the patient.
    public var unresolvedTasks: Int
}

extension AppDatabase {
    /// Patients by name (then id): those of one care manager (`careManager`), those without one
    /// (`unassignedOnly`), or all.
    public func caseload(careManager: String?, unassignedOnly: Bool = false) async throws -> [CaseloadEntry] {
        try await writer.read { db in
            let programs = try Self.programsByPatient(db)
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT p.*, u.display_name AS manager_name,
                           (SELECT count(*) FROM tasks t WHERE t.patient_id = p.id AND t.status <> 'resolved') AS unresolved
                    FROM patients p LEFT JOIN users u ON u.username = p.care_manager
                    WHERE (?1 IS NULL OR p.care_manager = ?1) AND (?2 = 0 OR p.care_manager IS NULL)
                    ORDER BY p.name IS NULL, p.name, p.id
                    """,
                arguments: [careManager, unassignedOnly]
            ).map { row in
                CaseloadEntry(patient: Patient(row: row, programs: programs[row["id"]] ?? []), careManagerName: row["manager_name"],
                              unresolvedTasks: row["unresolved"])
            }
        }
    }
}
