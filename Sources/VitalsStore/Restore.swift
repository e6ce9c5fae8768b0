import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// Putting a backup in place of the database, with the daemon stopped.
///
/// By hand, a restore went wrong in one known way: a `-wal` file left beside the database (after a
/// crash) belongs to the database being replaced, and SQLite replays it over the copy. Here the
/// database being replaced moves aside with its `-wal` and `-shm` files, under one new name, so it
/// stays openable as it was, and the copy takes the path with no WAL beside it.
public enum DatabaseRestore {
    /// What a restore did.
    public struct Result: Sendable, Hashable {
        /// The database's path with symbolic links resolved: where the copy was put.
        public var path: String
        /// Where the database that was replaced now is (its `-wal` and `-shm` beside it), or nil when
        /// there was none.
        public var replacedPath: String?
        /// Audit trail and access log entries the replaced database had beyond the backup's,
        /// appended to the restored one (new ids, their own times).
        public var carriedAuditEntries = 0
        public var carriedAccessEntries = 0
        /// Why entries could not be carried over (the replaced database unreadable), or nil.
        public var carryProblem: String?
    }

    /// A backup that cannot be restored, or a restore that failed before the database was replaced.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Checks `backup` and puts a copy of it at `path`.
    ///
    /// The caller holds the daemon's ``DatabaseLock`` on `path`, so no daemon runs on it. Steps: the
    /// backup must pass `PRAGMA quick_check`, hold vitalsd's schema, and know no migration this build
    /// does not; it is copied (SQLite's online backup, so a backup in WAL mode is read consistently) to
    /// a new private file in `path`'s directory; the entries of the audit trail and the access log
    /// that the database being replaced has beyond the backup's highest ids are appended to the copy,
    /// so the trail of who did and saw what survives the restore; then, holding the replaced
    /// database's write lock (so no command is in the middle of a write), its file and its `-wal`
    /// and `-shm` move to `<path>.before-restore-<UTC time>` and the copy is renamed to `path`. The
    /// directory is synced after the renames. Schema migrations of this build are applied at the
    /// next open. A symbolic link at `path` is followed: the file it names is replaced.
    /// - Parameters:
    ///   - backup: a file written by `vitalsd db backup` (or any copy of a vitalsd database).
    ///   - path: `database.path`.
    ///   - busyTimeout: seconds to wait for another connection's write to end.
    ///   - now: names the moved-aside database.
    /// - Throws: ``Failure`` naming the problem; the database at `path` is then unchanged.
    public static func restore(backup: String, to path: String, busyTimeout: Double = 10, now: Date) throws -> Result {
        let path = DatabaseLock.resolvedPath(path)
        let regular = PrivateFile.isRegularFile(path)
        if regular == false { throw Failure(description: "\(path) is not a regular file; nothing was changed") }
        let exists = regular == true
        guard DatabaseLock.resolvedPath(backup) != path else { throw Failure(description: "\(backup) is the database itself") }
        try check(backup)
        let directory = (path as NSString).deletingLastPathComponent
        let copy = (directory.isEmpty ? "." : directory) + "/.vitalsd-restore-\(UUID().uuidString).sqlite"
        var result = Result(path: path)
        func discardCopy() { for file in [copy, copy + "-journal", copy + "-wal", copy + "-shm"] { unlink(file) } }
        let destination: DatabaseQueue
        do {
            try PrivateFile.prepare(copy, exclusive: true)
            let source = try AppDatabase.readOnlyQueue(path: backup)
            destination = try DatabaseQueue(path: copy)
            try source.backup(to: destination)
            try source.close()
        } catch {
            discardCopy()
            throw Failure(description: "cannot copy \(backup) beside \(path): \(error)")
        }
        guard exists else {
            try destination.close()
            try move(copy, to: path, cleaningUp: copy)
            syncDirectory(directory.isEmpty ? "." : directory)
            return result
        }
        let aside = path + ".before-restore-" + stamp(now)
        guard !FileManager.default.fileExists(atPath: aside) else {
            try? destination.close()
            discardCopy()
            throw Failure(description: "\(aside) already exists (a restore in the same second?); try again")
        }
        // From here until the files have moved, no connection may write: hold the write lock.
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.allowsUnsafeTransactions = true
        // A database too damaged to lock (often why it is restored) is replaced all the same.
        var holder: DatabaseQueue?
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            holder = queue
            try queue.writeWithoutTransaction { try $0.execute(sql: "BEGIN IMMEDIATE") }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            try? holder?.close()
            try? destination.close()
            discardCopy()
            throw Failure(description: "\(path) is being written by another connection (a command?) past \(busyTimeout) s; try again: \(error)")
        } catch {
            try? holder?.close()
            holder = nil
        }
        defer {
            try? holder?.writeWithoutTransaction { try $0.execute(sql: "ROLLBACK") }
            try? holder?.close()
        }
        do {
            (result.carriedAuditEntries, result.carriedAccessEntries) = try carryTrail(from: path, into: destination)
        } catch {
            result.carryProblem = "\(error)"
        }
        do {
            // The copy in the rollback journal mode a backup gives; the daemon sets WAL on open.
            try destination.close()
        } catch {
            discardCopy()
            throw Failure(description: "cannot close the copy of \(backup): \(error)")
        }
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try move(path + suffix, to: aside + suffix, cleaningUp: copy)
        }
        try move(path, to: aside, cleaningUp: copy)
        result.replacedPath = aside
        try move(copy, to: path, cleaningUp: nil)
        syncDirectory(directory.isEmpty ? "." : directory)
        return result
    }

    /// Appends to `copy` the audit trail and access log entries of the database at `path` beyond the
    /// copy's highest ids, in their order.
    /// - Returns: the entries carried, audit trail then access log.
    static func carryTrail(from path: String, into copy: DatabaseQueue) throws -> (Int, Int) {
        try copy.writeWithoutTransaction { db in
            try db.execute(sql: "ATTACH DATABASE ? AS replaced", arguments: [path])
            defer { try? db.execute(sql: "DETACH DATABASE replaced") }
            var carried: [Int] = []
            // Deferred: an immediate transaction would take the write lock of the attached database too,
            // which the restore holds.
            try db.inTransaction(.deferred) {
                for table in ["audit_log", "access_log"] {
                    let both = try Int.fetchOne(db, sql: """
                        SELECT count(*) FROM main.sqlite_master m JOIN replaced.sqlite_master r USING (name)
                        WHERE m.type = 'table' AND r.type = 'table' AND m.name = ?
                        """, arguments: [table]) ?? 0
                    guard both > 0 else {
                        carried.append(0)
                        continue
                    }
                    let highest = try Int64.fetchOne(db, sql: "SELECT coalesce(max(id), 0) FROM main.\(table)") ?? 0
                    try db.execute(sql: """
                        INSERT INTO main.\(table)(at, actor, action, target_type, target_id, detail)
                        SELECT at, actor, action, target_type, target_id, detail FROM replaced.\(table) WHERE id > ? ORDER BY id
                        """, arguments: [highest])
                    carried.append(db.changesCount)
                }
                return .commit
            }
            return (carried[0], carried[1])
        }
    }

    /// Refuses a backup that is not a sound vitalsd database of this build's schema or an older one.
    static func check(_ backup: String) throws {
        guard PrivateFile.isRegularFile(backup) == true else { throw Failure(description: "\(backup) is not a file") }
        do {
            let queue = try AppDatabase.readOnlyQueue(path: backup)
            defer { try? queue.close() }
            try queue.read { db in
                let result = try String.fetchOne(db, sql: "PRAGMA quick_check")
                guard result == "ok" else { throw Failure(description: "\(backup) fails its integrity check: \(result ?? "no result")") }
                guard try db.tableExists("grdb_migrations"), try db.tableExists("readings") else {
                    throw Failure(description: "\(backup) is not a vitalsd database")
                }
                let known = Set(AppDatabase.migrator.migrations)
                let unknown = try AppDatabase.migrator.appliedIdentifiers(db).subtracting(known)
                guard unknown.isEmpty else {
                    throw Failure(description: "\(backup) was written by a newer vitalsd (schema \(unknown.sorted().joined(separator: ", "))); restore it with that build")
                }
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "\(backup) cannot be read as a database: \(error)")
        }
    }

    /// `now` as `20261203T064500Z`, a file name's part.
    static func stamp(_ now: Date) -> String {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let c = utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: now)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    private static func move(_ from: String, to: String, cleaningUp copy: String?) throws {
        guard rename(from, to) == 0 else {
            let reason = String(cString: strerror(errno))
            if let copy { unlink(copy) }
            throw Failure(description: "cannot move \(from) to \(to): \(reason)")
        }
    }

    private static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

