import Foundation
import GRDB
import VitalsDomain

/// A patient enrolled in remote monitoring.
public struct Patient: Sendable, Hashable, Codable {
    /// The external id (from the EHR or the program), e.g. `P-1001`.
    public var id: String
    /// IANA time zone, e.g. `America/Chicago`; days of data are counted in it.
    public var timezone: String
    /// RPM programs; select the default thresholds.
    public var programs: [Program]
    /// When enrolled in vitalsd.
    public var createdAt: Date
    /// Name, date of birth (`YYYY-MM-DD`) and phone number, for the care manager who calls the patient.
    /// PHI: shown in the workspace, never logged. In ``AppDatabase/upsertPatient(_:actor:)`` nil keeps
    /// the stored value.
    public var name: String?
    public var birthDate: String?
    public var phone: String?
    /// The user name of the patient's care manager: their caseload. New tasks go to them.
    public var careManager: String?

    public init(
        id: String, timezone: String, programs: [Program], createdAt: Date = Date(), name: String? = nil,
        birthDate: String? = nil, phone: String? = nil, careManager: String? = nil
    ) {
        self.id = id
        self.timezone = timezone
        self.programs = programs
        self.createdAt = createdAt
        self.name = name
        self.birthDate = birthDate
        self.phone = phone
        self.careManager = careManager
    }

    enum CodingKeys: String, CodingKey {
        case id, timezone, programs, name, phone
        case createdAt = "created_at"
        case birthDate = "birth_date"
        case careManager = "care_manager"
    }
}

/// The kind of a home device.
public enum DeviceKind: String, Sendable, CaseIterable, Codable {
    case bpCuff = "bp_cuff"
    case glucometer
    case cgm
    case scale
    case pulseOximeter = "pulse_oximeter"
    case thermometer
    case other
}

/// A device bound to a patient. Readings from an unknown device are dead-lettered.
public struct Device: Sendable, Hashable, Codable {
    /// The id the device publishes under (the `+` level of its topic).
    public var id: String
    public var kind: DeviceKind
    /// The patient it belongs to.
    public var patientID: String
    public var createdAt: Date

    public init(id: String, kind: DeviceKind, patientID: String, createdAt: Date = Date()) {
        self.id = id
        self.kind = kind
        self.patientID = patientID
        self.createdAt = createdAt
    }
}

/// One period in which a device belonged to a patient: `[from, to)`.
public struct DeviceBinding: Sendable, Hashable, Codable {
    public var patientID: String
    /// Nil: since before anything the device measured.
    public var from: Date?
    /// Nil: still bound.
    public var to: Date?
}

/// `2026-11-28T13:10:00Z` for epoch milliseconds.
func isoDate(_ ms: Int64) -> String {
    dateFromEpochMilliseconds(ms).formatted(Date.ISO8601FormatStyle())
}

/// An enrollment change that cannot be made.
public struct EnrollmentError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What an idempotent add did.
public enum EnrollmentChange: String, Sendable {
    case created
    case updated
    case unchanged
}

/// Rules for patient and device ids: 1–128 characters from `A–Z a–z 0–9 . _ : @ -`.
///
/// A device id is a topic level, so `/`, `+`, `#` and white space could never match a subscription;
/// the same rule for patient ids keeps listings and CSV exports unambiguous.
public enum EnrollmentIdentifier {
    /// - Throws: ``EnrollmentError`` naming what is wrong.
    public static func validate(_ id: String, _ what: String) throws {
        guard !id.isEmpty else { throw EnrollmentError("\(what) id is empty") }
        guard id.utf8.count <= 128 else { throw EnrollmentError("\(what) id is longer than 128 characters") }
        let allowed = id.utf8.allSatisfy { b in
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
                || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")
                || b == UInt8(ascii: "_") || b == UInt8(ascii: ":") || b == UInt8(ascii: "@")
        }
        guard allowed else {
            throw EnrollmentError("\(what) id may contain only letters, digits and . _ : @ - (no spaces, /, + or #)")
        }
    }
}

extension Patient {
    init(row: Row, programs: [Program]) {
        self.init(
            id: row["id"], timezone: row["timezone"], programs: programs, createdAt: dateFromEpochMilliseconds(row["created_at"]),
            name: row["name"], birthDate: row["birth_date"], phone: row["phone"], careManager: row["care_manager"])
    }
}

