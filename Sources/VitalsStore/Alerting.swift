import Foundation
import GRDB
import VitalsAlerting
import VitalsDomain

extension AppDatabase {
    /// What the rules need about each patient of a batch, read once per batch in the ingest
    /// transaction: programs and own limits, rule changes, alert states, the tasks the rules may
    /// touch (unresolved, waiting for a re-measurement, the latest of each condition), and the
    /// readings stored before the batch that trend and confirmation windows look at.
    ///
    /// - Parameters:
    ///   - readings: the batch's new readings by patient (their ids are left out of the history).
    ///   - patients: every patient the batch concerns, with their programs.
    ///   - history: the patients whose stored readings around the batch are read; nil: those with
    ///     trend rules for the batch's vital types. The others get none (nil) unless a rule asks.
    static func snapshots(
        _ db: Database, patients: [String: [Program]], readings: [String: [NewReading]], policy: AlertingPolicy,
        history: Set<String>? = nil
    ) throws -> [String: PatientSnapshot] {
        guard !patients.isEmpty else { return [:] }
        let ids = try jsonArray(Set(patients.keys))
        let overrides = try thresholdOverrides(db, patientIDsJSON: ids)
        var result: [String: PatientSnapshot] = [:]
        for (id, programs) in patients {
            result[id] = PatientSnapshot(patientID: id, programs: programs, thresholdOverrides: overrides[id] ?? [:])
        }
        let ruleRows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT patient_id, rule_id, bound, disabled FROM patient_rule_overrides
                WHERE patient_id IN (SELECT value FROM json_each(?))
                """), arguments: [ids])
        while let row = try ruleRows.next() {
            result[row[0]]?.ruleOverrides[row[1]] = RuleOverride(bound: row[2], disabled: row[3])
        }
        for (id, pause) in try monitoringPauseIntervals(db, patientIDsJSON: ids) { result[id]?.pauses.append(pause) }
        let stateRows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT patient_id, rule, active, level, since FROM alert_states WHERE patient_id IN (SELECT value FROM json_each(?))
                """), arguments: [ids])
        while let row = try stateRows.next() {
            result[row[0]]?.states[row[1]] = AlertState(
                active: row[2], since: dateFromEpochMilliseconds(row[4]), level: (row[3] as String?).flatMap(ThresholdLevel.init(rawValue:)))
        }
        let taskRows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT \(CareTask.columns) FROM tasks WHERE patient_id IN (SELECT value FROM json_each(?1))
                AND (status <> 'resolved' OR confirmation = 'pending'
                     OR id IN (SELECT max(id) FROM tasks WHERE patient_id IN (SELECT value FROM json_each(?1))
                               GROUP BY patient_id, vital, direction))
                """), arguments: [ids])
        while let row = try taskRows.next() {
            let task = CareTask(row: row)
            result[task.patientID]?.tasks.append(task)
        }
        // Readings stored before the batch around the batch's times. One query for the batch: each
        // patient gets its own readings of that span (more than its own span needs, which the rules
        // filter by time anyway).
        for id in result.keys { result[id]?.history = nil }
        guard let request = policy.historyRequest(snapshots: result, readings: readings, history: history) else { return result }
        for id in request.patients { result[id]?.history = [] }
        let batchIDs = Set(readings.values.joined().map(\.readingID))
        let rows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT patient_id, id, type, measured_at, canonical_value FROM readings
                WHERE patient_id IN (SELECT value FROM json_each(?)) AND measured_at >= ? AND measured_at <= ?
                """),
            arguments: [try jsonArray(request.patients), epochMilliseconds(request.from), epochMilliseconds(request.to)])
        while let row = try rows.next() {
            let readingID: Int64 = row[1]
            guard !batchIDs.contains(readingID), let type = VitalType(rawValue: row[2]) else { continue }
            result[row[0]]?.history?.append(
                StoredValue(readingID: readingID, type: type, measuredAt: dateFromEpochMilliseconds(row[3]), value: row[4]))
        }
        return result
    }

    /// Writes the rule states the engine changed.
    static func storeAlertStates(_ db: Database, patientID: String, _ states: [String: AlertState]) throws {
        for (rule, s) in states.sorted(by: { $0.key < $1.key }) {
            try db.cachedStatement(sql: """
                INSERT INTO alert_states(patient_id, rule, active, level, since) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(patient_id, rule) DO UPDATE SET active = excluded.active,
                    level = coalesce(excluded.level, alert_states.level), since = excluded.since
                """).execute(arguments: [patientID, rule, s.active, s.level?.rawValue, epochMilliseconds(s.since)])
        }
    }

    static func ruleOverrides(_ db: Database, patientID: String) throws -> [String: RuleOverride] {
        var result: [String: RuleOverride] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(sql: "SELECT rule_id, bound, disabled FROM patient_rule_overrides WHERE patient_id = ?"),
            arguments: [patientID]) {
            result[row["rule_id"]] = RuleOverride(bound: row["bound"], disabled: row["disabled"])
        }
        return result
    }

    /// A patient's changes to trend rules, by rule id.
    public func ruleOverrides(patientID: String) throws -> [String: RuleOverride] {
        try writer.read { db in try Self.ruleOverrides(db, patientID: patientID) }
    }

    /// Sets, or with `nil` removes, a patient's change to one trend rule. Audited, with `reason` when given.
    /// - Throws: ``TaskError`` when the patient does not exist; database errors.
    public func setRuleOverride(
        patientID: String, ruleID: String, override: RuleOverride?, actor: String, reason: String? = nil, at: Date = Date()
    ) throws {
        try writer.write { db in
            guard try Self.fetchPatient(db, id: patientID) != nil else { throw TaskError("patient \(patientID) is not enrolled") }
            if let override {
                try db.execute(
                    sql: """
                        INSERT INTO patient_rule_overrides(patient_id, rule_id, bound, disabled, set_by, set_at) VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(patient_id, rule_id) DO UPDATE SET bound = excluded.bound, disabled = excluded.disabled,
                            set_by = excluded.set_by, set_at = excluded.set_at
                        """,
                    arguments: [patientID, ruleID, override.bound, override.disabled, actor, epochMilliseconds(at)])
            } else {
                try db.execute(sql: "DELETE FROM patient_rule_overrides WHERE patient_id = ? AND rule_id = ?", arguments: [patientID, ruleID])
            }
            let detail = override.map { $0.disabled ? "\(ruleID) off" : "\(ruleID) bound set" } ?? "\(ruleID) cleared"
            try Self.audit(db, actor: actor, action: "rule.override", targetType: "patient", targetID: patientID,
                           detail: detail + Self.reasonSuffix(reason), at: at)
        }
    }
}
