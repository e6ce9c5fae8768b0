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
    public static func resolve(_ task: CareTask, by actor: String, note: String?, at: Date) throws(TaskError) -> [TaskChange] {
        try transition(task, from: [.open, .acknowledged], to: .resolved, by: actor, note: note, at: at)
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
        _ task: CareTask, from allowed: Set<TaskStatus>, to target: TaskStatus, by actor: String, note: String?, at: Date
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
        case .resolved:
            t.resolvedAt = at
            t.resolvedBy = actor
        case .open:
            break
        }
        t.version += 1
        let text = note.flatMap { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : $0 }
        let event: TaskEventKind = target == .resolved ? .resolved : .acknowledged
        var changes: [TaskChange] = [.update(.stored(t.id), t, TaskEventRecord(event, at: at, actor: actor, detail: text))]
        if let text { changes.append(.note(.stored(t.id), TaskNote(at: at, author: actor, text: text))) }
        return changes
    }
}
