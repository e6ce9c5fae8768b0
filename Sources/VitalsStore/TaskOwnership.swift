import Foundation
import GRDB
import VitalsAlerting
import VitalsDomain

// What a person does to a task from the workspace: claim, assign, release, acknowledge and resolve
// (with a disposition), reopen and notes. Each decision is a pure ``TaskActions`` function; the
// changes go through the one task writer (``AppDatabase/apply(_:_:)``) with the audit entry, in one
// transaction. A new task's owner (the patient's care manager) is set by the writer.

/// A task change from the workspace that cannot be made, with what the caller needs to explain it.
public struct TaskOwnershipError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// No task has this id.
        case notFound
        /// The task changed since the page showed it (another claim, an assignment, an acknowledgement).
        case versionConflict
        /// The action does not apply to the task's status (claiming a resolved task, reopening an open one).
        case wrongStatus
        /// The named user does not exist or is disabled.
        case unknownUser
        /// A newer unresolved task exists for the same condition: the old one cannot be reopened.
        case newerTaskOpen
        /// Required text is missing or too long.
        case invalidInput
    }

    public var code: Code
    public var description: String
    /// The task's owner now (user name and display name), for "claimed by …".
    public var owner: String?
    public var ownerName: String?
    /// The task's status and version now.
    public var status: TaskStatus?
    public var version: Int?

    init(_ code: Code, _ description: String, task: (owner: String?, ownerName: String?, status: TaskStatus, version: Int)? = nil) {
        self.code = code
        self.description = description
        owner = task?.owner
        ownerName = task?.ownerName
        status = task?.status
        version = task?.version
    }
}

extension AppDatabase {
    /// Longest note, in characters.
    public static let maximumNoteLength = 5_000

    /// The task's owner, status and version now, with the owner's display name.
    static func ownership(_ db: Database, taskID: Int64) throws -> (owner: String?, ownerName: String?, status: TaskStatus, version: Int)? {
        try Row.fetchOne(
            db,
            sql: "SELECT t.owner, u.display_name, t.status, t.version FROM tasks t LEFT JOIN users u ON u.username = t.owner WHERE t.id = ?",
            arguments: [taskID]
        ).map { ($0["owner"], $0["display_name"], TaskStatus(rawValue: $0["status"]) ?? .open, $0["version"]) }
    }

    /// Makes a person's change to a task through ``act(_:id:actor:action:time:at:incarnation:auditDetail:_:)``, turning a
    /// refusal into a ``TaskOwnershipError`` that names who has the task now.
    static func ownershipAct(
        _ db: Database, id: Int64, actor: String, action: String, time: NewTimeEntry? = nil, at: Date, incarnation: String,
        auditDetail: ((CareTask, CareTask) -> String?)? = nil, _ decide: (CareTask) throws(TaskError) -> [TaskChange]
    ) throws {
        do {
            _ = try Self.act(db, id: id, actor: actor, action: action, time: time, at: at, incarnation: incarnation, auditDetail: auditDetail, decide)
        } catch let error as TaskError {
            let now = try ownership(db, taskID: id)
            switch error.code {
            case .notFound: throw TaskOwnershipError(.notFound, "task \(id) does not exist")
            case .wrongStatus: throw TaskOwnershipError(.wrongStatus, error.description, task: now)
            case .invalid: throw TaskOwnershipError(.invalidInput, error.description, task: now)
            case .conflict:
                let who = now?.ownerName ?? now?.owner
                throw TaskOwnershipError(
                    .versionConflict,
                    who.map { "task \(id) is already claimed by \($0)" } ?? "task \(id) changed since it was shown; look again",
                    task: now)
            }
        }
    }

    /// Sets the owner of an unresolved task if its version is still `expectedVersion` (compare and set).
    /// - Parameter owner: a user name, or nil for Unassigned.
    /// - Throws: ``TaskOwnershipError``: `notFound`, `wrongStatus` (resolved), `unknownUser`, or
    ///   `versionConflict` carrying the owner now.
    static func setOwner(
        _ db: Database, taskID: Int64, owner: String?, expectedVersion: Int?, actor: String, action: String, at: Date,
        incarnation: String
    ) throws {
        if let owner {
            guard let user = try fetchUser(db, username: owner), !user.disabled else {
                throw TaskOwnershipError(.unknownUser, "the user \(owner) is not an active user")
            }
        }
        try ownershipAct(
            db, id: taskID, actor: actor, action: action, at: at, incarnation: incarnation,
            auditDetail: { before, _ in "owner \(before.owner ?? "none") -> \(owner ?? "none")" }
        ) { task throws(TaskError) in
            try TaskActions.assign(task, to: owner, by: actor, expectedVersion: expectedVersion, at: at)
        }
    }

    /// Claims a task for `user` if nobody changed it since it was shown at `expectedVersion`. Of two
    /// people claiming together, one wins; the other gets a `versionConflict` naming the winner.
    /// - Throws: ``TaskOwnershipError``.
    public func claimTask(id: Int64, expectedVersion: Int, by user: String, at: Date) async throws {
        try await writer.write { db in
            try Self.setOwner(db, taskID: id, owner: user, expectedVersion: expectedVersion, actor: user,
                              action: "task.claim", at: at, incarnation: incarnation)
        }
    }

