import Foundation
import GRDB
import VitalsAlerting
import VitalsDomain

extension AppDatabase {
    /// Tasks in queue order: unresolved first, `critical` before `warning`, oldest first.
    /// - Parameter status: only tasks in this state; all when nil.
    public func tasks(status: TaskStatus? = nil, patientID: String? = nil) throws -> [CareTask] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(CareTask.columns) FROM tasks
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
            guard let row = try Row.fetchOne(db, sql: "SELECT \(CareTask.columns) FROM tasks WHERE id = ?", arguments: [id]) else { return nil }
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

    /// The notes of a task, oldest first (append-only: a note is never changed or removed).
    public func taskNotes(id: Int64) throws -> [TaskNote] {
        try writer.read { db in try Self.fetchNotes(db, taskID: id) }
    }

    static func fetchNotes(_ db: Database, taskID: Int64) throws -> [TaskNote] {
        try Row.fetchAll(db, sql: "SELECT id, at, author, text FROM task_notes WHERE task_id = ? ORDER BY id", arguments: [taskID])
            .map { TaskNote(id: $0["id"], at: dateFromEpochMilliseconds($0["at"]), author: $0["author"], text: $0["text"]) }
    }

    /// Marks an open task as seen by a care manager; stops its escalation.
    /// - Parameters:
    ///   - note: appended to the task's notes.
    ///   - time: minutes spent, logged against the task in the same transaction.
    /// - Throws: ``TaskError`` when the task does not exist or is not `open`.
    public func acknowledgeTask(id: Int64, by actor: String, note: String? = nil, time: NewTimeEntry? = nil, at: Date = Date()) throws -> CareTask {
        try act(id: id, actor: actor, action: "task.acknowledged", time: time, at: at) { task throws(TaskError) in
            try TaskActions.acknowledge(task, by: actor, note: note, at: at)
        }
    }

    /// Closes a task. A later breach of the same condition opens a new task.
    /// - Parameter time: minutes spent, logged against the task in the same transaction.
    /// - Throws: ``TaskError`` when the task does not exist or is already resolved.
    public func resolveTask(id: Int64, by actor: String, note: String? = nil, time: NewTimeEntry? = nil, at: Date = Date()) throws -> CareTask {
        try act(id: id, actor: actor, action: "task.resolved", time: time, at: at) { task throws(TaskError) in
            try TaskActions.resolve(task, by: actor, note: note, at: at)
        }
    }

    /// Adds a note to a task without changing its status (`vitalsd task note`).
    /// - Throws: ``TaskError`` when the task does not exist, or the author or text is empty.
    public func noteTask(id: Int64, by actor: String, text: String, at: Date = Date()) throws -> CareTask {
        try act(id: id, actor: actor, action: "task.note", time: nil, at: at) { task throws(TaskError) in
            try TaskActions.note(task, by: actor, text: text, at: at)
        }
    }

    /// Reads a task, lets `decide` turn it into changes, applies them with the audit entry and the
    /// time entry in one transaction, and returns the task as stored.
    private func act(
        id: Int64, actor: String, action: String, time: NewTimeEntry?, at: Date,
        _ decide: @Sendable (CareTask) throws(TaskError) -> [TaskChange]
    ) throws -> CareTask {
        try writer.write { db in try Self.act(db, id: id, actor: actor, action: action, time: time, at: at, incarnation: incarnation, decide) }
    }

    /// ``act(id:actor:action:time:at:_:)`` inside the caller's transaction.
    /// - Parameter auditDetail: what the audit entry says; default the status change, if any.
    static func act(
        _ db: Database, id: Int64, actor: String, action: String, time: NewTimeEntry?, at: Date, incarnation: String,
        auditDetail: ((CareTask, CareTask) -> String?)? = nil,
        _ decide: (CareTask) throws(TaskError) -> [TaskChange]
    ) throws -> CareTask {
        guard let current = try fetchTask(db, id: id) else { throw TaskError(.notFound, "task \(id) does not exist") }
        let changes = try decide(current)
        try apply(db, changes, incarnation: incarnation)
        let after = try fetchTask(db, id: id)!
        let detail = auditDetail.map { $0(current, after) }
            ?? (current.status == after.status ? nil : "\(current.status.rawValue) -> \(after.status.rawValue)")
        try audit(db, actor: actor, action: action, targetType: "task", targetID: String(id), detail: detail, at: at)
        if var time {
            time.patientID = current.patientID
            time.taskID = id
            _ = try logTime(db, time)
        }
        return after
    }
}
