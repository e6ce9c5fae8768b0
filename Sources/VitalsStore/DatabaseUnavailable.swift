import Foundation
import GRDB

/// The database could not be opened for a reason that may pass: the disk is full, an I/O error, the
/// file is locked by another process past `database.busy_timeout_seconds`, or the file system is
/// read-only. Not a configuration problem: the command exits 1, and under systemd the daemon is
/// started again after `RestartSec` (the unit prevents restarts only after exit 2).
public struct DatabaseUnavailable: Error, Sendable, CustomStringConvertible {
    /// `database.path`.
    public var path: String
    /// SQLite's or the system's reason.
    public var reason: String

    /// The setting that names the database: `database.path`, or `database.url` for PostgreSQL.
    public var key: String

    /// - Parameter key: `database.path` (SQLite); `database.url` when `reason` already names the
    ///   PostgreSQL server and says what failed.
    public init(path: String, reason: String, key: String = "database.path") {
        self.path = path
        self.reason = reason
        self.key = key
    }

    public var description: String {
        key == "database.path" ? "database.path: cannot open \(path) now: \(reason)" : "\(key): cannot use \(reason)"
    }

    /// SQLite's primary result codes that a restart may cure.
    private static let passingResults: [ResultCode] = [
        .SQLITE_BUSY, .SQLITE_LOCKED, .SQLITE_IOERR, .SQLITE_FULL, .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_NOMEM,
        .SQLITE_PROTOCOL, .SQLITE_INTERRUPT,
    ]
    /// System error numbers that a restart may cure.
    private static let passingErrnos: Set<Int32> = [ENOSPC, EDQUOT, EIO, EROFS, EAGAIN, EINTR, ENOMEM, EBUSY]

    /// Whether `error`, thrown while opening the database, may pass without a change to the configuration.
    /// Not a database (`SQLITE_NOTADB`), a failed integrity check (`SQLITE_CORRUPT`), a failed migration's
    /// constraint and a directory at the path do not.
    public static func mayPass(_ error: any Error) -> Bool {
        if let error = error as? DatabaseError { return passingResults.contains(error.resultCode) }
        if let error = error as? PrivateFile.Failure { return passingErrnos.contains(error.code) }
        return false
    }
}
