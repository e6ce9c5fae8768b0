import Foundation
import GRDB
import VitalsDomain

/// The state of a task in the care manager's queue: `open` → `acknowledged` → `resolved`.
/// Vocabulary follows FHIR Task status where it fits (`requested`/`accepted`/`completed`).
public enum TaskStatus: String, Sendable, CaseIterable, Codable {
    case open
    case acknowledged
    case resolved
}

/// How urgent a task is. `critical` and `warning` come from thresholds (red and yellow flags);
/// `routine` tasks come from timers (adherence, silent devices) and go to the same queue.
public enum TaskPriority: String, Sendable, CaseIterable, Codable {
    case critical
    case warning
    case routine
}

/// What raised a task.
public enum TaskKind: String, Sendable, CaseIterable, Codable {
    /// A reading breached a threshold.
    case threshold
    /// A trend rule breached: change, average or count over a window.
    case trend
    /// Late readings (device memory, a backlog) breached rules; one review task per patient.
    case lateData = "late_data"
    /// 16 days of data can no longer be reached in the current device period.
    case daysOfData = "days_of_data"
    /// The patient's devices have sent nothing for the configured number of days.
    case noData = "no_data"
    /// A device reported a problem: an error code, a value beyond the meter's range, a low battery.
    case device
}

/// A task in the care manager's queue: one condition (patient, vital, direction).
public struct CareTask: Sendable, Hashable, Codable {
    public var id: Int64
    public var patientID: String
    public var kind: TaskKind
    /// `blood_pressure`, `glucose`, `spo2`, … (``VitalType/taskVital``); `days_of_data` or `no_data` for timer tasks.
    public var vital: String
    public var direction: ThresholdDirection
    /// `critical` (red flag), `warning` or `routine`.
    public var priority: TaskPriority
    public var status: TaskStatus
    /// Why it was raised, e.g. "Glucose 48 mg/dL below critical limit 54 mg/dL".
    public var reason: String
    /// The reading that opened it (threshold tasks only).
    public var firstReadingID: Int64?
    public var lastReadingID: Int64?
    /// Messages whose readings breached this condition while the task was unresolved.
    public var occurrences: Int
    public var openedAt: Date
    public var updatedAt: Date
    public var acknowledgedAt: Date?
    public var acknowledgedBy: String?
    public var resolvedAt: Date?
    public var resolvedBy: String?
    public var note: String?
    /// Times the task was escalated for lack of acknowledgement (0: never).
    public var escalationLevel: Int
    public var escalatedAt: Date?
    /// For a `critical` task: whether a re-measurement confirmed it.
    public var confirmation: Confirmation?
    /// The patient's devices went silent while the task was unresolved: its readings are stale.
    public var dataStale: Bool
    /// The user name of who has the task (claimed, assigned, or the patient's care manager when it
    /// opened); nil: unassigned.
    public var owner: String?
    /// Rises whenever the owner or the status changes; claim and assign compare and set it.
    public var version: Int
    /// Why a resolved task was closed (``TaskDisposition``), when resolved in the workspace.
    public var disposition: TaskDisposition?

    enum CodingKeys: String, CodingKey {
        case id, kind, vital, direction, priority, status, reason, occurrences, note
        case patientID = "patient_id"
        case firstReadingID = "first_reading_id"
        case lastReadingID = "last_reading_id"
        case openedAt = "opened_at"
        case updatedAt = "updated_at"
        case acknowledgedAt = "acknowledged_at"
        case acknowledgedBy = "acknowledged_by"
        case resolvedAt = "resolved_at"
        case resolvedBy = "resolved_by"
        case escalationLevel = "escalation_level"
        case escalatedAt = "escalated_at"
        case confirmation
        case dataStale = "data_stale"
        case owner, version, disposition
    }

    init(row: Row) {
        id = row["id"]
        patientID = row["patient_id"]
        kind = TaskKind(rawValue: row["kind"]) ?? .threshold
        vital = row["vital"]
        direction = ThresholdDirection(rawValue: row["direction"]) ?? .high
        priority = TaskPriority(rawValue: row["priority"]) ?? .critical
        status = TaskStatus(rawValue: row["status"]) ?? .open
        reason = row["reason"]
        firstReadingID = row["first_reading_id"]
        lastReadingID = row["last_reading_id"]
        occurrences = row["occurrences"]
        openedAt = dateFromEpochMilliseconds(row["opened_at"])
        updatedAt = dateFromEpochMilliseconds(row["updated_at"])
        acknowledgedAt = (row["acknowledged_at"] as Int64?).map(dateFromEpochMilliseconds)
        acknowledgedBy = row["acknowledged_by"]
        resolvedAt = (row["resolved_at"] as Int64?).map(dateFromEpochMilliseconds)
        resolvedBy = row["resolved_by"]
        note = row["note"]
        escalationLevel = row["escalation_level"]
        escalatedAt = (row["escalated_at"] as Int64?).map(dateFromEpochMilliseconds)
        confirmation = (row["confirmation"] as String?).flatMap(Confirmation.init(rawValue:))
        dataStale = row["data_stale"]
        owner = row["owner"]
        version = row["version"]
        disposition = (row["disposition"] as String?).flatMap(TaskDisposition.init(rawValue:))
    }
}