    /// Gives a task to another user, or to nobody (`to: nil`), compared and set against its version.
    /// - Throws: ``TaskOwnershipError``.
    public func assignTask(id: Int64, to owner: String?, expectedVersion: Int, by actor: String, at: Date) async throws {
        try await writer.write { db in
            try Self.setOwner(db, taskID: id, owner: owner, expectedVersion: expectedVersion, actor: actor,
                              action: "task.assign", at: at, incarnation: incarnation)
        }
    }

    /// Puts every unresolved task `owner` has back in Unassigned (when the user is disabled).
    /// - Returns: how many tasks.
    static func releaseTasks(_ db: Database, owner: String, actor: String, at: Date, incarnation: String) throws -> Int {
        let ids = try Int64.fetchAll(db, sql: "SELECT id FROM tasks WHERE owner = ? AND status <> 'resolved'", arguments: [owner])
        for id in ids {
            try ownershipAct(
                db, id: id, actor: actor, action: "task.assign", at: at, incarnation: incarnation,
                auditDetail: { _, _ in "owner \(owner) -> none (user disabled)" }
            ) { task throws(TaskError) in
                try TaskActions.assign(task, to: nil, by: actor, expectedVersion: nil, at: at)
            }
        }
        return ids.count
    }

    /// Acknowledges an open task for a signed-in user, with an optional note and time entry.
    /// - Throws: ``TaskOwnershipError`` when the task does not exist or is not open.
    public func acknowledge(taskID id: Int64, by actor: String, note: String?, time: NewTimeEntry?, at: Date) async throws {
        let text = try Self.checkedNote(note, required: false)
        try await writer.write { db in
            try Self.ownershipAct(db, id: id, actor: actor, action: "task.acknowledged", time: time, at: at, incarnation: incarnation) { task throws(TaskError) in
                try TaskActions.acknowledge(task, by: actor, note: text, at: at)
            }
        }
    }

    /// Resolves a task with a disposition and a note (both required in the workspace), and an optional
    /// time entry, in one transaction.
    /// - Throws: ``TaskOwnershipError``: `invalidInput` without a note, `notFound`, `wrongStatus` when
    ///   already resolved.
    public func resolve(
        taskID id: Int64, by actor: String, disposition: TaskDisposition, note: String, time: NewTimeEntry?, at: Date
    ) async throws {
        let text = try Self.checkedNote(note, required: true)
        try await writer.write { db in
            try Self.ownershipAct(
                db, id: id, actor: actor, action: "task.resolved", time: time, at: at, incarnation: incarnation,
                auditDetail: { before, after in "\(before.status.rawValue) -> \(after.status.rawValue), \(disposition.rawValue)" }
            ) { task throws(TaskError) in
                try TaskActions.resolve(task, by: actor, note: text, disposition: disposition, at: at)
            }
        }
    }

    /// Reopens a resolved task with a note saying why: it becomes `acknowledged` (the person reopening
    /// it has seen it) and is owned by them if nobody owns it; its disposition is cleared (the history
    /// keeps it). Refused while a newer task of the same condition is unresolved.
    /// - Throws: ``TaskOwnershipError``.
    public func reopenTask(id: Int64, expectedVersion: Int, by actor: String, note: String, at: Date) async throws {
        let text = try Self.checkedNote(note, required: true)!
        try await writer.write { db in
            if let newer = try Int64.fetchOne(
                db,
                sql: """
                    SELECT n.id FROM tasks t JOIN tasks n ON n.patient_id = t.patient_id AND n.vital = t.vital
                        AND n.direction = t.direction AND n.status <> 'resolved'
                    WHERE t.id = ? AND t.status = 'resolved'
                    """,
                arguments: [id]) {
                throw TaskOwnershipError(
                    .newerTaskOpen, "task \(newer) is open for the same condition; work on that one", task: try Self.ownership(db, taskID: id))
            }
            try Self.ownershipAct(db, id: id, actor: actor, action: "task.reopen", at: at, incarnation: incarnation) { task throws(TaskError) in
                try TaskActions.reopen(task, by: actor, note: text, expectedVersion: expectedVersion, at: at)
            }
        }
    }

    /// Adds a note to a task's history. Notes are never changed or removed (the table refuses it).
    /// - Throws: ``TaskOwnershipError`` for an empty or too long note or an unknown task.
    public func addTaskNote(taskID: Int64, author: String, text: String, at: Date) async throws {
        let note = try Self.checkedNote(text, required: true)!
        try await writer.write { db in
            try Self.ownershipAct(db, id: taskID, actor: author, action: "task.note", at: at, incarnation: incarnation) { task throws(TaskError) in
                try TaskActions.note(task, by: author, text: note, at: at)
            }
        }
    }

    /// The note trimmed, nil when empty and not required.
    /// - Throws: ``TaskOwnershipError`` (`invalidInput`) when required and empty, or too long.
    static func checkedNote(_ text: String?, required: Bool) throws -> String? {
        let trimmed = text?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        if trimmed.isEmpty {
            if required { throw TaskOwnershipError(.invalidInput, "a note is required") }
            return nil
        }
        guard trimmed.count <= maximumNoteLength else {
            throw TaskOwnershipError(.invalidInput, "a note has at most \(maximumNoteLength) characters")
        }
        guard !HiddenCharacters.contain(trimmed, allowNewlines: true) else {
            throw TaskOwnershipError(.invalidInput, "a note cannot hold control, invisible or text-direction characters")
        }
        return trimmed
    }
}
