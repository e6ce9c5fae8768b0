import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain

/// The task queue on PostgreSQL for the command line (`vitalsd task list|show|ack|resolve|note`):
/// the twin of the SQLite store's task actions. What a person does is decided by the pure
/// ``TaskActions`` and applied by ``PostgresTaskWriter`` with its audit entry in one transaction, so
/// an acknowledgement stops the escalation on every node at once.
public struct PostgresCareTasks: Sendable {
    private let client: PostgresClient
    private let logger: Logger
    /// Part of each event's `event_id`: new for each value of this type.
    private let incarnation = TaskEventMessage.newIncarnation()

    /// - Parameters:
    ///   - client: a running client on a migrated database.
    ///   - logger: for postgres-nio's query logging.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Tasks in queue order, as on SQLite: unresolved first, `critical` before `warning`, oldest first.
    /// - Parameters:
    ///   - status: only tasks in this state; all when nil.
    ///   - patientID: only this patient's tasks; all when nil.
    /// - Throws: the server's or connection's error.
    public func tasks(status: TaskStatus? = nil, patientID: String? = nil) async throws -> [CareTask] {
        var query = PostgresQuery(unsafeSQL: """
            SELECT \(PostgresTaskWriter.taskColumns) FROM tasks
            WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR patient_id = $2)
            ORDER BY status = 'resolved', CASE priority WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, opened_at, id
            """)
        query.binds.append(status?.rawValue)
        query.binds.append(patientID)
        var tasks: [CareTask] = []
        for try await row in try await client.query(query, logger: logger) { tasks.append(try PostgresTaskWriter.task(row)) }
        return tasks
    }

    /// The task with `id`, its history (oldest event first) and its notes; nil when there is none.
    /// - Throws: the server's or connection's error.
    public func task(id: Int64) async throws -> (task: CareTask, events: [TaskEvent], notes: [TaskNote])? {
        var query = PostgresQuery(unsafeSQL: "SELECT \(PostgresTaskWriter.taskColumns) FROM tasks WHERE id = $1")
        query.binds.append(id)
        var found: CareTask?
        for try await row in try await client.query(query, logger: logger) { found = try PostgresTaskWriter.task(row) }
        guard let task = found else { return nil }
        let events = try await client.query("""
            SELECT at, event, actor, reading_id, detail FROM task_events WHERE task_id = \(id) ORDER BY id
            """, logger: logger).decode((Int64, String, String, Int64?, String?).self).collected()
            .map { TaskEvent(at: dateFromEpochMilliseconds($0.0), event: $0.1, actor: $0.2, readingID: $0.3, detail: $0.4) }
        var notes: [TaskNote] = []
        for try await (noteID, at, author, text) in try await client.query("""
            SELECT id, at, author, text FROM task_notes WHERE task_id = \(id) ORDER BY id
            """, logger: logger).decode((Int64, Int64, String, String).self) {
            notes.append(TaskNote(id: noteID, at: dateFromEpochMilliseconds(at), author: author, text: text))
        }
        return (task, events, notes)
    }

    /// Marks an open task as seen: `acknowledged`, which stops its escalation.
    /// - Throws: ``TaskError`` when the task does not exist or is not `open`; the server's error.
    public func acknowledge(id: Int64, by actor: String, note: String?, at: Date) async throws -> CareTask {
        try await act(id: id, actor: actor, action: "task.acknowledged", at: at) { task throws(TaskError) in
            try TaskActions.acknowledge(task, by: actor, note: note, at: at)
        }
    }

    /// Closes a task. A later breach of the same condition opens a new task.
    /// - Throws: ``TaskError`` when the task does not exist or is already resolved; the server's error.
    public func resolve(id: Int64, by actor: String, note: String?, at: Date) async throws -> CareTask {
        try await act(id: id, actor: actor, action: "task.resolved", at: at) { task throws(TaskError) in
            try TaskActions.resolve(task, by: actor, note: note, at: at)
        }
    }

    /// Adds a note to a task without changing its status.
    /// - Throws: ``TaskError`` when the task does not exist, or the author or text is empty; the server's error.
    public func note(id: Int64, by actor: String, text: String, at: Date) async throws -> CareTask {
        try await act(id: id, actor: actor, action: "task.note", at: at) { task throws(TaskError) in
            try TaskActions.note(task, by: actor, text: text, at: at)
        }
    }

    /// Reads the task under a row lock, lets `decide` turn it into changes, and applies them with the
    /// audit entry in one transaction.
    private func act(
        id: Int64, actor: String, action: String, at: Date,
        _ decide: @escaping @Sendable (CareTask) throws(TaskError) -> [TaskChange]
    ) async throws -> CareTask {
        let (logger, incarnation) = (self.logger, self.incarnation)
        return try await unwrappingTransactionError {
            try await client.withTransaction(logger: logger) { connection -> CareTask in
                func fetch() async throws -> CareTask? {
                    var query = PostgresQuery(unsafeSQL: "SELECT \(PostgresTaskWriter.taskColumns) FROM tasks WHERE id = $1 FOR UPDATE")
                    query.binds.append(id)
                    var task: CareTask?
                    for try await row in try await connection.query(query, logger: logger) { task = try PostgresTaskWriter.task(row) }
                    return task
                }
                guard let current = try await fetch() else { throw TaskError(.notFound, "task \(id) does not exist") }
                try await PostgresTaskWriter.apply(connection, try decide(current), incarnation: incarnation, logger: logger)
                let after = try await fetch() ?? current
                let detail = current.status == after.status ? nil : "\(current.status.rawValue) -> \(after.status.rawValue)"
                try await connection.query("""
                    INSERT INTO audit_log (at, actor, action, target_type, target_id, detail)
                    VALUES (\(epochMilliseconds(at)), \(actor), \(action), 'task', \(String(id)), \(detail))
                    """, logger: logger)
                return after
            }
        }
    }
}