extension AppDatabase {
    /// Adds a patient, or updates the time zone and programs of an existing one, and the name, date of
    /// birth, phone and care manager the patient value names (nil keeps what is stored).
    ///
    /// - Parameters:
    ///   - patient: the patient; `timezone` must be a known IANA zone.
    ///   - actor: who made the change, for the audit trail.
    /// - Returns: whether the row was created, changed or already so.
    /// - Throws: ``EnrollmentError`` for an unknown time zone, an empty program list, or contact details
    ///   or a care manager that ``PatientDetails`` refuses.
    @discardableResult
    public func upsertPatient(_ patient: Patient, actor: String) throws -> EnrollmentChange {
        try EnrollmentIdentifier.validate(patient.id, "patient")
        guard TimeZone(identifier: patient.timezone) != nil else {
            throw EnrollmentError("unknown IANA time zone '\(patient.timezone)' for patient \(patient.id)")
        }
        guard !patient.programs.isEmpty else {
            throw EnrollmentError("patient \(patient.id) needs at least one program")
        }
        return try writer.write { db in try Self.upsertPatient(db, patient, actor: actor) }
    }

    static func upsertPatient(_ db: Database, _ patient: Patient, actor: String) throws -> EnrollmentChange {
        let programs = Set(patient.programs)
        let existing = try fetchPatient(db, id: patient.id)
        let details = try existing.map { try setPatientDetails(db, patient, existing: $0, actor: actor) } ?? false
        if let existing {
            if existing.timezone == patient.timezone && Set(existing.programs) == programs { return details ? .updated : .unchanged }
            try db.execute(sql: "UPDATE patients SET timezone = ? WHERE id = ?", arguments: [patient.timezone, patient.id])
            try db.execute(sql: "DELETE FROM patient_programs WHERE patient_id = ?", arguments: [patient.id])
        } else {
            try db.execute(
                sql: "INSERT INTO patients(id, timezone, created_at) VALUES (?, ?, ?)",
                arguments: [patient.id, patient.timezone, epochMilliseconds(patient.createdAt)])
            _ = try setPatientDetails(db, patient, existing: fetchPatient(db, id: patient.id), actor: actor)
        }
        for program in programs.sorted(by: { $0.rawValue < $1.rawValue }) {
            try db.execute(
                sql: "INSERT INTO patient_programs(patient_id, program) VALUES (?, ?)",
                arguments: [patient.id, program.rawValue])
        }
        let detail = "timezone=\(patient.timezone) programs=\(programs.map(\.rawValue).sorted().joined(separator: ","))"
        try audit(db, actor: actor, action: existing == nil ? "patient.create" : "patient.update",
                  targetType: "patient", targetID: patient.id, detail: detail)
        return existing == nil ? .created : .updated
    }

    /// Adds a device bound to an enrolled patient, updates its kind, or moves it to another patient.
    ///
    /// The device's bindings are history (`device_bindings`): a reading belongs to the patient the
    /// device was bound to at its measurement time, so a reading measured before a reassignment but
    /// received after it stays with the first patient.
    ///
    /// - Parameters:
    ///   - reassign: allow moving an existing device to another patient. Without it, such a change is
    ///     refused: a typo would send one patient's readings to someone else.
    ///   - at: when the device changes hands on a reassignment (default: now). The old binding ends
    ///     and the new one starts at this instant.
    ///   - from: for a new device, when its first binding starts (the day it was handed to the patient);
    ///     readings measured before it are `before_binding` dead letters. Nil (the default): the first
    ///     binding covers everything the device measured before.
    /// - Throws: ``EnrollmentError`` when the patient is not enrolled, the id is invalid, the device
    ///   belongs to another patient and `reassign` is false, or `at` is not after the current
    ///   binding's start or before a reading already stored for the current patient.
    @discardableResult
    public func upsertDevice(
        _ device: Device, actor: String, reassign: Bool = false, at: Date = Date(), from: Date? = nil
    ) throws -> EnrollmentChange {
        try writer.write { db in try Self.upsertDevice(db, device, actor: actor, reassign: reassign, at: at, from: from) }
    }

