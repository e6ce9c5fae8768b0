import Foundation
import VitalsDomain

/// What a person does to a task, as changes for the task writer. Pure: the task as read, the
/// person, the text and the time in; changes out, or a ``TaskError`` saying why not.
public enum TaskActions {
    /// Marks an open task as seen: `acknowledged`, which stops its escalation.
    /// - Parameter note: kept in the task's note history, if given.
    /// - Throws: ``TaskError`` `wrong_status` unless the task is `open`; `invalid` without a person.
    public static func acknowledge(_ task: CareTask, by actor: String, note: String?, at: Date) throws(TaskError) -> [TaskChange] {
        try transition(task, from: [.open], to: .acknowledged, by: actor, note: note, at: at)
    }

    /// Closes a task. A later breach of the same condition opens a new task (within the re-alert
    /// window only when its rule had cleared, it is of a higher level, or it is clearly worse).
    /// - Throws: ``TaskError`` `wrong_status` when already resolved; `invalid` without a person.
    /// - Parameter disposition: why it was closed (required by the workspace; the CLI may omit it).
    public static func resolve(
        _ task: CareTask, by actor: String, note: String?, disposition: TaskDisposition? = nil, at: Date
    ) throws(TaskError) -> [TaskChange] {
        try transition(task, from: [.open, .acknowledged], to: .resolved, by: actor, note: note, disposition: disposition, at: at)
    }

    /// Gives an unresolved task to `owner` (a claim when `owner` is the actor), or to nobody, if the
    /// task is still at `expectedVersion`: of two people claiming together, one wins.
    /// - Parameter expectedVersion: the version the person saw; nil skips the check (a user disabled,
    ///   whose tasks go back to Unassigned).
    /// - Throws: ``TaskError`` `wrong_status` for a resolved task, `conflict` when the task changed
    ///   since it was shown, `invalid` without a person.
    public static func assign(
        _ task: CareTask, to owner: String?, by actor: String, expectedVersion: Int?, at: Date
    ) throws(TaskError) -> [TaskChange] {
        try checkActor(actor)
        guard task.status != .resolved else {
            throw TaskError(.wrongStatus, "task \(task.id) is resolved; reopen it first")
        }
        if let expectedVersion, expectedVersion != task.version {
            throw TaskError(.conflict, "task \(task.id) changed since it was shown; look again")
        }
        var t = task
        t.owner = owner
        t.updatedAt = at
        t.version += 1
        return [.update(.stored(t.id), t, TaskEventRecord(.assigned, at: at, actor: actor, detail: owner ?? "none"))]
    }

    /// Reopens a resolved task with a note saying why. It becomes `acknowledged` (the person reopening
    /// it has seen it) and theirs if nobody owns it; its resolution and disposition are cleared (the
    /// history keeps them). The caller refuses it while a newer task of the condition is unresolved.
    /// - Throws: ``TaskError`` `wrong_status` unless resolved, `conflict` when the task changed since
    ///   it was shown, `invalid` without a person or a note.
    public static func reopen(
        _ task: CareTask, by actor: String, note: String, expectedVersion: Int, at: Date
    ) throws(TaskError) -> [TaskChange] {
        try checkActor(actor)
        let text = note.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw TaskError(.invalid, "a note is required") }
        guard task.status == .resolved else { throw TaskError(.wrongStatus, "task \(task.id) is not resolved") }
        guard expectedVersion == task.version else {
            throw TaskError(.conflict, "task \(task.id) changed since it was shown; look again")
        }
        var t = task
        t.status = .acknowledged
        t.resolvedAt = nil
        t.resolvedBy = nil
        t.disposition = nil
        t.acknowledgedAt = t.acknowledgedAt ?? at
        t.acknowledgedBy = t.acknowledgedBy ?? actor
        t.owner = t.owner ?? actor
        t.updatedAt = at
        t.version += 1
        return [
            .update(.stored(t.id), t, TaskEventRecord(.reopened, at: at, actor: actor)),
            .note(.stored(t.id), TaskNote(at: at, author: actor, text: text)),
        ]
    }

    /// Adds a note to a task's history without changing its status; any task, resolved or not.
    /// - Throws: ``TaskError`` `invalid` without a person or with an empty text.
    public static func note(_ task: CareTask, by actor: String, text: String, at: Date) throws(TaskError) -> [TaskChange] {
        try checkActor(actor)
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw TaskError(.invalid, "a note needs text") }
        return [.note(.stored(task.id), TaskNote(at: at, author: actor, text: text))]
    }

    static func checkActor(_ actor: String) throws(TaskError) {
        guard !actor.trimmingCharacters(in: .whitespaces).isEmpty else { throw TaskError(.invalid, "--by must name a person") }
    }

    static func transition(
        _ task: CareTask, from allowed: Set<TaskStatus>, to target: TaskStatus, by actor: String, note: String?,
        disposition: TaskDisposition? = nil, at: Date
    ) throws(TaskError) -> [TaskChange] {
        try checkActor(actor)
        guard allowed.contains(task.status) else {
            throw TaskError(.wrongStatus, "task \(task.id) is \(task.status.rawValue); cannot mark it \(target.rawValue)")
        }
        var t = task
        t.status = target
        t.updatedAt = at
        t.nextEscalationAt = nil
        switch target {
        case .acknowledged:
            t.acknowledgedAt = at
            t.acknowledgedBy = actor
            t.acknowledgedWorst = t.worst
        case .resolved:
            t.resolvedAt = at
            t.resolvedBy = actor
            t.disposition = disposition
        case .open:
            break
        }
        t.version += 1
        let text = note.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        let event: TaskEventKind = target == .resolved ? .resolved : .acknowledged
        // A resolution's event names its disposition (for receivers and the timeline); the note is in the notes.
        let detail = target == .resolved ? disposition?.rawValue ?? text : text
        var changes: [TaskChange] = [.update(.stored(t.id), t, TaskEventRecord(event, at: at, actor: actor, detail: detail))]
        if let text { changes.append(.note(.stored(t.id), TaskNote(at: at, author: actor, text: text))) }
        return changes
    }
}
