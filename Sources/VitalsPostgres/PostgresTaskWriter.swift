import Foundation
import Logging
import PostgresNIO
import VitalsDomain

/// The one writer of `tasks`, `task_events` and `outbox` on PostgreSQL: the twin of the SQLite task
/// writer (`AppDatabase.apply`), applying ``TaskChange``s in the caller's transaction. It decides
/// nothing: it inserts or updates the row with the task's next value (an update only from the version
/// it was decided on), appends the event and its outbox copy (``TaskEventMessage``), and the note.
/// The partial unique indexes (one unresolved task per condition, one task per timer key) are the
/// safety net: a change that would break them fails the transaction.
enum PostgresTaskWriter {
    /// Applies `changes` in order on `connection`, inside its transaction.
    /// - Parameter incarnation: part of each event's `event_id` (``TaskEventMessage/eventID(_:incarnation:)``).
    /// - Returns: the row id of each task the changes name, new ones included.
    /// - Throws: ``TaskError`` `conflict` when an update was decided from a version that is no longer
    ///   the stored one, `not_found` for an unknown task; the server's error otherwise.
    @discardableResult
    static func apply(
        _ connection: PostgresConnection, _ changes: [TaskChange], incarnation: String, logger: Logger
    ) async throws -> [TaskRef: Int64] {
        var ledger = TaskWriteLedger()
        // Each event with the task as it is after its change, written together at the end.
        var events: [(task: CareTask, event: TaskEventRecord)] = []
        for change in changes {
            switch change {
            case .open(let task, let event):
                var t = ledger.toInsert(task)
                // A new task goes to the patient's care manager, unless that user is disabled.
                var assigned: String?
                if t.owner == nil {
                    let rows = try await connection.query("""
                        SELECT u.username FROM patients p JOIN users u ON u.username = p.care_manager
                        WHERE p.id = \(t.patientID) AND u.disabled = 0
                        """, logger: logger).collected()
                    assigned = try rows.first?.decode(String.self)
                    t.owner = assigned
                }
                var query = PostgresQuery(unsafeSQL: """
                    INSERT INTO tasks (\(columnList)) VALUES (\((1...columnCount + 1).map { "$\($0)" }.joined(separator: ", ")))
                    RETURNING id
                    """)
                bind(t, into: &query.binds)
                query.binds.append(t.version)
                let inserted = try await connection.query(query, logger: logger).collected()
                t.id = try inserted[0].decode(Int64.self)
                ledger.inserted(change.ref, t, assignedOwner: assigned)
                events.append((t, event))
            case .update(let ref, let task, let event):
                let (t, expected) = try ledger.toUpdate(ref, task)
                let assignments = columnNames.enumerated().map { "\($0.element) = $\($0.offset + 1)" }.joined(separator: ", ")
                var query = PostgresQuery(unsafeSQL: """
                    UPDATE tasks SET \(assignments), version = $\(columnCount + 1)
                    WHERE id = $\(columnCount + 2) AND version = $\(columnCount + 3)
                    RETURNING id
                    """)
                bind(t, into: &query.binds)
                query.binds.append(t.version)
                query.binds.append(t.id)
                query.binds.append(expected)
                let updated = try await connection.query(query, logger: logger).collected()
                guard updated.count == 1 else {
                    let exists = try await connection.query("SELECT 1 FROM tasks WHERE id = \(t.id)", logger: logger).collected()
                    throw TaskWriteLedger.updateRefused(taskID: t.id, exists: !exists.isEmpty)
                }
                ledger.updated(ref, t)
                if let event { events.append((t, event)) }
            case .note(let ref, let note):
                let taskID = try ledger.id(ref)
                try await connection.query("""
                    INSERT INTO task_notes (task_id, at, author, text)
                    VALUES (\(taskID), \(epochMilliseconds(note.at)), \(note.author), \(note.text))
                    """, logger: logger)
            }
        }
        try await appendEvents(connection, events, incarnation: incarnation, logger: logger)
        return ledger.ids
    }

