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
        /// Where the database that was replaced now is (its `-wal` and `-shm` beside it), or nil when
        /// there was none.
        public var replacedPath: String?
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
    /// a new private file in `path`'s directory; the database at `path` and its `-wal` and `-shm`
    /// move to `<path>.before-restore-<UTC time>`; the copy is renamed to `path`. The directory is
    /// synced after the renames. Schema migrations of this build are applied at the next open.
    /// - Parameters:
    ///   - backup: a file written by `vitalsd db backup` (or any copy of a vitalsd database).
    ///   - path: `database.path`.
    ///   - now: names the moved-aside database.
    /// - Throws: ``Failure`` naming the problem; the database at `path` is then unchanged.
    public static func restore(backup: String, to path: String, now: Date) throws -> Result {
        try check(backup)
        let directory = (path as NSString).deletingLastPathComponent
        let copy = (directory.isEmpty ? "." : directory) + "/.vitalsd-restore-\(UUID().uuidString).sqlite"
        do {
            try PrivateFile.prepare(copy, exclusive: true)
            var readOnly = Configuration()
            readOnly.readonly = true
            let source = try DatabaseQueue(path: backup, configuration: readOnly)
            let destination = try DatabaseQueue(path: copy)
            try source.backup(to: destination)
            // The copy in the rollback journal mode a backup gives; the daemon sets WAL on open.
            try destination.close()
            try source.close()
        } catch {
            for file in [copy, copy + "-journal", copy + "-wal", copy + "-shm"] { unlink(file) }
            throw Failure(description: "cannot copy \(backup) beside \(path): \(error)")
        }
        var replaced: String?
        if FileManager.default.fileExists(atPath: path) {
            let aside = path + ".before-restore-" + stamp(now)
            guard !FileManager.default.fileExists(atPath: aside) else {
                unlink(copy)
                throw Failure(description: "\(aside) already exists")
            }
            for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                try move(path + suffix, to: aside + suffix, cleaningUp: copy)
            }
            try move(path, to: aside, cleaningUp: copy)
            replaced = aside
        }
        try move(copy, to: path, cleaningUp: nil)
        syncDirectory(directory.isEmpty ? "." : directory)
        return Result(replacedPath: replaced)
    }

    /// Refuses a backup that is not a sound vitalsd database of this build's schema or an older one.
    static func check(_ backup: String) throws {
        var info = stat()
        guard stat(backup, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw Failure(description: "\(backup) is not a file")
        }
        do {
            var readOnly = Configuration()
            readOnly.readonly = true
            let queue = try DatabaseQueue(path: backup, configuration: readOnly)
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
    /// Records a restore in the restored database's audit trail (`database.restored`, target `database`),
    /// with the backup's path and where the replaced database went.
    public func recordRestore(backup: String, replacedPath: String?, actor: String, at: Date) throws {
        try writer.write { db in
            try Self.audit(
                db, actor: actor, action: "database.restored", targetType: "database", targetID: "database.path",
                detail: "backup=\(backup)" + (replacedPath.map { " replaced=\($0)" } ?? ""), at: at)
        }
    }
}