    static func upsertDevice(
        _ db: Database, _ device: Device, actor: String, reassign: Bool = false, at: Date = Date(), from: Date? = nil
    ) throws -> EnrollmentChange {
        try EnrollmentIdentifier.validate(device.id, "device")
        guard try fetchPatient(db, id: device.patientID) != nil else {
            throw EnrollmentError("patient \(device.patientID) is not enrolled; add it before device \(device.id)")
        }
        let row = try Row.fetchOne(db, sql: "SELECT kind, patient_id FROM devices WHERE id = ?", arguments: [device.id])
        if let row, row["patient_id"] != device.patientID, !reassign {
            throw EnrollmentError(
                "device \(device.id) belongs to patient \(row["patient_id"] as String); moving it to \(device.patientID) needs --reassign")
        }
        let atMS = epochMilliseconds(at)
        var detail = "kind=\(device.kind.rawValue) patient=\(device.patientID)"
        if let row {
            if row["kind"] == device.kind.rawValue && row["patient_id"] == device.patientID { return .unchanged }
            let previous: String = row["patient_id"]
            if previous != device.patientID {
                let start = try Int64?.fetchOne(
                    db, sql: "SELECT bound_from FROM device_bindings WHERE device_id = ? AND bound_to IS NULL", arguments: [device.id]) ?? nil
                if let start, atMS <= start {
                    throw EnrollmentError("device \(device.id) was bound to patient \(previous) at \(isoDate(start)); the reassignment must come after it")
                }
                if let latest = try Int64.fetchOne(
                    db, sql: "SELECT max(measured_at) FROM readings WHERE device_id = ? AND patient_id = ? AND measured_at >= ?",
                    arguments: [device.id, previous, atMS]) {
                    throw EnrollmentError(
                        "device \(device.id) has a reading of patient \(previous) measured at \(isoDate(latest)), after the reassignment time; give a later --at")
                }
                try db.execute(sql: "UPDATE device_bindings SET bound_to = ? WHERE device_id = ? AND bound_to IS NULL",
                               arguments: [atMS, device.id])
                try db.execute(
                    sql: "INSERT INTO device_bindings(device_id, patient_id, bound_from, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                    arguments: [device.id, device.patientID, atMS, atMS, actor])
                detail += " from=\(previous) at=\(isoDate(atMS))"
            }
            try db.execute(
                sql: "UPDATE devices SET kind = ?, patient_id = ? WHERE id = ?",
                arguments: [device.kind.rawValue, device.patientID, device.id])
        } else {
            try db.execute(
                sql: "INSERT INTO devices(id, kind, patient_id, created_at) VALUES (?, ?, ?, ?)",
                arguments: [device.id, device.kind.rawValue, device.patientID, epochMilliseconds(device.createdAt)])
            try db.execute(
                sql: "INSERT INTO device_bindings(device_id, patient_id, bound_from, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                arguments: [device.id, device.patientID, from.map(epochMilliseconds), atMS, actor])
            if let from { detail += " from=\(isoDate(epochMilliseconds(from)))" }
        }
        try audit(db, actor: actor, action: row == nil ? "device.create" : "device.update", targetType: "device",
                  targetID: device.id, detail: detail)
        return row == nil ? .created : .updated
    }

    /// A device's bindings to patients, oldest first.
    public func deviceBindings(deviceID: String) throws -> [DeviceBinding] {
        try writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT patient_id, bound_from, bound_to FROM device_bindings WHERE device_id = ? ORDER BY bound_from IS NOT NULL, bound_from",
                arguments: [deviceID]
            ).map {
                DeviceBinding(patientID: $0["patient_id"], from: ($0["bound_from"] as Int64?).map(dateFromEpochMilliseconds),
                              to: ($0["bound_to"] as Int64?).map(dateFromEpochMilliseconds))
            }
        }
    }

    /// One row of an enrollment import: a patient and one of their devices.
    public struct ImportRow: Sendable, Hashable {
        public var patient: Patient
        public var device: Device?
        public init(patient: Patient, device: Device?) {
            self.patient = patient
            self.device = device
        }
    }

    /// Counts of what an import changed.
    public struct ImportSummary: Sendable, Hashable {
        public var patientsCreated = 0
        public var patientsUpdated = 0
        public var devicesCreated = 0
        public var devicesUpdated = 0
        public var unchanged = 0
        public init() {}
    }