    /// The task columns the writer sets, in the order of ``bind(_:into:)`` (without id and version).
    static let columnNames = [
        "patient_id", "kind", "vital", "direction", "priority", "status", "reason", "condition_key",
        "first_reading_id", "last_reading_id", "last_measured_at", "latest_summary",
        "worst_reading_id", "worst_summary", "worst_measured_at", "worst_severity", "worst_level",
        "occurrences", "opened_at", "updated_at", "acknowledged_at", "acknowledged_by", "resolved_at",
        "resolved_by", "escalation_level", "escalated_at", "next_escalation_at", "confirmation",
        "confirmation_due_at", "data_stale", "suppressed_breaches", "last_suppressed_at", "owner",
        "disposition", "escalated_to", "acknowledged_worst",
    ]
    static var columnCount: Int { columnNames.count }
    static let columnList = (columnNames + ["version"]).joined(separator: ", ")

    /// Binds a task's column values in the order of ``columnNames``.
    static func bind(_ t: CareTask, into binds: inout PostgresBindings) {
        let ms: (Date?) -> Int64? = { $0.map(epochMilliseconds) }
        binds.append(t.patientID)
        binds.append(t.kind.rawValue)
        binds.append(t.vital)
        binds.append(t.direction.rawValue)
        binds.append(t.priority.rawValue)
        binds.append(t.status.rawValue)
        binds.append(t.reason)
        binds.append(t.conditionKey)
        binds.append(t.firstReadingID)
        binds.append(t.latest?.readingID)
        binds.append(ms(t.latest?.measuredAt))
        binds.append(t.latest?.summary)
        binds.append(t.worst?.readingID)
        binds.append(t.worst?.summary)
        binds.append(ms(t.worst?.measuredAt))
        binds.append(t.worst?.severity)
        binds.append(t.worst?.level?.rawValue)
        binds.append(t.occurrences)
        binds.append(epochMilliseconds(t.openedAt))
        binds.append(epochMilliseconds(t.updatedAt))
        binds.append(ms(t.acknowledgedAt))
        binds.append(t.acknowledgedBy)
        binds.append(ms(t.resolvedAt))
        binds.append(t.resolvedBy)
        binds.append(t.escalationLevel)
        binds.append(ms(t.escalatedAt))
        binds.append(ms(t.nextEscalationAt))
        binds.append(t.confirmation?.rawValue)
        binds.append(ms(t.confirmationDueAt))
        binds.append(t.dataStale ? 1 : 0)
        binds.append(t.suppressedBreaches)
        binds.append(ms(t.lastSuppressedAt))
        binds.append(t.owner)
        binds.append(t.disposition?.rawValue)
        binds.append(t.escalatedTo)
        binds.append(t.acknowledgedWorst.map(TaskEventMessage.readingJSON))
    }

    /// Appends task events, in order, each with its outbox copy (the task as it is after its change),
    /// in three statements whatever their number: the events' ids are taken from the table's identity
    /// first, because each outbox body carries its event's id (a round trip per event cost more than
    /// the rest of a batch).
    static func appendEvents(
        _ connection: PostgresConnection, _ events: [(task: CareTask, event: TaskEventRecord)], incarnation: String, logger: Logger
    ) async throws {
        guard !events.isEmpty else { return }
        // Held to the commit: event ids are taken in commit order, so a delivery cursor at the highest
        // id delivered never passes an event that a concurrent batch has yet to commit.
        try await connection.query("SELECT pg_advisory_xact_lock(\(PostgresOutbox.orderLockKey))", logger: logger)
        let ids = try await connection.query("""
            SELECT nextval(pg_get_serial_sequence('task_events', 'id')) FROM generate_series(1, \(events.count))
            """, logger: logger).decode(Int64.self).collected().sorted()
        let eventIDs = ids.map { TaskEventMessage.eventID($0, incarnation: incarnation) }
        let at = events.map { epochMilliseconds($0.event.at) }
        let taskIDs = events.map(\.task.id)
        try await connection.query("""
            INSERT INTO task_events (id, task_id, at, event, actor, reading_id, detail)
            SELECT * FROM unnest(\(ids)::int8[], \(taskIDs)::int8[], \(at)::int8[], \(events.map(\.event.kind.rawValue))::text[],
                                 \(events.map(\.event.actor))::text[], \(NullableArray(events.map(\.event.readingID)))::int8[],
                                 \(NullableArray(events.map(\.event.detail)))::text[])
            """, logger: logger)
        let bodies = zip(eventIDs, events).map { TaskEventMessage.body(eventID: $0, task: $1.task, event: $1.event) }
        try await connection.query("""
            INSERT INTO outbox (id, task_id, patient_id, created_at, body, event_id)
            SELECT * FROM unnest(\(ids)::int8[], \(taskIDs)::int8[], \(events.map(\.task.patientID))::text[], \(at)::int8[],
                                 \(bodies)::text[], \(eventIDs)::text[])
            """, logger: logger)
    }

