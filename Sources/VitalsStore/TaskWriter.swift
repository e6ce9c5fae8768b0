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
        var ids: [TaskRef: Int64] = [:]
        // The version each task has in the database now, as this writer left it: an update expects it
        // and writes one more.
        var versions: [TaskRef: Int] = [:]
        // The owner this writer gave a task it opened: the engine's later changes of the same task in
        // this call carry its copy from before the open, without it.
        var assignedOwners: [TaskRef: String] = [:]
        func id(_ ref: TaskRef) throws -> Int64 {
            if case .stored(let id) = ref { return id }
            guard let id = ids[ref] else { throw TaskError(.notFound, "a change names a task not opened before it") }
            return id
        }
        for change in changes {
            switch change {
            case .open(let task, let event):
                var t = task
                // A new task goes to the patient's care manager (the caseload), unless that user is
                // disabled; without one it waits in Unassigned.
                if t.owner == nil {
                    t.owner = try String.fetchOne(
                        db.cachedStatement(sql: """
                            SELECT u.username FROM patients p JOIN users u ON u.username = p.care_manager
                            WHERE p.id = ? AND u.disabled = 0
                            """),
                        arguments: [t.patientID])
                    if let owner = t.owner { assignedOwners[change.ref] = owner }
                }
                t.version = max(task.version, 1)
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
                ids[change.ref] = t.id
                versions[change.ref] = t.version
                try appendEvent(db, t, event, incarnation: incarnation)
            case .update(let ref, let task, let event):
                var t = task
                t.id = try id(ref)
                if t.owner == nil, let owner = assignedOwners[ref] { t.owner = owner }
                let expected = versions[ref] ?? (task.version - 1)
                t.version = expected + 1
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
                    throw exists ? TaskError(.conflict, "task \(t.id) was changed by someone else; look at it again")
                        : TaskError(.notFound, "task \(t.id) does not exist")
                }
                ids[ref] = t.id
                versions[ref] = t.version
                if let event { try appendEvent(db, t, event, incarnation: incarnation) }
            case .note(let ref, let note):
                let taskID = try id(ref)
                try db.cachedStatement(sql: "INSERT INTO task_notes(task_id, at, author, text) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [taskID, epochMilliseconds(note.at), note.author, note.text])
            }
        }
        return ids
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

    /// A task reading as stored in `acknowledged_worst`: `{"reading_id":…,"summary":…,"measured_at":…,
    /// "severity":…,"level":…}` (JSONEncoder, sorted keys).
    static func readingJSON(_ r: TaskReading) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: (try? encoder.encode(r)) ?? Data("null".utf8), as: UTF8.self)
    }

    static func reading(json: String?) -> TaskReading? {
        guard let json else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try? decoder.decode(TaskReading.self, from: Data(json.utf8))
    }

    /// Appends a task event and its outbox copy: the task as it is after the change.
    private static func appendEvent(_ db: Database, _ task: CareTask, _ event: TaskEventRecord, incarnation: String) throws {
        let at = epochMilliseconds(event.at)
        try db.cachedStatement(sql: "INSERT INTO task_events(task_id, at, event, actor, reading_id, detail) VALUES (?, ?, ?, ?, ?, ?)")
            .execute(arguments: [task.id, at, event.kind.rawValue, event.actor, event.readingID, event.detail])
        let id = db.lastInsertedRowID
        let eventID = outboxEventID(id, incarnation: incarnation)
        try db.cachedStatement(sql: "INSERT INTO outbox(id, task_id, patient_id, created_at, body, event_id) VALUES (?, ?, ?, ?, ?, ?)")
            .execute(arguments: [id, task.id, task.patientID, at, outboxBody(eventID: eventID, task: task, event: event), eventID])
    }

    /// A task event's `event_id`, the receivers' idempotency key: `task-event-<row id>-<incarnation>`,
    /// e.g. `task-event-42-3f09a1c2b7de`. The row id alone is not unique for ever: after a restore
    /// from a backup, SQLite counts on from the copy's highest id, so events raised after the restore
    /// would repeat the ids of events delivered after the backup was taken, and a receiver that drops
    /// repeats would drop them. The incarnation is new each time the database is opened, which a
    /// restore always involves.
    static func outboxEventID(_ id: Int64, incarnation: String) -> String {
        "task-event-\(id)-\(incarnation)"
    }

    /// The delivered form of a task event (README, "Task events"): FHIR R4 Task vocabulary where it
    /// fits, times in UTC with milliseconds, the task's latest and worst readings with their
    /// measurement times. Carries values, so it is PHI for the receiving system.
    static func outboxBody(eventID: String, task t: CareTask, event: TaskEventRecord) -> String {
        var json = JSONWriter()
        json.begin()
        json.field("event_id", eventID)
        json.field("event", event.kind.rawValue)
        json.field("at", isoMilliseconds(event.at))
        json.field("actor", event.actor)
        json.field("detail", event.detail)
        json.key("task")
        json.begin()
        json.field("id", t.id)
        json.field("patient_id", t.patientID)
        json.field("kind", t.kind.rawValue)
        json.field("condition", t.vital)
        json.field("direction", t.direction.rawValue)
        json.field("priority", t.priority.rawValue)
        json.field("fhir_priority", t.priority.fhirPriority)
        json.field("status", t.status.rawValue)
        json.field("fhir_status", t.status.fhirStatus)
        json.field("reason", t.reason)
        json.field("occurrences", Int64(t.occurrences))
        json.field("escalation_level", Int64(t.escalationLevel))
        json.field("escalated_to", t.escalatedTo)
        json.field("confirmation", t.confirmation?.rawValue)
        json.field("data_stale", t.dataStale)
        json.field("opened_at", isoMilliseconds(t.openedAt))
        json.field("acknowledged_by", t.acknowledgedBy)
        json.field("resolved_by", t.resolvedBy)
        json.field("owner", t.owner)
        json.field("disposition", t.disposition?.rawValue)
        for (name, reading) in [("latest", t.latest), ("worst", t.worst)] {
            json.key(name)
            if let reading {
                json.begin()
                json.field("reading_id", reading.readingID)
                json.field("summary", reading.summary)
                json.field("measured_at", isoMilliseconds(reading.measuredAt))
                json.end()
            } else {
                json.null()
            }
        }
        json.field("suppressed_breaches", Int64(t.suppressedBreaches))
        json.field("version", Int64(t.version))
        json.end()
        json.end()
        return json.text
    }

    /// `2026-11-28T13:10:05.120Z`.
    static func isoMilliseconds(_ date: Date) -> String {
        // By hand (days to civil date, H. Hinnant's algorithm): the format style costs more than
        // the rest of an outbox row.
        let ms = epochMilliseconds(date)
        let days = Int64((Double(ms) / 86_400_000).rounded(.down))
        let inDay = ms - days * 86_400_000
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(inDay / 3_600_000, 2)):\(pad(inDay / 60_000 % 60, 2)):"
            + "\(pad(inDay / 1_000 % 60, 2)).\(pad(inDay % 1_000, 3))Z"
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

/// A small JSON writer for the outbox bodies: objects, strings, integers, booleans and null,
/// escaped per RFC 8259. Faster than an encoder, and with a fixed member order.
struct JSONWriter {
    private(set) var text = ""
    /// Whether the object being written has no member yet, innermost last.
    private var empty: [Bool] = []

    /// Starts an object; its members follow (``key(_:)``, the `field` methods), then ``end()``.
    mutating func begin() {
        text += "{"
        empty.append(true)
    }

    /// Ends the innermost object.
    mutating func end() {
        empty.removeLast()
        text += "}"
    }

    /// Starts a member; its value follows (``begin()`` or ``null()``).
    mutating func key(_ name: String) {
        if empty[empty.count - 1] { empty[empty.count - 1] = false } else { text += "," }
        string(name)
        text += ":"
    }

    mutating func null() { text += "null" }

    mutating func field(_ name: String, _ value: String?) {
        key(name)
        if let value { string(value) } else { null() }
    }

    mutating func field(_ name: String, _ value: Int64?) {
        key(name)
        text += value.map(String.init) ?? "null"
    }

    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }

    private mutating func string(_ s: String) {
        text += "\""
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            text += s
            text += "\""
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
