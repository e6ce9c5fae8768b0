import Foundation
import GRDB
import VitalsDomain

/// A newly stored reading, waiting for the rules.
struct StoredReading {
    /// Position in the batch; breaks ties between equal measurement times.
    var order: Int
    /// Index of the message in the batch: readings of one message measured at one instant form one
    /// occurrence (a cuff's systolic and diastolic make one blood-pressure occurrence).
    var message: Int
    var observation: Observation
    var readingID: Int64
    var patientID: String
    var programs: [Program]
    /// Received more than ``AlertPolicy/lateAfterSeconds`` after it was measured.
    var late: Bool
}

/// A device event recorded for the first time, waiting to become a task.
struct DeviceProblem {
    var patientID: String
    var eventID: Int64
    var event: DeviceEvent
    var late: Bool
}

/// What the rules did to the task queue in one transaction.
struct RuleOutcome {
    var opened: [ThresholdLevel: Int] = [:]
    var updated = 0
    /// Breaches that opened no task: their condition was still active and its task already resolved (F13).
    var suppressed = 0
    /// Readings whose breaches went to a `late_data` review task.
    var lateBreaches = 0
}

/// Evaluates stored readings against thresholds and trend rules, in measurement-time order, inside
/// the ingest transaction, and turns breaches into task changes.
///
/// - Threshold and trend rules keep a state per patient and rule in `alert_states`: a rule becomes
///   active when a reading breaches it and clears only on recovery (below `recovery_high`, F13).
/// - A condition (patient, vital, direction) has at most one unresolved task (F14); a breach adds an
///   occurrence to it. Without one, a breach opens a task when a rule has just become active, when
///   its level is above that of the condition's last task, or when that task was resolved more than
///   ``AlertPolicy/realertAfterSeconds`` ago; otherwise it is counted as suppressed.
/// - Breaches of late readings (F15) go to one `late_data` task per patient and change no state.
/// - A `critical` task waits ``AlertPolicy/confirmationWindowSeconds`` for a re-measurement and
///   escalates after ``AlertPolicy/escalationAfterSeconds`` unless acknowledged.
struct RuleEngine {
    let db: Database
    let pipeline: IngestPipeline
    let now: Date
    var outcome = RuleOutcome()
    private var limitsCache: [String: [VitalType: ThresholdLimits]] = [:]
    private var rulesCache: [String: [TrendRule]] = [:]
    private var states: [String: [String: (active: Bool, since: Int64)]] = [:]
    private var freshPatients = Set<String>()
    /// Each patient's tasks waiting for a re-measurement, read once per batch and kept up to date by
    /// this engine (nothing else changes them inside the transaction).
    private var pendingConfirmations: [String: [PendingConfirmation]] = [:]

    private struct PendingConfirmation {
        var taskID: Int64
        var vital: String
        var direction: ThresholdDirection
        /// Epoch milliseconds.
        var due: Int64
    }

    /// The own limits of the batch's patients, read once per batch; a patient without any is absent.
    private let overrides: [String: [ThresholdSlot: Double]]

    init(db: Database, pipeline: IngestPipeline, now: Date, overrides: [String: [ThresholdSlot: Double]]) {
        self.db = db
        self.pipeline = pipeline
        self.now = now
        self.overrides = overrides
    }

    private var nowMS: Int64 { epochMilliseconds(now) }

    /// Evaluates the readings in measurement-time order.
    mutating func evaluate(_ readings: [StoredReading]) throws {
        let sorted = readings.sorted {
            ($0.observation.measuredAt, $0.order) < ($1.observation.measuredAt, $1.order)
        }
        var i = 0
        while i < sorted.count {
            var j = i + 1
            while j < sorted.count && sorted[j].message == sorted[i].message
                && sorted[j].observation.measuredAt == sorted[i].observation.measuredAt {
                j += 1
            }
            try moment(Array(sorted[i..<j]))
            i = j
        }
    }

    /// The breaches of one condition at one instant.
    private struct Group {
        var condition: TaskCondition
        var kind: TaskKind
        var level: ThresholdLevel
        var reasons: [(ThresholdLevel, String)] = []
        var newlyActive = false
        var rules: [String] = []
        var worst: StoredReading
        var latest: StoredReading