extension AppDatabase {
    /// Records a restore in the restored database's audit trail (`database.restored`, target `database`):
    /// the backup's path, where the replaced database went, and the entries carried over.
    public func recordRestore(backup: String, result: DatabaseRestore.Result, actor: String, at: Date) throws {
        var detail = "backup=\(DatabaseLock.resolvedPath(backup))"
        if let aside = result.replacedPath { detail += " replaced=\(aside)" }
        detail += " carried_audit=\(result.carriedAuditEntries) carried_access=\(result.carriedAccessEntries)"
        if result.carryProblem != nil { detail += " carry_failed" }
        try writer.write { db in
            try Self.audit(db, actor: actor, action: "database.restored", targetType: "database", targetID: "database.path",
                           detail: detail, at: at)
        }
    }

    /// Records in the audit trail that `migrations` were applied (`vitalsd db migrate`): action
    /// `database.migrated`, target `database.path`, the names in the detail.
    /// - Throws: GRDB errors.
    public func recordMigrations(_ migrations: [String], actor: String, at: Date) throws {
        try writer.write { db in
            try Self.audit(db, actor: actor, action: "database.migrated", targetType: "database", targetID: "database.path",
                           detail: "migrations=" + migrations.joined(separator: "; "), at: at)
        }
    }
}
