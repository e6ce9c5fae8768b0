import Foundation
import GRDB
import VitalsDomain

/// The one writer of `tasks`, `task_events`, `task_notes` and `outbox`.
///
/// Every change to the task queue, whether the rules (ingest, timers) or a person (acknowledge,
/// resolve, note) decided it, arrives here as a ``TaskChange`` and is applied in the caller's
/// transaction. The writer decides nothing: it inserts or updates the row with the task's next value,
/// appends the event and its outbox copy (the JSON of the README's "Task events", built here), and
/// appends the note. The partial unique indexes (one unresolved task per condition, one task per
/// timer key) stay as the safety net: a change that would break them fails the transaction.
extension AppDatabase {
    /// Applies task changes in order inside a write transaction.
    ///
    /// - Parameter incarnation: the opening of the database whose events these are
    ///   (``AppDatabase/incarnation``), part of each event's `event_id`.
    /// - Returns: the row id of each task the changes name, new ones included.
    /// - Throws: ``TaskError`` `conflict` when an update was decided from a version of the task that
    ///   is no longer the stored one (another writer changed it first), `not_found` for an unknown
    ///   task; database errors (a broken partial unique index, disk full).
    @discardableResult
    static func apply(_ db: Database, _ changes: [TaskChange], incarnation: String) throws -> [TaskRef: Int64] {
        var ledger = TaskWriteLedger()
        for change in changes {
            switch change {
            case .open(let task, let event):
                var t = ledger.toInsert(task)
                // A new task goes to the patient's care manager (the caseload), unless that user is
                // disabled; without one it waits in Unassigned.
                var assigned: String?
                if t.owner == nil {
                    assigned = try String.fetchOne(
                        db.cachedStatement(sql: """
                            SELECT u.username FROM patients p JOIN users u ON u.username = p.care_manager
                            WHERE p.id = ? AND u.disabled = 0
                            """),
                        arguments: [t.patientID])
                    t.owner = assigned
                }
                try db.cachedStatement(sql: """
                    INSERT INTO tasks(patient_id, kind, vital, direction, priority, status, reason, condition_key,
                                      first_reading_id, last_reading_id, last_measured_at, latest_summary,
                                      worst_reading_id, worst_summary, worst_measured_at, worst_severity, worst_level,
                                      occurrences, opened_at, updated_at, acknowledged_at, acknowledged_by, resolved_at,
                                      resolved_by, escalation_level, escalated_at, next_escalation_at, confirmation,
                                      confirmation_due_at, data_stale, suppressed_breaches, last_suppressed_at, owner,
                                      disposition, escalated_to, acknowledged_worst, version)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """).execute(arguments: StatementArguments(Self.columns(t)) + [t.version])
                t.id = db.lastInsertedRowID
                ledger.inserted(change.ref, t, assignedOwner: assigned)
                try appendEvent(db, t, event, incarnation: incarnation)
            case .update(let ref, let task, let event):
                let (t, expected) = try ledger.toUpdate(ref, task)
                try db.cachedStatement(sql: """
                    UPDATE tasks SET patient_id = ?, kind = ?, vital = ?, direction = ?, priority = ?, status = ?, reason = ?,
                        condition_key = ?, first_reading_id = ?, last_reading_id = ?, last_measured_at = ?, latest_summary = ?,
                        worst_reading_id = ?, worst_summary = ?, worst_measured_at = ?, worst_severity = ?, worst_level = ?,
                        occurrences = ?, opened_at = ?, updated_at = ?, acknowledged_at = ?, acknowledged_by = ?,
                        resolved_at = ?, resolved_by = ?, escalation_level = ?, escalated_at = ?, next_escalation_at = ?,
                        confirmation = ?, confirmation_due_at = ?, data_stale = ?, suppressed_breaches = ?,
                        last_suppressed_at = ?, owner = ?, disposition = ?, escalated_to = ?, acknowledged_worst = ?, version = ?
                    WHERE id = ? AND version = ?
                    """).execute(arguments: StatementArguments(Self.columns(t)) + [t.version, t.id, expected])
                guard db.changesCount == 1 else {
                    let exists = try Int.fetchOne(db, sql: "SELECT 1 FROM tasks WHERE id = ?", arguments: [t.id]) != nil
                    throw TaskWriteLedger.updateRefused(taskID: t.id, exists: exists)
                }
                ledger.updated(ref, t)
                if let event { try appendEvent(db, t, event, incarnation: incarnation) }
            case .note(let ref, let note):
                let taskID = try ledger.id(ref)
                try db.cachedStatement(sql: "INSERT INTO task_notes(task_id, at, author, text) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [taskID, epochMilliseconds(note.at), note.author, note.text])
            }
        }
        return ledger.ids
    }

    /// The columns of a task row in the order of the INSERT and UPDATE above (without version and id).
    private static func columns(_ t: CareTask) -> [(any DatabaseValueConvertible)?] {
        let ms: (Date?) -> Int64? = { $0.map(epochMilliseconds) }
        return [
            t.patientID, t.kind.rawValue, t.vital, t.direction.rawValue, t.priority.rawValue, t.status.rawValue, t.reason,
            t.conditionKey, t.firstReadingID, t.latest?.readingID, ms(t.latest?.measuredAt), t.latest?.summary,
            t.worst?.readingID, t.worst?.summary, ms(t.worst?.measuredAt), t.worst?.severity, t.worst?.level?.rawValue,
            t.occurrences, ms(t.openedAt), ms(t.updatedAt), ms(t.acknowledgedAt), t.acknowledgedBy, ms(t.resolvedAt),
            t.resolvedBy, t.escalationLevel, ms(t.escalatedAt), ms(t.nextEscalationAt), t.confirmation?.rawValue,
            ms(t.confirmationDueAt), t.dataStale, t.suppressedBreaches, ms(t.lastSuppressedAt), t.owner,
            t.disposition?.rawValue, t.escalatedTo, t.acknowledgedWorst.map(Self.readingJSON),
        ]
    }

    /// A task reading as stored in `acknowledged_worst` (``TaskEventMessage/readingJSON(_:)``).
    static func readingJSON(_ r: TaskReading) -> String { TaskEventMessage.readingJSON(r) }

    static func reading(json: String?) -> TaskReading? { TaskEventMessage.reading(json: json) }

    /// `2026-11-28T13:10:05.120Z` (``TaskEventMessage/isoMilliseconds(_:)``).
    static func isoMilliseconds(_ date: Date) -> String { TaskEventMessage.isoMilliseconds(date) }

    /// Appends a task event and its outbox copy: the task as it is after the change.
    private static func appendEvent(_ db: Database, _ task: CareTask, _ event: TaskEventRecord, incarnation: String) throws {
        let at = epochMilliseconds(event.at)
        try db.cachedStatement(sql: "INSERT INTO task_events(task_id, at, event, actor, reading_id, detail) VALUES (?, ?, ?, ?, ?, ?)")
            .execute(arguments: [task.id, at, event.kind.rawValue, event.actor, event.readingID, event.detail])
        let id = db.lastInsertedRowID
        let eventID = TaskEventMessage.eventID(id, incarnation: incarnation)
        try db.cachedStatement(sql: "INSERT INTO outbox(id, task_id, patient_id, created_at, body, event_id) VALUES (?, ?, ?, ?, ?, ?)")
            .execute(arguments: [id, task.id, task.patientID, at, TaskEventMessage.body(eventID: eventID, task: task, event: event), eventID])
    }

    /// The task with `id` in this transaction, or nil.
    static func fetchTask(_ db: Database, id: Int64) throws -> CareTask? {
        try Row.fetchOne(db.cachedStatement(sql: "SELECT \(CareTask.columns) FROM tasks WHERE id = ?"), arguments: [id]).map(CareTask.init(row:))
    }
}

extension CareTask {
    /// The columns ``init(row:)`` reads, in its order: select them as `SELECT \(CareTask.columns) FROM tasks`.
    static let columns = """
        id, patient_id, kind, vital, direction, priority, status, reason, condition_key, first_reading_id, last_reading_id,
        last_measured_at, latest_summary, worst_reading_id, worst_summary, worst_measured_at, worst_severity, worst_level,
        occurrences, opened_at, updated_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, escalation_level,
        escalated_at, next_escalation_at, confirmation, confirmation_due_at, data_stale, suppressed_breaches,
        last_suppressed_at, version, owner, disposition, escalated_to, acknowledged_worst
        """