/// One change in a task's history.
public struct TaskEvent: Sendable, Hashable, Codable {
    public var at: Date
    /// `opened`, `updated`, `priority_raised`, `acknowledged`, `resolved`, `escalated`, `recovered`,
    /// `confirmation`, `data_stale`.
    public var event: String
    public var actor: String
    public var readingID: Int64?
    public var detail: String?
}

/// A task change that cannot be made.
public struct TaskError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension AppDatabase {
    /// Tasks in queue order: unresolved first, `critical` before `warning`, oldest first.
    /// - Parameter status: only tasks in this state; all when nil.
    public func tasks(status: TaskStatus? = nil, patientID: String? = nil) throws -> [CareTask] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM tasks
                    WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR patient_id = ?2)
                    ORDER BY status = 'resolved', CASE priority WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, opened_at, id
                    """,
                arguments: [status?.rawValue, patientID]
            ).map(CareTask.init(row:))
        }
    }

    /// The task with `id` and its history, oldest event first.
    public func task(id: Int64) throws -> (task: CareTask, events: [TaskEvent])? {
        try writer.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id]) else { return nil }
            let events = try Row.fetchAll(
                db, sql: "SELECT at, event, actor, reading_id, detail FROM task_events WHERE task_id = ? ORDER BY id",
                arguments: [id]
            ).map { r in
                TaskEvent(at: dateFromEpochMilliseconds(r["at"]), event: r["event"], actor: r["actor"],
                          readingID: r["reading_id"], detail: r["detail"])
            }
            return (CareTask(row: row), events)
        }
    }

    /// Marks an open task as seen by a care manager.
    /// - Throws: ``TaskError`` when the task does not exist or is not `open`.
    /// - Parameter time: minutes spent, logged against the task in the same transaction.
    public func acknowledgeTask(id: Int64, by actor: String, note: String? = nil, time: NewTimeEntry? = nil, at: Date = Date()) throws -> CareTask {
        try transition(id: id, from: [.open], to: .acknowledged, actor: actor, note: note, time: time, at: at)
    }

    /// Closes a task. A later breach of the same condition opens a new task.
    /// - Throws: ``TaskError`` when the task does not exist or is already resolved.
    /// - Parameter time: minutes spent, logged against the task in the same transaction.
    public func resolveTask(id: Int64, by actor: String, note: String? = nil, time: NewTimeEntry? = nil, at: Date = Date()) throws -> CareTask {
        try transition(id: id, from: [.open, .acknowledged], to: .resolved, actor: actor, note: note, time: time, at: at)
    }

    private func transition(
        id: Int64, from allowed: Set<TaskStatus>, to target: TaskStatus, actor: String, note: String?, time: NewTimeEntry?,
        at: Date
    ) throws -> CareTask {
        try writer.write { db in
            try Self.transition(db, id: id, from: allowed, to: target, actor: actor, note: note, time: time, at: at)
        }
    }

    /// Acknowledges or resolves a task inside the caller's transaction; a note is also appended to the
    /// task's notes.
    static func transition(
        _ db: Database, id: Int64, from allowed: Set<TaskStatus>, to target: TaskStatus, actor: String, note: String?,
        time: NewTimeEntry?, at: Date
    ) throws -> CareTask {
        guard !actor.trimmingCharacters(in: .whitespaces).isEmpty else { throw TaskError("--by must name a person") }
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id]) else {
            throw TaskError("task \(id) does not exist")
        }
        let current = CareTask(row: row)
        guard allowed.contains(current.status) else {
            throw TaskError("task \(id) is \(current.status.rawValue); cannot mark it \(target.rawValue)")
        }
        let ms = epochMilliseconds(at)
        switch target {
        case .acknowledged:
            try db.execute(
                sql: "UPDATE tasks SET status = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?, updated_at = ?, note = coalesce(?, note), next_escalation_at = NULL WHERE id = ?",
                arguments: [ms, actor, ms, note, id])
        case .resolved:
            try db.execute(
                sql: "UPDATE tasks SET status = 'resolved', resolved_at = ?, resolved_by = ?, updated_at = ?, note = coalesce(?, note), next_escalation_at = NULL WHERE id = ?",
                arguments: [ms, actor, ms, note, id])
        case .open:
            break
        }
        try db.execute(
            sql: "INSERT INTO task_events(task_id, at, event, actor, detail) VALUES (?, ?, ?, ?, ?)",
            arguments: [id, ms, target.rawValue, actor, note])
        try Self.audit(db, actor: actor, action: "task.\(target.rawValue)", targetType: "task", targetID: String(id),
                       detail: "\(current.status.rawValue) -> \(target.rawValue)", at: at)
        if let note, !note.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            try Self.appendNote(db, taskID: id, author: actor, text: note, at: at)
        }
        if var time {
            time.patientID = current.patientID
            time.taskID = id
            _ = try Self.logTime(db, time)
        }
        return CareTask(row: try Row.fetchOne(db, sql: "SELECT * FROM tasks WHERE id = ?", arguments: [id])!)
    }
}
