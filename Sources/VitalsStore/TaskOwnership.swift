import Foundation
import GRDB

// Every write a person makes to a task from the workspace, in one place: claim, assign, release,
// acknowledge and resolve (with a disposition), reopen and notes. Each is a small function on the
// transaction (`Database`) with a thin async wrapper; none decides anything clinical.
//
// Two writes live in the schema (migration "v7 users, sessions and caseloads"), because they must hold
// whichever code inserts or updates a task:
// - trigger `tasks_owner_from_care_manager`: a task inserted without an owner takes the patient's care
//   manager (if that user is not disabled);
// - trigger `tasks_version`: `version` rises by one whenever `owner` or `status` changes.

/// Why a task was resolved, chosen from a fixed list when resolving in the workspace.
public enum TaskDisposition: String, Sendable, Hashable, Codable, CaseIterable {
    case contactedPatient = "contacted_patient"
    case advisedEmergencyCare = "advised_emergency_care"
    case notifiedProvider = "notified_provider"
    case medicationAdjustedByProvider = "medication_adjusted_by_provider"
    case deviceProblem = "device_problem"
    case notActionable = "not_actionable"

    /// The words a care manager reads in the list.
    public var label: String {
        switch self {
        case .contactedPatient: "Contacted patient"
        case .advisedEmergencyCare: "Advised emergency care"
        case .notifiedProvider: "Notified provider"
        case .medicationAdjustedByProvider: "Medication adjusted by provider"
        case .deviceProblem: "Device problem"
        case .notActionable: "Not actionable"
        }
    }
}

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

    /// Sets the owner of an unresolved task if its version is still `expectedVersion` (compare and set).
    /// - Parameter owner: a user name, or nil for Unassigned.
    /// - Throws: ``TaskOwnershipError``: `notFound`, `wrongStatus` (resolved), `unknownUser`, or
    ///   `versionConflict` carrying the owner now.
    static func setOwner(
        _ db: Database, taskID: Int64, owner: String?, expectedVersion: Int, actor: String, action: String, at: Date
    ) throws {
        if let owner {
            guard let user = try fetchUser(db, username: owner), !user.disabled else {
                throw TaskOwnershipError(.unknownUser, "\(owner) is not an active user")
            }
        }
        guard let before = try ownership(db, taskID: taskID) else { throw TaskOwnershipError(.notFound, "task \(taskID) does not exist") }
        guard before.status != .resolved else {
            throw TaskOwnershipError(.wrongStatus, "task \(taskID) is resolved; reopen it first", task: before)
        }
        try db.execute(
            sql: "UPDATE tasks SET owner = ? WHERE id = ? AND version = ? AND status <> 'resolved'",
            arguments: [owner, taskID, expectedVersion])
        guard db.changesCount == 1 else {
            let who = before.ownerName ?? before.owner
            throw TaskOwnershipError(
                .versionConflict,
                who.map { "task \(taskID) is already claimed by \($0)" } ?? "task \(taskID) changed since it was shown; look again",
                task: before)
        }
        try audit(db, actor: actor, action: action, targetType: "task", targetID: String(taskID),
                  detail: "owner \(before.owner ?? "none") -> \(owner ?? "none")", at: at)
    }

    /// Claims a task for `user` if nobody changed it since it was shown at `expectedVersion`. Of two
    /// people claiming together, one wins; the other gets a `versionConflict` naming the winner.
    /// - Throws: ``TaskOwnershipError``.
    public func claimTask(id: Int64, expectedVersion: Int, by user: String, at: Date) async throws {
        try await writer.write { db in
            try Self.setOwner(db, taskID: id, owner: user, expectedVersion: expectedVersion, actor: user,
                              action: "task.claim", at: at)
        }
    }

    /// Gives a task to another user, or to nobody (`to: nil`), compared and set against its version.
    /// - Throws: ``TaskOwnershipError``.
    public func assignTask(id: Int64, to owner: String?, expectedVersion: Int, by actor: String, at: Date) async throws {
        try await writer.write { db in
            try Self.setOwner(db, taskID: id, owner: owner, expectedVersion: expectedVersion, actor: actor,
                              action: "task.assign", at: at)
        }
    }

    /// Puts every unresolved task `owner` has back in Unassigned (when the user is disabled).
    /// - Returns: how many tasks.
    static func releaseTasks(_ db: Database, owner: String, actor: String, at: Date) throws -> Int {
        let ids = try Int64.fetchAll(db, sql: "SELECT id FROM tasks WHERE owner = ? AND status <> 'resolved'", arguments: [owner])
        for id in ids {
            try db.execute(sql: "UPDATE tasks SET owner = NULL WHERE id = ?", arguments: [id])
            try audit(db, actor: actor, action: "task.assign", targetType: "task", targetID: String(id),
                      detail: "owner \(owner) -> none (user disabled)", at: at)
        }
        return ids.count
    }

    /// Acknowledges an open task for a signed-in user, with an optional note and time entry.
    /// - Throws: ``TaskError`` when the task does not exist or is not open.
    public func acknowledge(taskID id: Int64, by actor: String, note: String?, time: NewTimeEntry?, at: Date) async throws {
        let text = try Self.checkedNote(note, required: false)
        _ = try await writer.write { db in
            try Self.transition(db, id: id, from: [.open], to: .acknowledged, actor: actor, note: text, time: time, at: at)
        }
    }

    /// Resolves a task with a disposition and a note (both required in the workspace), and an optional
    /// time entry, in one transaction.
    /// - Throws: ``TaskOwnershipError`` (`invalidInput`) without a note; ``TaskError`` when the task
    ///   does not exist or is already resolved.
    public func resolve(
        taskID id: Int64, by actor: String, disposition: TaskDisposition, note: String, time: NewTimeEntry?, at: Date
    ) async throws {
        let text = try Self.checkedNote(note, required: true)
        try await writer.write { db in
            _ = try Self.transition(db, id: id, from: [.open, .acknowledged], to: .resolved, actor: actor, note: text,
                                    time: time, at: at)
            try db.execute(sql: "UPDATE tasks SET disposition = ? WHERE id = ?", arguments: [disposition.rawValue, id])
            try Self.audit(db, actor: actor, action: "task.disposition", targetType: "task", targetID: String(id),
                           detail: disposition.rawValue, at: at)
        }
    }

    /// Reopens a resolved task with a note saying why: it becomes `acknowledged` (the person reopening
    /// it has seen it) and is owned by them if nobody owns it; its disposition is cleared (the audit trail
    /// keeps it). Refused while a newer task of the same condition is unresolved.
    /// - Throws: ``TaskOwnershipError``.
    public func reopenTask(id: Int64, expectedVersion: Int, by actor: String, note: String, at: Date) async throws {
        let text = try Self.checkedNote(note, required: true)!
        let ms = epochMilliseconds(at)
        try await writer.write { db in
            guard let before = try Self.ownership(db, taskID: id) else { throw TaskOwnershipError(.notFound, "task \(id) does not exist") }
            guard before.status == .resolved else {
                throw TaskOwnershipError(.wrongStatus, "task \(id) is not resolved", task: before)
            }
            guard before.version == expectedVersion else {
                throw TaskOwnershipError(.versionConflict, "task \(id) changed since it was shown; look again", task: before)
            }
            if let newer = try Int64.fetchOne(
                db,
                sql: """
                    SELECT n.id FROM tasks t JOIN tasks n ON n.patient_id = t.patient_id AND n.vital = t.vital
                        AND n.direction = t.direction AND n.status <> 'resolved'
                    WHERE t.id = ?
                    """,
                arguments: [id]) {
                throw TaskOwnershipError(.newerTaskOpen, "task \(newer) is open for the same condition; work on that one", task: before)
            }
            try db.execute(
                sql: """
                    UPDATE tasks SET status = 'acknowledged', resolved_at = NULL, resolved_by = NULL, disposition = NULL,
                        acknowledged_at = coalesce(acknowledged_at, ?), acknowledged_by = coalesce(acknowledged_by, ?),
                        owner = coalesce(owner, ?), updated_at = ?
                    WHERE id = ?
                    """,
                arguments: [ms, actor, actor, ms, id])
            try Self.audit(db, actor: actor, action: "task.reopen", targetType: "task", targetID: String(id),
                           detail: "resolved -> acknowledged", at: at)
            try Self.appendNote(db, taskID: id, author: actor, text: text, at: at)
        }
    }

    /// Adds a note to a task's history. Notes are never changed or removed (the table refuses it).
    /// - Throws: ``TaskOwnershipError`` for an empty or too long note or an unknown task.
    public func addTaskNote(taskID: Int64, author: String, text: String, at: Date) async throws {
        let note = try Self.checkedNote(text, required: true)!
        try await writer.write { db in
            guard try Self.ownership(db, taskID: taskID) != nil else { throw TaskOwnershipError(.notFound, "task \(taskID) does not exist") }
            try Self.appendNote(db, taskID: taskID, author: author, text: note, at: at)
        }
    }

    /// Appends a note and audits it (the audit names the note, never its text).
    static func appendNote(_ db: Database, taskID: Int64, author: String, text: String, at: Date) throws {
        try db.execute(
            sql: "INSERT INTO task_notes(task_id, at, author, text) VALUES (?, ?, ?, ?)",
            arguments: [taskID, epochMilliseconds(at), author, text])
        try audit(db, actor: author, action: "task.note", targetType: "task", targetID: String(taskID),
                  detail: "note \(db.lastInsertedRowID)", at: at)
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
        return trimmed
    }
}