        var reason: String { reasons.sorted { $0.0 > $1.0 }.map(\.1).joined(separator: "; ") }
    }

    private mutating func moment(_ entries: [StoredReading]) throws {
        let patient = entries[0].patientID
        let late = entries.contains(where: \.late)
        if !late && freshPatients.insert(patient).inserted {
            // A new reading: the patient's open tasks no longer rest on stale data (F16).
            try db.cachedStatement(sql: """
                UPDATE tasks SET data_stale = 0 WHERE patient_id = ? AND data_stale = 1 AND status <> 'resolved'
                """).execute(arguments: [patient])
        }
        if !late { try checkConfirmations(patient, entries) }

        var groups: [Group] = []
        func add(_ condition: TaskCondition, _ kind: TaskKind, _ level: ThresholdLevel, _ reason: String, _ entry: StoredReading,
                 newly: Bool, rule: String) {
            if let k = groups.firstIndex(where: { $0.condition == condition }) {
                if level > groups[k].level { groups[k].level = level; groups[k].worst = entry }
                groups[k].reasons.append((level, reason))
                groups[k].newlyActive = groups[k].newlyActive || newly
                groups[k].rules.append(rule)
                if kind == .threshold { groups[k].kind = .threshold }
            } else {
                groups.append(Group(condition: condition, kind: kind, level: level, reasons: [(level, reason)],
                                    newlyActive: newly, rules: [rule], worst: entry, latest: entry))
            }
        }

        for entry in entries {
            let o = entry.observation
            let at = epochMilliseconds(o.measuredAt)
            let limits = effectiveLimits(patient, entry.programs, o.type)
            let breach = ThresholdEvaluator.evaluate(o, against: limits)
            for direction in ThresholdDirection.allCases {
                let rule = "limit:\(o.type.rawValue):\(direction.rawValue)"
                let condition = TaskCondition(patientID: patient, vital: o.type.taskVital, direction: direction)
                if let breach, breach.direction == direction {
                    let newly = late ? false : try activate(patient, rule, level: breach.level, at: at)
                    add(condition, .threshold, breach.level, breach.reason, entry, newly: newly, rule: rule)
                } else if !late, ThresholdEvaluator.recovers(o.canonicalValue, direction: direction, limits: limits) {
                    try recover(patient, rule, condition: condition, at: at, readingID: entry.readingID)
                }
            }
            for rule in try trendRules(patient, entry.programs) where rule.type == o.type {
                let key = "trend:\(rule.id)"
                let condition = TaskCondition(patientID: patient, vital: rule.type.taskVital, direction: rule.direction)
                let window = try windowReadings(patient, rule, o)
                if let trend = TrendEvaluator.evaluate(rule, o, window: window) {
                    let newly = late ? false : try activate(patient, key, level: rule.level, at: at)
                    add(condition, .trend, rule.level, trend.reason, entry, newly: newly, rule: key)
                } else if !late {
                    try recover(patient, key, condition: condition, at: at, readingID: entry.readingID)
                }
            }
        }
        guard !groups.isEmpty else { return }
        if late {
            try lateDataTask(patient, groups)
            return
        }
        for group in groups { try apply(group) }
    }

    // MARK: State