    /// The columns ``task(_:)`` reads, in its order: `SELECT \(taskColumns) FROM tasks`.
    static let taskColumns = "id, " + columnNames.joined(separator: ", ") + ", version"

    /// A task from a row of ``taskColumns``.
    static func task(_ row: PostgresRow) throws -> CareTask {
        let r = row.makeRandomAccess()
        func text(_ i: Int) throws -> String? { try r[i].decode(String?.self) }
        func int(_ i: Int) throws -> Int64? { try r[i].decode(Int64?.self) }
        func date(_ i: Int) throws -> Date? { try int(i).map(dateFromEpochMilliseconds) }
        // Indexes: 0 id, then columnNames from 1, then version.
        var t = CareTask(
            patientID: try r[1].decode(String.self), kind: TaskKind(rawValue: try r[2].decode(String.self)) ?? .threshold,
            vital: try r[3].decode(String.self), direction: ThresholdDirection(rawValue: try r[4].decode(String.self)) ?? .high,
            priority: TaskPriority(rawValue: try r[5].decode(String.self)) ?? .critical, reason: try r[7].decode(String.self),
            now: dateFromEpochMilliseconds(try r[19].decode(Int64.self)), conditionKey: try text(8))
        t.id = try r[0].decode(Int64.self)
        t.status = TaskStatus(rawValue: try r[6].decode(String.self)) ?? .open
        t.firstReadingID = try int(9)
        if let at = try date(11) {
            t.latest = TaskReading(readingID: try int(10), summary: try text(12) ?? "", measuredAt: at, severity: 0)
        }
        if let at = try date(15) {
            t.worst = TaskReading(
                readingID: try int(13), summary: try text(14) ?? "", measuredAt: at, severity: try r[16].decode(Double?.self) ?? 0,
                level: try text(17).flatMap(ThresholdLevel.init(rawValue:)))
        }
        t.occurrences = try r[18].decode(Int.self)
        t.openedAt = dateFromEpochMilliseconds(try r[19].decode(Int64.self))
        t.updatedAt = dateFromEpochMilliseconds(try r[20].decode(Int64.self))
        t.acknowledgedAt = try date(21)
        t.acknowledgedBy = try text(22)
        t.resolvedAt = try date(23)
        t.resolvedBy = try text(24)
        t.escalationLevel = try r[25].decode(Int.self)
        t.escalatedAt = try date(26)
        t.nextEscalationAt = try date(27)
        t.confirmation = try text(28).flatMap(Confirmation.init(rawValue:))
        t.confirmationDueAt = try date(29)
        t.dataStale = try r[30].decode(Int.self) != 0
        t.suppressedBreaches = try r[31].decode(Int.self)
        t.lastSuppressedAt = try date(32)
        t.owner = try text(33)
        t.disposition = try text(34).flatMap(TaskDisposition.init(rawValue:))
        t.escalatedTo = try text(35)
        t.acknowledgedWorst = TaskEventMessage.reading(json: try text(36))
        t.version = try r[37].decode(Int.self)
        return t
    }
}