    /// ``columns`` qualified by a table alias, for a join: `SELECT \(CareTask.columns(of: "t")), … FROM tasks t JOIN …`.
    static func columns(of alias: String) -> String {
        columns.split(separator: ",").map { "\(alias).\($0.trimmingCharacters(in: .whitespacesAndNewlines))" }.joined(separator: ", ")
    }

    /// A task from a row of ``columns`` (further columns may follow), read by position (a batch reads
    /// hundreds of tasks).
    init(row: Row) {
        func date(_ index: Int) -> Date? { (row[index] as Int64?).map(dateFromEpochMilliseconds) }
        self.init(
            patientID: row[1], kind: TaskKind(rawValue: row[2]) ?? .threshold, vital: row[3],
            direction: ThresholdDirection(rawValue: row[4]) ?? .high, priority: TaskPriority(rawValue: row[5]) ?? .critical,
            reason: row[7], now: dateFromEpochMilliseconds(row[19]), conditionKey: row[8])
        id = row[0]
        status = TaskStatus(rawValue: row[6]) ?? .open
        firstReadingID = row[9]
        if let at = date(11) {
            latest = TaskReading(readingID: row[10], summary: row[12] ?? "", measuredAt: at, severity: 0)
        }
        if let at = date(15) {
            worst = TaskReading(
                readingID: row[13], summary: row[14] ?? "", measuredAt: at, severity: row[16] ?? 0,
                level: (row[17] as String?).flatMap(ThresholdLevel.init(rawValue:)))
        }
        occurrences = row[18]
        updatedAt = dateFromEpochMilliseconds(row[20])
        acknowledgedAt = date(21)
        acknowledgedBy = row[22]
        resolvedAt = date(23)
        resolvedBy = row[24]
        escalationLevel = row[25]
        escalatedAt = date(26)
        nextEscalationAt = date(27)
        confirmation = (row[28] as String?).flatMap(Confirmation.init(rawValue:))
        confirmationDueAt = date(29)
        dataStale = row[30]
        suppressedBreaches = row[31]
        lastSuppressedAt = date(32)
        version = row[33]
        owner = row[34]
        disposition = (row[35] as String?).flatMap(TaskDisposition.init(rawValue:))
        escalatedTo = row[36]
        acknowledgedWorst = AppDatabase.reading(json: row[37])
    }
}