    private mutating func loadStates(_ patient: String) throws {
        guard states[patient] == nil else { return }
        var byRule: [String: (active: Bool, since: Int64)] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(sql: "SELECT rule, active, since FROM alert_states WHERE patient_id = ?"), arguments: [patient]) {
            byRule[row["rule"]] = (row["active"], row["since"])
        }
        states[patient] = byRule
    }

    /// Marks a rule active. - Returns: true when it was not active before (a new condition).
    private mutating func activate(_ patient: String, _ rule: String, level: ThresholdLevel, at: Int64) throws -> Bool {
        try loadStates(patient)
        if let s = states[patient]?[rule] {
            if s.active { return false }
            // A reading older than the recovery it follows is history: it raises, but does not reactivate.
            if at < s.since { return true }
        }
        states[patient]![rule] = (true, at)
        try db.cachedStatement(sql: """
            INSERT INTO alert_states(patient_id, rule, active, level, since) VALUES (?, ?, 1, ?, ?)
            ON CONFLICT(patient_id, rule) DO UPDATE SET active = 1, level = excluded.level, since = excluded.since
            """).execute(arguments: [patient, rule, level.rawValue, at])
        return true
    }

    /// Clears an active rule, and tells the condition's unresolved task.
    private mutating func recover(_ patient: String, _ rule: String, condition: TaskCondition, at: Int64, readingID: Int64) throws {
        try loadStates(patient)
        guard let s = states[patient]?[rule], s.active, at >= s.since else { return }
        states[patient]![rule] = (false, at)
        try db.cachedStatement(sql: "UPDATE alert_states SET active = 0, since = ? WHERE patient_id = ? AND rule = ?")
            .execute(arguments: [at, patient, rule])
        if let task = try unresolvedTask(condition.patientID, vital: condition.vital, direction: condition.direction) {
            try event(task.id, "recovered", readingID: readingID, detail: rule)
        }
    }

    // MARK: Rules in force

    private mutating func effectiveLimits(_ patient: String, _ programs: [Program], _ type: VitalType) -> ThresholdLimits {
        if let cached = limitsCache[patient]?[type] { return cached }
        let limits = pipeline.thresholds.effectiveLimits(for: type, programs: programs, overrides: overrides[patient] ?? [:]).limits
        limitsCache[patient, default: [:]][type] = limits
        return limits
    }

    private mutating func trendRules(_ patient: String, _ programs: [Program]) throws -> [TrendRule] {
        if let cached = rulesCache[patient] { return cached }
        var rules = pipeline.alerts.rules(for: programs)
        if !rules.isEmpty {
            let overrides = try AppDatabase.ruleOverrides(db, patientID: patient)
            rules = rules.compactMap { rule in
                guard let o = overrides[rule.id] else { return rule }
                if o.disabled { return nil }
                var r = rule
                if let bound = o.bound { r.bound = bound }
                return r
            }
        }
        rulesCache[patient] = rules
        return rules
    }

    private func windowReadings(_ patient: String, _ rule: TrendRule, _ o: Observation) throws -> [WindowReading] {
        let end = epochMilliseconds(o.measuredAt)
        let start = end - Int64(rule.windowSeconds * 1000)
        return try Row.fetchAll(
            db.cachedStatement(sql: """
                SELECT measured_at, canonical_value FROM readings
                WHERE patient_id = ? AND type = ? AND measured_at >= ? AND measured_at < ?
                """),
            arguments: [patient, rule.type.rawValue, start, end]
        ).map { WindowReading(measuredAt: dateFromEpochMilliseconds($0["measured_at"]), value: $0["canonical_value"]) }
    }

    // MARK: Tasks

    private mutating func apply(_ group: Group) throws {
        let c = group.condition
        let unresolved = try unresolvedTask(c.patientID, vital: c.vital, direction: c.direction)?.priority
        if unresolved == nil && !group.newlyActive {
            let last = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT priority, resolved_at FROM tasks WHERE patient_id = ? AND vital = ? AND direction = ?
                    ORDER BY id DESC LIMIT 1
                    """),
                arguments: [c.patientID, c.vital, c.direction.rawValue])
            if let last {
                let lastLevel = ThresholdLevel(rawValue: last["priority"]) ?? .warning
                let resolvedAt: Int64 = last["resolved_at"] ?? nowMS
                let quiet = Double(nowMS - resolvedAt) / 1000 < pipeline.alerts.realertAfterSeconds
                if quiet && group.level <= lastLevel {
                    outcome.suppressed += 1
                    for rule in group.rules {
                        try db.cachedStatement(sql: "UPDATE alert_states SET suppressed = suppressed + 1 WHERE patient_id = ? AND rule = ?")
                            .execute(arguments: [c.patientID, rule])
                    }
                    return
                }
            }
        }
        try upsertTask(group, before: unresolved)
    }

    /// Opens a task for the group's condition, or adds an occurrence to the unresolved one.
    ///
    /// The partial unique index `tasks_one_unresolved_per_condition` makes the insert an upsert:
    /// two readings can never leave two unresolved tasks for one condition. A new occurrence raises
    /// the priority if it is worse; a task raised to `critical` returns to `open` even if it was
    /// acknowledged, so that a worsening is seen again, and starts its escalation clock.
    private mutating func upsertTask(_ group: Group, before: String?) throws {
        let c = group.condition
        let policy = pipeline.alerts
        let measured = epochMilliseconds(group.latest.observation.measuredAt)
        let critical = group.level == .critical
        let escalation: Int64? = critical ? nowMS + Int64(policy.escalationAfterSeconds * 1000) : nil
        let confirmationDue: Int64? = critical
            ? epochMilliseconds(group.worst.observation.measuredAt) + Int64(policy.confirmationWindowSeconds * 1000) : nil
        let row = try Row.fetchOne(
            db.cachedStatement(sql: """
                INSERT INTO tasks(patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
                                  last_reading_id, last_measured_at, occurrences, opened_at, updated_at,
                                  next_escalation_at, confirmation, confirmation_due_at)
                VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
                ON CONFLICT(patient_id, vital, direction) WHERE status <> 'resolved' DO UPDATE SET
                    occurrences = tasks.occurrences + 1,
                    updated_at = excluded.updated_at,
                    last_reading_id = CASE WHEN excluded.last_measured_at >= tasks.last_measured_at
                                           THEN excluded.last_reading_id ELSE tasks.last_reading_id END,
                    last_measured_at = max(tasks.last_measured_at, excluded.last_measured_at),
                    status = CASE WHEN excluded.priority = 'critical' AND tasks.priority = 'warning'
                                  THEN 'open' ELSE tasks.status END,
                    reason = CASE WHEN excluded.priority = 'critical' AND tasks.priority = 'warning'
                                  THEN excluded.reason ELSE tasks.reason END,
                    next_escalation_at = CASE WHEN excluded.priority = 'critical' AND tasks.priority = 'warning'
                                              THEN excluded.next_escalation_at ELSE tasks.next_escalation_at END,
                    confirmation = CASE WHEN excluded.priority = 'critical' AND tasks.priority = 'warning'
                                        THEN excluded.confirmation ELSE tasks.confirmation END,
                    confirmation_due_at = CASE WHEN excluded.priority = 'critical' AND tasks.priority = 'warning'
                                               THEN excluded.confirmation_due_at ELSE tasks.confirmation_due_at END,
                    priority = CASE WHEN excluded.priority = 'critical' THEN 'critical' ELSE tasks.priority END
                RETURNING id
                """),
            arguments: [
                c.patientID, group.kind.rawValue, c.vital, c.direction.rawValue, group.level.rawValue, group.reason,
                group.worst.readingID, group.latest.readingID, measured, nowMS, nowMS, escalation,
                critical ? Confirmation.pending.rawValue : nil, confirmationDue,
            ])!
        let taskID: Int64 = row["id"]
        if let due = confirmationDue, before == nil || before == ThresholdLevel.warning.rawValue {
            // The upsert has just made this task wait for a re-measurement.
            pendingConfirmations[c.patientID]?.removeAll { $0.taskID == taskID }
            pendingConfirmations[c.patientID]?.append(
                PendingConfirmation(taskID: taskID, vital: c.vital, direction: c.direction, due: due))
        }
        let event: String
        if before == nil {
            event = "opened"
            outcome.opened[group.level, default: 0] += 1
        } else if before == ThresholdLevel.warning.rawValue && critical {
            event = "priority_raised"
            outcome.updated += 1
        } else {
            event = "updated"
            outcome.updated += 1
        }
        try self.event(taskID, event, readingID: group.worst.readingID, detail: group.level.rawValue)
    }

    /// Gathers the breaches of late readings into the patient's one `late_data` review task.
    private mutating func lateDataTask(_ patient: String, _ groups: [Group]) throws {
        let hours = Observation.format(pipeline.alerts.lateAfterSeconds / 3_600)
        let first = groups[0]
        let reason = "Readings received more than \(hours) h after they were measured breached rules; review them. First: \(first.reason)"
        let before = try unresolvedTask(patient, vital: "late_data", direction: .high)
        let row = try Row.fetchOne(
            db.cachedStatement(sql: """
                INSERT INTO tasks(patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
                                  last_reading_id, last_measured_at, occurrences, opened_at, updated_at)
                VALUES (?, 'late_data', 'late_data', 'high', 'warning', 'open', ?, ?, ?, ?, 1, ?, ?)
                ON CONFLICT(patient_id, vital, direction) WHERE status <> 'resolved' DO UPDATE SET
                    occurrences = tasks.occurrences + 1,
                    updated_at = excluded.updated_at,
                    last_reading_id = CASE WHEN excluded.last_measured_at >= tasks.last_measured_at
                                           THEN excluded.last_reading_id ELSE tasks.last_reading_id END,
                    last_measured_at = max(tasks.last_measured_at, excluded.last_measured_at)
                RETURNING id
                """),
            arguments: [
                patient, reason, first.worst.readingID, first.latest.readingID,
                epochMilliseconds(first.latest.observation.measuredAt), nowMS, nowMS,
            ])!
        let taskID: Int64 = row["id"]
        outcome.lateBreaches += 1
        if before == nil {
            outcome.opened[.warning, default: 0] += 1
            try event(taskID, "opened", readingID: first.worst.readingID, detail: "late_data")
        } else {
            outcome.updated += 1
            try event(taskID, "updated", readingID: first.worst.readingID, detail: "late_data")
        }
    }

    /// Turns a device event into a task.
    ///
    /// - A meter's HI or LO marker (`above_range`, `below_range`) for a known vital is a `critical`
    ///   task of that vital's condition (glucose above the meter's range is above any limit): it joins
    ///   an unresolved glucose-high task, raising it to `critical`, or opens one. Late, it is a `warning`.
    /// - An error code, or a marker for an unknown vital, is a `routine` task for the device
    ///   (`device:<id>`, `high`), one unresolved per device; repeats add occurrences.
    mutating func raise(_ problem: DeviceProblem) throws {
        let e = problem.event
        let vital: String
        let direction: ThresholdDirection
        let priority: TaskPriority
        let reason: String
        if let type = e.type, e.kind != .deviceError {
            let above = e.kind == .aboveRange
            vital = type.taskVital
            direction = above ? .high : .low
            priority = problem.late ? .warning : .critical
            reason = "\(type.displayName) \(above ? "above" : "below") the measuring range of device \(e.deviceID) "
                + "(the device showed \(above ? "HI" : "LO") instead of a value); re-measure or check by other means"
        } else {
            vital = "device:\(e.deviceID)"
            direction = .high
            priority = .routine
            reason = "Device \(e.deviceID) reported an error (\(e.code))\(e.type.map { " while measuring \($0.displayName.lowercased())" } ?? ""); check the device with the patient"
        }
        let escalation: Int64? = priority == .critical ? nowMS + Int64(pipeline.alerts.escalationAfterSeconds * 1000) : nil
        let before = try unresolvedTask(problem.patientID, vital: vital, direction: direction)?.priority
        let taskID = try Int64.fetchOne(
            db.cachedStatement(sql: """
                INSERT INTO tasks(patient_id, kind, vital, direction, priority, status, reason, condition_key,
                                  last_measured_at, occurrences, opened_at, updated_at, next_escalation_at)
                VALUES (?, 'device', ?, ?, ?, 'open', ?, ?, ?, 1, ?, ?, ?)
                ON CONFLICT(patient_id, vital, direction) WHERE status <> 'resolved' DO UPDATE SET
                    occurrences = tasks.occurrences + 1,
                    updated_at = excluded.updated_at,
                    status = CASE WHEN excluded.priority = 'critical' AND tasks.priority <> 'critical'
                                  THEN 'open' ELSE tasks.status END,
                    reason = CASE WHEN excluded.priority = 'critical' AND tasks.priority <> 'critical'
                                  THEN excluded.reason ELSE tasks.reason END,
                    next_escalation_at = CASE WHEN excluded.priority = 'critical' AND tasks.priority <> 'critical'
                                              THEN excluded.next_escalation_at ELSE tasks.next_escalation_at END,
                    priority = CASE WHEN excluded.priority = 'critical' THEN 'critical'
                                    WHEN excluded.priority = 'warning' AND tasks.priority = 'routine' THEN 'warning'
                                    ELSE tasks.priority END
                RETURNING id
                """),
            arguments: [
                problem.patientID, vital, direction.rawValue, priority.rawValue, reason, "event \(problem.eventID)",
                e.measuredAt.map(epochMilliseconds), nowMS, nowMS, escalation,
            ])!
        if before == nil {
            if let level = ThresholdLevel(rawValue: priority.rawValue) { outcome.opened[level, default: 0] += 1 }
            try event(taskID, "opened", readingID: nil, detail: e.kind.rawValue)
        } else {
            outcome.updated += 1
            let raised = priority == .critical && before != TaskPriority.critical.rawValue
            try event(taskID, raised ? "priority_raised" : "updated", readingID: nil, detail: e.kind.rawValue)
        }
    }

    /// Settles the patient's pending confirmations that these readings fall within: a
    /// re-measurement still at the critical level confirms, one below it does not.
    private mutating func checkConfirmations(_ patient: String, _ entries: [StoredReading]) throws {
        if pendingConfirmations[patient] == nil {
            pendingConfirmations[patient] = try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT id, vital, direction, confirmation_due_at FROM tasks WHERE patient_id = ? AND confirmation = 'pending'
                    """),
                arguments: [patient]
            ).compactMap { row in
                ThresholdDirection(rawValue: row["direction"]).map {
                    PendingConfirmation(taskID: row["id"], vital: row["vital"], direction: $0, due: row["confirmation_due_at"])
                }
            }
        }
        guard let pending = pendingConfirmations[patient], !pending.isEmpty else { return }
        let window = Int64(pipeline.alerts.confirmationWindowSeconds * 1000)
        for task in pending {
            let (due, vital, direction) = (task.due, task.vital, task.direction)
            let repeats = entries.filter {
                let at = epochMilliseconds($0.observation.measuredAt)
                return $0.observation.type.taskVital == vital && at > due - window && at <= due
            }
            guard !repeats.isEmpty else { continue }
            var confirmed = false
            for entry in repeats {
                let limits = effectiveLimits(patient, entry.programs, entry.observation.type)
                if let b = ThresholdEvaluator.evaluate(entry.observation, against: limits), b.direction == direction, b.level == .critical {
                    confirmed = true
                }
            }
            let result: Confirmation = confirmed ? .confirmed : .notConfirmed
            let taskID = task.taskID
            pendingConfirmations[patient]?.removeAll { $0.taskID == taskID }
            try db.cachedStatement(sql: """
                UPDATE tasks SET confirmation = ?, confirmation_due_at = NULL, updated_at = ? WHERE id = ?
                """).execute(arguments: [result.rawValue, nowMS, taskID])
            try event(taskID, "confirmation", readingID: repeats[0].readingID, detail: result.rawValue)
        }
    }

    /// The unresolved task of a condition (at most one, by `tasks_one_unresolved_per_condition`).
    private func unresolvedTask(
        _ patient: String, vital: String, direction: ThresholdDirection
    ) throws -> (id: Int64, priority: String)? {
        try Row.fetchOne(
            db.cachedStatement(sql: """
                SELECT id, priority FROM tasks WHERE patient_id = ? AND vital = ? AND direction = ? AND status <> 'resolved'
                """),
            arguments: [patient, vital, direction.rawValue]
        ).map { ($0["id"], $0["priority"]) }
    }

    private func event(_ taskID: Int64, _ name: String, readingID: Int64?, detail: String?) throws {
        try db.cachedStatement(sql: """
            INSERT INTO task_events(task_id, at, event, actor, reading_id, detail) VALUES (?, ?, ?, 'vitalsd', ?, ?)
            """).execute(arguments: [taskID, nowMS, name, readingID, detail])
    }
}

/// A clinician's change to one trend rule for one patient.
public struct RuleOverride: Sendable, Hashable {
    /// Another bound, in the rule's canonical unit; nil keeps the configured one.
    public var bound: Double?
    /// The rule is off for this patient.
    public var disabled: Bool
    public init(bound: Double?, disabled: Bool) {
        self.bound = bound
        self.disabled = disabled
    }
}

extension AppDatabase {
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

    /// Sets, or with `nil` removes, a patient's change to one trend rule. Audited.
    /// - Throws: ``TaskError`` when the patient does not exist; database errors.
    public func setRuleOverride(patientID: String, ruleID: String, override: RuleOverride?, actor: String, at: Date = Date()) throws {
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
            try Self.audit(db, actor: actor, action: "rule.override", targetType: "patient", targetID: patientID, detail: detail, at: at)
        }
    }
}
