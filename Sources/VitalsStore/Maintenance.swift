import Foundation
import GRDB
import VitalsDomain

/// One entry of the audit trail.
public struct AuditEntry: Sendable, Hashable, Codable {
    public var id: Int64
    public var at: Date
    /// Who: `--by`, or the invoking user.
    public var actor: String
    /// What, e.g. `patient.create`, `threshold.set`, `task.resolved`, `time.void`.
    public var action: String
    public var targetType: String
    public var targetID: String
    /// Before and after, where the action has them.
    public var detail: String?
}

extension AuditEntry {
    init(row r: Row) {
        self.init(id: r["id"], at: dateFromEpochMilliseconds(r["at"]), actor: r["actor"], action: r["action"],
                  targetType: r["target_type"], targetID: r["target_id"], detail: r["detail"])
    }
}

extension AppDatabase {
    /// The audit trail since `since` (all when nil), oldest first.
    public func auditEntries(since: Date? = nil, limit: Int = 1000) throws -> [AuditEntry] {
        try writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM audit_log WHERE ?1 IS NULL OR at >= ?1 ORDER BY id LIMIT ?2",
                arguments: [since.map(epochMilliseconds), limit]
            ).map(AuditEntry.init(row:))
        }
    }

    /// Writes a consistent copy of the live database to `path` with SQLite's online backup API,
    /// while the daemon keeps writing. The copy is created with mode 0600 (``PrivateFile``).
    /// - Throws: ``PrivateFile/Failure`` when `path` exists or cannot be created; GRDB errors (disk full).
    public func backup(to path: String) throws {
        try PrivateFile.prepare(path, exclusive: true)
        let destination = try DatabaseQueue(path: path)
        try writer.backup(to: destination)
        try destination.close()
    }

    /// Checkpoints the WAL into the database file and truncates it, so that it cannot grow without
    /// bound behind long readers (failure-modes F18).
    /// - Returns: the WAL pages checkpointed.
    @discardableResult
    public func checkpoint() throws -> Int {
        try writer.writeWithoutTransaction { db in
            try db.checkpoint(.truncate).checkpointedFrameCount
        }
    }

    /// Opens a ``WALCheckpointer`` on the database file at `path`.
    /// - Throws: GRDB errors when the file cannot be opened.
    public static func walCheckpointer(path: String, synchronous: Synchronous = .full) throws -> WALCheckpointer {
        var config = Configuration()
        // A restarting checkpoint waits this long for the writer's current transaction, then gives up
        // until the next turn (a commit of a live batch takes a few milliseconds).
        config.busyMode = .timeout(0.05)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
        }
        return WALCheckpointer(queue: try DatabaseQueue(path: path, configuration: config))
    }

    /// Deletes the raw payloads of dead letters received before `cutoff`; their reasons, topics and
    /// sizes stay. Payloads can hold PHI, so they are kept only as long as they help repair.
    /// - Returns: the number of payloads deleted.
    @discardableResult
    public func purgeDeadLetterPayloads(before cutoff: Date) throws -> Int {
        try writer.write { db in
            let ms = epochMilliseconds(cutoff)
            try db.execute(sql: "UPDATE dead_letters SET payload = X'' WHERE received_at < ? AND length(payload) > 0", arguments: [ms])
            try db.execute(sql: """
                UPDATE dead_letters SET payload_id = NULL
                WHERE received_at < ? AND payload_id IS NOT NULL
                  AND payload_id NOT IN (SELECT payload_id FROM dead_letters WHERE received_at >= ? AND payload_id IS NOT NULL)
                """, arguments: [ms, ms])
            try db.execute(sql: """
                DELETE FROM dead_letter_payloads
                WHERE id NOT IN (SELECT payload_id FROM dead_letters WHERE payload_id IS NOT NULL)
                """)
            return db.changesCount
        }
    }
}

/// Copies committed WAL pages into the database file from a connection of its own, so that the
/// connection that commits readings never pays for a checkpoint (see `AppDatabase.open`'s
/// `backgroundCheckpoints`).
///
/// A passive checkpoint takes no write lock: commits go on while it runs, and it copies what it
/// can without waiting for readers or writers. With `synchronous = FULL` it fsyncs the WAL before
/// copying and the database file after, so a power cut never loses a committed transaction.
public struct WALCheckpointer: Sendable {
    let queue: DatabaseQueue

    /// Runs one passive checkpoint.
    /// - Returns: the WAL pages copied into the database file so far, and the pages in the WAL.
    /// - Throws: GRDB errors (I/O error, disk full).
    public func checkpoint() async throws -> (checkpointed: Int, walPages: Int) {
        try await queue.writeWithoutTransaction { db in
            let result = try db.checkpoint(.passive)
            return (result.checkpointedFrameCount, result.walFrameCount)
        }
    }

    /// WAL pages above which ``checkpoint()`` is followed by a restarting checkpoint once nearly
    /// everything is copied: 16 MiB of 4 KiB pages.
    public static let restartAbovePages = 4_096

    /// A passive checkpoint, then, when the WAL holds more than ``restartAbovePages`` and at most
    /// `restartRemainder` of them are still to copy, a restarting one: it holds new commits back
    /// while it copies that remainder, so that the next commit writes the WAL from its start again
    /// instead of appending to it. Under a steady stream of commits a passive checkpoint never
    /// catches up, and the WAL (and the cost of every commit's `fsync`) grew without bound.
    /// - Returns: the pages copied and the WAL's pages after the passive checkpoint, and whether the
    ///   WAL was restarted.
    /// - Throws: GRDB errors other than a busy writer (the restart is then tried at the next turn).
    public func checkpointBounded(restartRemainder: Int = 256) async throws -> (checkpointed: Int, walPages: Int, restarted: Bool) {
        try await queue.writeWithoutTransaction { db in
            let passive = try db.checkpoint(.passive)
            guard passive.walFrameCount > Self.restartAbovePages,
                  passive.walFrameCount - passive.checkpointedFrameCount <= restartRemainder else {
                return (passive.checkpointedFrameCount, passive.walFrameCount, false)
            }
            do {
                let restart = try db.checkpoint(.restart)
                return (restart.checkpointedFrameCount, passive.walFrameCount, true)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
                return (passive.checkpointedFrameCount, passive.walFrameCount, false)
            }
        }
    }

    /// Closes the connection.
    public func close() throws { try queue.close() }
}