    /// Imports rows in one transaction: all or nothing. Importing the same rows twice changes nothing.
    ///
    /// A patient listed on several rows (one per device) must have the same time zone on each;
    /// their programs are the union of the rows' programs.
    /// - Throws: ``EnrollmentError`` naming the first bad row; nothing is written then.
    public func importEnrollment(_ rows: [ImportRow], actor: String, reassign: Bool = false) throws -> ImportSummary {
        var merged: [String: Patient] = [:]
        var order: [String] = []
        for row in rows {
            try EnrollmentIdentifier.validate(row.patient.id, "patient")
            guard TimeZone(identifier: row.patient.timezone) != nil else {
                throw EnrollmentError("unknown IANA time zone '\(row.patient.timezone)' for patient \(row.patient.id)")
            }
            if var p = merged[row.patient.id] {
                guard p.timezone == row.patient.timezone else {
                    throw EnrollmentError("patient \(row.patient.id) has two time zones in the file")
                }
                p.programs = Array(Set(p.programs + row.patient.programs))
                p.name = p.name ?? row.patient.name
                p.birthDate = p.birthDate ?? row.patient.birthDate
                p.phone = p.phone ?? row.patient.phone
                p.careManager = p.careManager ?? row.patient.careManager
                merged[row.patient.id] = p
            } else {
                merged[row.patient.id] = row.patient
                order.append(row.patient.id)
            }
        }
        return try writer.write { db in
            var summary = ImportSummary()
            for id in order {
                switch try Self.upsertPatient(db, merged[id]!, actor: actor) {
                case .created: summary.patientsCreated += 1
                case .updated: summary.patientsUpdated += 1
                case .unchanged: summary.unchanged += 1
                }
            }
            for device in rows.compactMap(\.device) {
                switch try Self.upsertDevice(db, device, actor: actor, reassign: reassign) {
                case .created: summary.devicesCreated += 1
                case .updated: summary.devicesUpdated += 1
                case .unchanged: summary.unchanged += 1
                }
            }
            return summary
        }
    }

    /// The patient with `id`, or nil.
    public func patient(id: String) throws -> Patient? {
        try writer.read { db in try Self.fetchPatient(db, id: id) }
    }

    /// Every patient, by id.
    public func patients() throws -> [Patient] {
        try writer.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM patients ORDER BY id")
            let programs = try Self.programsByPatient(db)
            return rows.map { row in Patient(row: row, programs: programs[row["id"]] ?? []) }
        }
    }

    /// Devices, optionally only one patient's, by id.
    public func devices(patientID: String? = nil) throws -> [Device] {
        try writer.read { db in try Self.fetchDevices(db, patientID: patientID) }
    }

    static func fetchDevices(_ db: Database, patientID: String?) throws -> [Device] {
        try Row.fetchAll(
            db,
            sql: "SELECT id, kind, patient_id, created_at FROM devices WHERE ?1 IS NULL OR patient_id = ?1 ORDER BY id",
            arguments: [patientID]
        ).map { row in
            Device(id: row["id"], kind: DeviceKind(rawValue: row["kind"]) ?? .other, patientID: row["patient_id"],
                   createdAt: dateFromEpochMilliseconds(row["created_at"]))
        }
    }

    static func fetchPatient(_ db: Database, id: String) throws -> Patient? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM patients WHERE id = ?", arguments: [id]) else { return nil }
        let programs = try String.fetchAll(
            db, sql: "SELECT program FROM patient_programs WHERE patient_id = ? ORDER BY program", arguments: [id])
        return Patient(row: row, programs: programs.compactMap(Program.init(rawValue:)))
    }

    static func programsByPatient(_ db: Database) throws -> [String: [Program]] {
        var result: [String: [Program]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT patient_id, program FROM patient_programs ORDER BY program") {
            if let p = Program(rawValue: row["program"]) { result[row["patient_id"], default: []].append(p) }
        }
        return result
    }

    /// Appends one entry to the audit trail. The table refuses updates and deletes.
    static func audit(_ db: Database, actor: String, action: String, targetType: String, targetID: String,
                      detail: String? = nil, at: Date = Date()) throws {
        try db.execute(
            sql: "INSERT INTO audit_log(at, actor, action, target_type, target_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
            arguments: [epochMilliseconds(at), actor, action, targetType, targetID, detail])
    }
}
