/// What a task writer keeps while it applies one list of ``TaskChange``s, the same for both storage
/// backends: the row id of each task the list names, the version each task has as the writer left it,
/// and the owner the writer gave a task it opened. The storage asks it which id, owner and versions
/// a change's row gets; the ledger decides nothing clinical.
public struct TaskWriteLedger: Sendable {
    /// The row id of each task the changes named so far, new ones included.
    public private(set) var ids: [TaskRef: Int64] = [:]
    /// The version each task has in the database now, as this writer left it: an update expects it
    /// and writes one more.
    private var versions: [TaskRef: Int] = [:]
    /// The owner this writer gave a task it opened: the engine's later changes of the same task in
    /// the list carry its copy from before the open, without it.
    private var assignedOwners: [TaskRef: String] = [:]

    /// An empty ledger, for one list of changes.
    public init() {}

    /// The row id `ref` names.
    /// - Throws: ``TaskError`` `not_found` for a new task no earlier change of the list opened.
    public func id(_ ref: TaskRef) throws(TaskError) -> Int64 {
        if case .stored(let id) = ref { return id }
        guard let id = ids[ref] else { throw TaskError(.notFound, "a change names a task not opened before it") }
        return id
    }

    /// The row to insert for an opened task: its first version (at least 1).
    public func toInsert(_ task: CareTask) -> CareTask {
        var t = task
        t.version = max(task.version, 1)
        return t
    }

    /// Records an inserted task.
    /// - Parameters:
    ///   - task: the row as inserted, with its id.
    ///   - assignedOwner: the owner the writer gave it (the patient's care manager), nil if none.
    public mutating func inserted(_ ref: TaskRef, _ task: CareTask, assignedOwner: String?) {
        ids[ref] = task.id
        versions[ref] = task.version
        if let assignedOwner { assignedOwners[ref] = assignedOwner }
    }

    /// The row an update writes: its id, the owner given at its opening when the engine's copy has
    /// none, and the next version; with the version the stored row must have for the update to apply.
    /// - Throws: ``TaskError`` `not_found` as ``id(_:)``.
    public func toUpdate(_ ref: TaskRef, _ task: CareTask) throws(TaskError) -> (task: CareTask, expected: Int) {
        var t = task
        t.id = try id(ref)
        if t.owner == nil, let owner = assignedOwners[ref] { t.owner = owner }
        let expected = versions[ref] ?? (task.version - 1)
        t.version = expected + 1
        return (t, expected)
    }

    /// Records an applied update (the row from ``toUpdate(_:_:)``).
    public mutating func updated(_ ref: TaskRef, _ task: CareTask) {
        ids[ref] = task.id
        versions[ref] = task.version
    }

    /// Why an update matched no row: another writer changed the task first, or it does not exist.
    public static func updateRefused(taskID: Int64, exists: Bool) -> TaskError {
        exists ? TaskError(.conflict, "task \(taskID) was changed by someone else; look at it again")
            : TaskError(.notFound, "task \(taskID) does not exist")
    }
}
