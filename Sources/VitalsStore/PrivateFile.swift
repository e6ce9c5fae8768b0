import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Files that hold PHI (the database, its `-wal` and `-shm` files, backups, the lock file): mode 0600
/// whatever the caller's umask, and owned by the service's user.
///
/// - A new file is created with mode 0600 (set with `fchmod`, so no umask widens or narrows it).
/// - Created by root (an operator running the CLI with sudo), it is given to the owner and group of
///   its directory (`/var/lib/vitalsd` belongs to `vitalsd`), as SQLite does for the journals of a
///   database root opens: a database file that root owns is read-only for the service, which then
///   refused to start ("attempt to write a readonly database").
/// - An existing file loses any permission for others (and group write), so a database made before
///   this rule stops being world-readable.
public enum PrivateFile {
    /// The mode of a new file: read and write for its owner only.
    public static let mode: mode_t = 0o600

    /// A problem with a private file.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        /// The system's error number (`errno`), or 0 when the failure is not a failed system call.
        public var code: Int32 = 0
    }

    /// Makes sure `path` exists as a private file (see the type's rules), and tightens `path-wal` and
    /// `path-shm` when they exist.
    /// - Parameter exclusive: fail when the file already exists (a backup never overwrites).
    /// - Throws: ``Failure`` naming the file when it cannot be created or changed, or when something
    ///   other than a regular file (a directory, a device) is at `path`; it is then left untouched.
    public static func prepare(_ path: String, exclusive: Bool = false) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if fd >= 0 {
            defer { close(fd) }
            fchmod(fd, mode)
            if geteuid() == 0 {
                var directory = stat()
                let parent = (path as NSString).deletingLastPathComponent
                if stat(parent.isEmpty ? "." : parent, &directory) == 0, directory.st_uid != 0 {
                    guard fchown(fd, directory.st_uid, directory.st_gid) == 0 else {
                        throw Failure(description: "cannot give \(path) to the owner of its directory: \(String(cString: strerror(errno)))")
                    }
                }
            }
            return
        }
        let code = errno
        guard code == EEXIST else {
            throw Failure(description: "cannot create \(path): \(String(cString: strerror(code)))", code: code)
        }
        if exclusive { throw Failure(description: "\(path) already exists", code: code) }
        // A directory, device or socket at the path is a mistake in the configuration: refused
        // before anything changes its mode (a shared 1777 directory must stay as it is).
        guard isRegularFile(path) != false else {
            throw Failure(description: "\(path) is not a regular file; nothing was changed", code: EINVAL)
        }
        tighten(path)
        // SQLite's own files must also be writable by their owner: an -shm left at 0400 (SQLite gives
        // it the database file's mode, so a copy restored read-only) made every later open fail.
        for file in [path + "-wal", path + "-shm"] { tighten(file, ownerWritable: true) }
    }

    /// Whether `path` (symbolic links followed) is a regular file: false for a directory, a device or
    /// a socket; nil when nothing can be found there.
    public static func isRegularFile(_ path: String) -> Bool? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mode & S_IFMT == S_IFREG
    }

    /// Removes permissions for others and group write from an existing regular file; anything else is left alone.
    /// - Parameter ownerWritable: also give read and write to its owner, when that is this process's user.
    static func tighten(_ path: String, ownerWritable: Bool = false) {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return }
        let current = info.st_mode & 0o777
        var wanted = current & 0o740
        if ownerWritable, info.st_uid == geteuid() { wanted |= 0o600 }
        if wanted != current { _ = chmod(path, wanted) }
    }
}
