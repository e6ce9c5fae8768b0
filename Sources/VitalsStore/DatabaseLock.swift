import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's exclusive claim on a database: an `flock` on `<database path>.lock`, held while the
/// process lives (the kernel drops it when the process ends, also on `kill -9`). The path is resolved
/// first (symbolic links, `..`), so two spellings of one database file take one lock.
///
/// Two daemons on one database would each take the broker session of the other (one client id),
/// and each would miss the readings the other acknowledged. The daemon takes this lock before it
/// touches the broker, so a second copy with the same configuration stops before connecting.
/// The admin commands do not take it: they run beside the daemon.
public final class DatabaseLock: Sendable {
    /// The lock file.
    public let path: String
    /// The locked file descriptor; nil once released.
    private let fd: Mutex<Int32?>

    /// A problem taking the lock.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
        /// True when another process holds the lock (a daemon runs on the database); false when the
        /// lock file could not be opened or locked at all.
        public var heldByAnother = false
        /// The pid written in the lock file by the process that holds it, when readable.
        public var holderPID: String?
        /// " (pid N)" when the holder's pid is known, else empty: for a message naming the holder.
        public var holderText: String { holderPID.map { " (pid \($0))" } ?? "" }
    }

    /// Takes the lock, or fails at once when another process holds it.
    ///
    /// The file is created with mode 0600 (``PrivateFile``) and holds the pid of the process that has the lock.
    /// - Parameter databasePath: `database.path`; the lock file is its resolved path with `.lock` appended.
    /// - Throws: ``Failure`` naming the lock file and, when readable, the pid that holds it.
    public init(databasePath: String) throws {
        path = Self.resolvedPath(databasePath) + ".lock"
        try PrivateFile.prepare(path)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            throw Failure(description: "database.path: cannot open the lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard code == EWOULDBLOCK else {
                throw Failure(description: "database.path: cannot lock \(path): \(String(cString: strerror(code)))")
            }
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            throw Failure(description: """
                database.path: \(databasePath) is in use by another vitalsd\(holder.isEmpty ? "" : " (pid \(holder))"), \
                which holds the lock \(path); stop it first, or give this daemon its own database.path and mqtt.client_id
                """, heldByAnother: true, holderPID: holder.isEmpty ? nil : holder)
        }
        // A lock file made before this rule, or by hand, is made private too (it holds a pid only,
        // but the README promises 0600 for every file beside the database).
        var info = stat()
        if fstat(fd, &info) == 0, info.st_uid == geteuid(), info.st_mode & 0o777 != PrivateFile.mode { _ = fchmod(fd, PrivateFile.mode) }
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = Mutex(fd)
    }

    /// `path` with symbolic links and `.`/`..` resolved: the file's own real path when it exists, else
    /// its directory's real path and its name; `path` unchanged when neither resolves.
    public static func resolvedPath(_ path: String) -> String {
        if let real = realpath(path, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        let directory = (path as NSString).deletingLastPathComponent
        guard let real = realpath(directory.isEmpty ? "." : directory, nil) else { return path }
        defer { free(real) }
        return (String(cString: real) as NSString).appendingPathComponent((path as NSString).lastPathComponent)
    }

    /// Gives the lock up (the daemon has stopped and closed the database); later calls do nothing.
    public func release() {
        fd.withLock { fd in
            if let open = fd { close(open) }
            fd = nil
        }
    }

    deinit {
        release()
    }
}
