import Foundation
import Glibc
import MQTTClient
import Testing
import VitalsConfig
import VitalsStore

/// Files with PHI are private whatever the umask, and a database root creates stays writable for
/// the service's user (the tests run as root, as CI does).
@Suite("permissions of the database and its backups", .serialized)
struct FilePermissionTests {
    func mode(_ path: String) -> mode_t? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber).map { mode_t($0.uint32Value) & 0o777 }
    }

    func owner(_ path: String) -> uid_t? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.ownerAccountID] as? NSNumber).map { uid_t($0.uint32Value) }
    }

    @Test("with umask 000 the database, its -wal and -shm files and a backup are 0600")
    func privateWhateverTheUmask() async throws {
        let env = try await TestEnvironment(databasePath: NSTemporaryDirectory() + "vitalsd-perm-\(UUID().uuidString.prefix(8)).sqlite")
        let db = env.config.database.path
        defer { for f in [db, db + "-wal", db + "-shm", db + ".copy", db + ".lock"] { unlink(f) } }
        // The test process made the database; remove it so that the CLI creates it under umask 000.
        try env.database.close()
        for f in [db, db + "-wal", db + "-shm"] { unlink(f) }
        let log = env.directory + "/umask"
        /// `vitalsd ARGUMENTS --config …` under umask 000.
        func vitalsd(_ arguments: [String]) throws -> ChildProcess {
            try ChildProcess(
                path: "/bin/sh", arguments: ["-c", #"umask 000; exec "$0" "$@""#, try vitalsdBinary()] + arguments + ["--config", env.configPath],
                logPath: log + ".err", outputPath: log + ".out")
        }
        // The daemon creates the database; its -wal and -shm files exist while it runs.
        let daemon = try vitalsd(["run"])
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 })
        #expect(mode(db) == 0o600)
        #expect(mode(db + "-wal") == 0o600)
        #expect(mode(db + "-shm") == 0o600)
        let backup = try vitalsd(["db", "backup", db + ".copy"])
        #expect(await backup.waitForExit(seconds: 120) && backup.exitCode == 0)
        #expect(mode(db + ".copy") == 0o600)
        #expect(mode(db + ".lock") == 0o600)
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
    }

    @Test("an existing world-readable database loses the permissions of others when opened")
    func tightenedWhenOpened() throws {
        let path = NSTemporaryDirectory() + "vitalsd-old-\(UUID().uuidString.prefix(8)).sqlite"
        defer { for f in [path, path + "-wal", path + "-shm"] { unlink(f) } }
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o666])
        chmod(path, 0o666)
        _ = try AppDatabase.open(path: path)
        #expect(mode(path) == 0o640)
    }

    @Test("a database root creates in the service's directory belongs to the service, which runs on it")
    func createdByRoot() async throws {
        try #require(getuid() == 0, "needs root, as CI has")
        let user = try #require(getpwnam("mosquitto"), "the mosquitto user (from the mosquitto package) stands in for vitalsd")
        let directory = NSTemporaryDirectory() + "vitalsd-state-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chown(directory, user.pointee.pw_uid, user.pointee.pw_gid)
        defer { try? FileManager.default.removeItem(atPath: directory) }

        // Root (this process) creates and enrolls, as an operator with sudo would.
        let env = try await TestEnvironment(databasePath: directory + "/vitalsd.sqlite")
        #expect(owner(directory + "/vitalsd.sqlite") == user.pointee.pw_uid)
        #expect(owner(directory + "/vitalsd.sqlite-wal") == user.pointee.pw_uid)
        #expect(owner(directory + "/vitalsd.sqlite-shm") == user.pointee.pw_uid)

        // The service's user runs the daemon on it and stores a reading.
        let daemon = try ChildProcess(path: try vitalsdBinary(), arguments: ["run", "--config", env.configPath],
                                      logPath: env.directory + "/vitalsd.log", runAs: "mosquitto")
        #expect(await eventually { await httpGet(port: env.httpPort, "/readyz")?.status == 200 },
                "\((try? String(contentsOfFile: env.directory + "/vitalsd.log", encoding: .utf8)) ?? "")")
        let pub = try await env.publisher()
        defer { pub.close() }
        #expect(await publishUntilStored(pub, env, payload: glucoseJSON(100, at: msAgo(60))))
        daemon.signal(SIGTERM)
        #expect(await daemon.waitForExit(seconds: 30))
        #expect(daemon.exitCode == 0)
    }
}
