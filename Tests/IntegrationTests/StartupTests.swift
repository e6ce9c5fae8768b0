import Foundation
import GRDB
import Logging
import Testing
import VitalsConfig
import VitalsDaemon
import VitalsStore
import VitalsWeb

@Suite("start-up")
struct StartupTests {
    @Test("a database directory that does not exist is refused under database.path")
    func missingDatabaseDirectory() throws {
        var config = VitalsConfiguration()
        config.database.path = "/nonexistent-vitalsd-dir/vitalsd.sqlite"
        do {
            _ = try Daemon.openDatabase(config)
            Issue.record("opened a database in a missing directory")
        } catch let error as ConfigurationErrors {
            #expect(error.errors.map(\.key) == ["database.path"])
            #expect(error.description == "database.path: directory /nonexistent-vitalsd-dir does not exist")
        }
    }

    /// A fresh directory for one test, removed after it.
    func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = NSTemporaryDirectory() + "vitalsd-startup-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory)
    }

    @Test("a directory at database.path is refused and keeps its mode")
    func directoryAtDatabasePath() throws {
        try withDirectory { directory in
            let shared = directory + "/shared"
            try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
            #expect(chmod(shared, 0o1777) == 0)
            var config = VitalsConfiguration()
            config.database.path = shared
            #expect(throws: ConfigurationErrors.self) { _ = try Daemon.openDatabase(config) }
            let mode = try #require(FileManager.default.attributesOfItem(atPath: shared)[.posixPermissions] as? Int)
            #expect(mode == 0o1777)
        }
    }

    @Test("a file that is not a database is a refused configuration (exit 2: restarting cannot cure it)")
    func notADatabase() throws {
        try withDirectory { directory in
            let path = directory + "/vitalsd.sqlite"
            try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
            var config = VitalsConfiguration()
            config.database.path = path
            do {
                _ = try Daemon.openDatabase(config)
                Issue.record("opened a file that is not a database")
            } catch let error as ConfigurationErrors {
                #expect(error.errors.map(\.key) == ["database.path"])
            }
        }
    }

    @Test("a database locked by another process is unavailable, not a refused configuration (exit 1: systemd restarts)")
    func lockedDatabase() throws {
        try withDirectory { directory in
            let path = directory + "/vitalsd.sqlite"
            // Another process (here: another connection) holds the write lock of a database that
            // still needs its schema; the daemon waits database.busy_timeout_seconds, then gives up.
            var holding = Configuration()
            holding.allowsUnsafeTransactions = true
            let other = try DatabaseQueue(path: path, configuration: holding)
            try other.writeWithoutTransaction { db in
                _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "BEGIN EXCLUSIVE")
                try db.execute(sql: "CREATE TABLE held (x)")
            }
            defer { try? other.writeWithoutTransaction { db in try db.execute(sql: "ROLLBACK") } }
            var config = VitalsConfiguration()
            config.database.path = path
            config.database.busyTimeoutSeconds = 0.1
            do {
                _ = try Daemon.openDatabase(config)
                Issue.record("opened a database another process holds")
            } catch let error as DatabaseUnavailable {
                #expect(error.path == path)
                #expect(error.description.hasPrefix("database.path: cannot open \(path) now: "))
            }
        }
    }

    @Test("the one-daemon lock holds for the database file, whatever path names it")
    func lockThroughSymbolicLink() throws {
        try withDirectory { directory in
            let path = directory + "/vitalsd.sqlite"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            // A lock file left with a wider mode (made by hand, or before the rule).
            #expect(FileManager.default.createFile(atPath: path + ".lock", contents: nil, attributes: [.posixPermissions: 0o644]))
            try FileManager.default.createSymbolicLink(atPath: directory + "/alias.sqlite", withDestinationPath: path)
            let first = try DatabaseLock(databasePath: path)
            defer { first.release() }
            #expect(first.path.hasSuffix("/vitalsd.sqlite.lock"))
            let mode = try #require(FileManager.default.attributesOfItem(atPath: first.path)[.posixPermissions] as? Int)
            #expect(mode == 0o600)
            #expect(throws: DatabaseLock.Failure.self) { _ = try DatabaseLock(databasePath: directory + "/alias.sqlite") }
            #expect(throws: DatabaseLock.Failure.self) { _ = try DatabaseLock(databasePath: directory + "/./vitalsd.sqlite") }
        }
    }

    @Test("an -shm file left read-only is made writable for its owner again, so the database opens")
    func readOnlySharedMemoryFile() throws {
        try withDirectory { directory in
            let path = directory + "/vitalsd.sqlite"
            try AppDatabase.open(path: path).close()
            #expect(FileManager.default.createFile(atPath: path + "-shm", contents: nil, attributes: [.posixPermissions: 0o400]))
            let db = try AppDatabase.open(path: path)
            defer { try? db.close() }
            let mode = try #require(FileManager.default.attributesOfItem(atPath: path + "-shm")[.posixPermissions] as? Int)
            #expect(mode == 0o600)
        }
    }

    @Test("a start whose first writes meet a lock held past the busy timeout is unavailable (exit 1), naming database.path")
    func startUnderWriteLock() async throws {
        let env = try await TestEnvironment()
        var config = env.config
        config.http.enabled = false
        config.database.busyTimeoutSeconds = 0.2
        let writer = try HeldWriteLock(path: config.database.path)
        #expect(await writer.start())
        defer { Task { try? await writer.release() } }
        do {
            _ = try Daemon.compose(config: config, logger: Logger(label: "startup-test"), signals: false)
            Issue.record("started under another connection's write lock")
        } catch let error as DatabaseUnavailable {
            #expect(error.description.hasPrefix("database.path: cannot open \(config.database.path) now: "))
        }
    }

    @Test("config check reads the workspace's TLS files: garbage, and a key of another certificate, are named")
    func workspaceTLSFiles() throws {
        let certificates = try TestCertificates()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let garbage = certificates.directory + "/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        func problems(cert: String, key: String) -> [String] {
            var config = VitalsConfiguration()
            config.web.enabled = true
            config.web.tlsCertFile = certificates.directory + "/" + cert
            config.web.tlsKeyFile = certificates.directory + "/" + key
            return Workspace.tlsProblems(config).map(\.key)
        }
        #expect(problems(cert: "ca.crt", key: "ca.key") == [])
        #expect(problems(cert: "garbage.pem", key: "ca.key") == ["web.tls_cert_file"])
        #expect(problems(cert: "ca.crt", key: "garbage.pem") == ["web.tls_key_file"])
        #expect(problems(cert: "ca.crt", key: "other-ca.key") == ["web.tls_key_file"])
    }
}
