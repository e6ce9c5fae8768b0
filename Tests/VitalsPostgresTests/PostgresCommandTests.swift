import PostgresTestSupport
import Foundation
import PostgresNIO
import Testing
import VitalsPostgres

/// The built `vitalsd` (next to the test bundle, or `$VITALSD_BINARY`).
func vitalsdBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["VITALSD_BINARY"] { return path }
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = directory.appendingPathComponent("vitalsd").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory = directory.deletingLastPathComponent()
    }
    throw ClusterFailure("vitalsd binary not found next to \(CommandLine.arguments[0]); run `swift build --build-tests` first")
}

/// What one run of `vitalsd` printed and how it ended.
struct CommandResult: Sendable {
    var status: Int32
    var output: String
    var errors: String
}

/// Runs `vitalsd arguments…` with a configuration file holding `yaml`, and waits for it (60 s at most).
func vitalsd(_ arguments: [String], yaml: String) async throws -> CommandResult {
    let directory = NSTemporaryDirectory() + "vitalsd-pgcmd-" + UUID().uuidString.prefix(8)
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let config = directory + "/vitalsd.yaml"
    try yaml.replacingOccurrences(of: "$DIR", with: directory).write(toFile: config, atomically: false, encoding: .utf8)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try vitalsdBinary())
    process.arguments = arguments + ["--config", config]
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("VITALSD_") || $0.key == "VITALSD_BINARY" }
    environment["USER"] = "ops-test"
    process.environment = environment
    let out = directory + "/out", err = directory + "/err"
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    _ = FileManager.default.createFile(atPath: err, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    let status: Int32 = try await withDeadline(.seconds(60)) {
        try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
    }
    return CommandResult(
        status: status, output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
        errors: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
}

@Suite("config check, db migrate and db backup on a PostgreSQL database", .serialized)
struct PostgresCommandTests {
    /// A configuration naming `database` on the throw-away cluster.
    static func yaml(_ cluster: ThrowawayPostgres, database: String, passwordFile: String? = nil, port: Int? = nil) -> String {
        """
        database:
          path: $DIR/vitalsd.sqlite
          url: postgres://postgres@127.0.0.1:\(port ?? cluster.port)/\(database)?sslmode=disable
          password_file: \(passwordFile ?? cluster.passwordFile)
        """
    }

    @Test("an empty database: config check warns of the migrations, db migrate applies and records them, then both say up to date")
    func migrateEmpty() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        try await cluster.withDatabase(migrated: false) { client, name in
            let yaml = Self.yaml(cluster, database: name)
            let names = PostgresSchema.migrations.map(\.name)
            #expect(names.count == 6)

            let check = try await vitalsd(["config", "check"], yaml: yaml)
            #expect(check.status == 0, "\(check.errors)")
            #expect(check.output.contains("database: PostgreSQL "))
            #expect(check.output.contains("127.0.0.1:\(cluster.port)/\(name)?sslmode=disable"))
            // No cluster section: the node is named after the host, with the one session mqtt.client_id.
            #expect(check.output.contains("node: \(ProcessInfo.processInfo.hostName), lease 6 s; MQTT sessions: vitalsd\n"), "\(check.output)")
            #expect(check.errors.contains("warning: database.url: the schema needs 6 migrations (\(names.joined(separator: ", "))): run vitalsd db migrate"))
            // The password is in no output.
            let password = try String(contentsOfFile: cluster.passwordFile, encoding: .utf8).trimmingCharacters(in: .newlines)
            #expect(!check.output.contains(password) && !check.errors.contains(password))

            let dry = try await vitalsd(["db", "migrate", "--dry-run"], yaml: yaml)
            #expect(dry.status == 0, "\(dry.errors)")
            #expect(dry.output.contains("this build would apply 6 migrations to postgres://postgres@127.0.0.1:\(cluster.port)/\(name)"))
            #expect(dry.output.contains("  3 the clinical schema\n"))
            #expect(try await client.query("SELECT to_regclass('readings') IS NULL", logger: testLogger).collect()
                .map { try $0.decode(Bool.self) } == [true])

            let migrate = try await vitalsd(["db", "migrate", "--by", "ops-lead"], yaml: yaml)
            #expect(migrate.status == 0, "\(migrate.errors)")
            #expect(migrate.output.contains("applied 6 migrations to "))
            #expect(migrate.output.hasSuffix(names.map { "  \($0)\n" }.joined()))
            let audit = try await client.query(
                "SELECT actor, action, target_type, target_id, detail FROM audit_log", logger: testLogger
            ).collect().map { try $0.decode((String, String, String, String, String?).self) }
            #expect(audit.count == 1)
            #expect(audit.first?.0 == "ops-lead" && audit.first?.1 == "database.migrated" && audit.first?.3 == "database.url")
            #expect(audit.first?.4 == "migrations=" + names.joined(separator: "; "))

            let again = try await vitalsd(["db", "migrate"], yaml: yaml)
            #expect(again.status == 0)
            #expect(again.output.contains("is up to date"))
            let checkAgain = try await vitalsd(["config", "check"], yaml: yaml)
            #expect(checkAgain.status == 0)
            #expect(!checkAgain.errors.contains("database.url"))
        }
    }

    @Test("a wrong password and a port where nothing listens: config check and db migrate name the reason, exit 2 and 1")
    func unreachable() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let wrong = NSTemporaryDirectory() + "vitalsd-wrong-" + UUID().uuidString.prefix(8)
        try "not-the-password\n".write(toFile: wrong, atomically: false, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: wrong) }

        let badPassword = try await vitalsd(["config", "check"], yaml: Self.yaml(cluster, database: "postgres", passwordFile: wrong))
        #expect(badPassword.status == 2)
        #expect(badPassword.errors.contains("database.url: cannot use postgres://postgres@127.0.0.1:\(cluster.port)/postgres?sslmode=disable: "))
        #expect(badPassword.errors.contains("password authentication failed for user \"postgres\" (SQLSTATE 28P01)"))
        #expect(!badPassword.errors.contains("not-the-password"))

        // A port nobody listens on: bound here and closed, so the connection is refused.
        let closed = try freeLoopbackPort()
        let refused = try await vitalsd(["db", "migrate"], yaml: Self.yaml(cluster, database: "postgres", port: closed))
        #expect(refused.status == 1)
        #expect(refused.errors.contains("cannot use postgres://postgres@127.0.0.1:\(closed)/postgres?sslmode=disable: "))
        #expect(refused.errors.contains("cannot connect to [IPv4]127.0.0.1/127.0.0.1:\(closed): Connection refused"))
        // run says which setting, once: exit 1, as a database that may come back.
        let run = try await vitalsd(["run"], yaml: Self.yaml(cluster, database: "postgres", port: closed))
        #expect(run.status == 1)
        #expect(run.errors.contains("database.url: cannot use postgres://postgres@127.0.0.1:\(closed)/postgres?sslmode=disable: "), "\(run.errors)")
        #expect(!run.errors.contains("database.path"), "\(run.errors)")
    }

    @Test("the SQLite-only commands refuse database.url (exit 2); run refuses a schema not migrated (exit 2); db backup prints the pg_dump way (exit 1)")
    func sqliteOnly() async throws {
        let cluster = try await ThrowawayPostgres.shared()
        let yaml = Self.yaml(cluster, database: "postgres")
        for arguments in [["patient", "list"], ["db", "checkpoint"], ["db", "restore", "/nonexistent"]] {
            let result = try await vitalsd(arguments, yaml: yaml)
            #expect(result.status == 2, "\(arguments): \(result.errors)")
            #expect(result.errors.contains("database.url: this command works on SQLite only: on PostgreSQL, run ingests"), "\(arguments)")
        }
        try await cluster.withDatabase(migrated: false) { _, name in
            let run = try await vitalsd(["run"], yaml: Self.yaml(cluster, database: name))
            #expect(run.status == 2, "\(run.errors)")
            #expect(run.errors.contains("database.url: the schema needs 6 migrations"), "\(run.errors)")
            #expect(run.errors.contains("run vitalsd db migrate first"), "\(run.errors)")
        }
        let backup = try await vitalsd(["db", "backup", "/tmp/vitalsd-backup-never-written.dump"], yaml: yaml)
        #expect(backup.status == 1)
        #expect(backup.errors.contains("pg_dump --format=custom --file=/tmp/vitalsd-backup-never-written.dump --host=127.0.0.1 --port=\(cluster.port) --username=postgres postgres"))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/vitalsd-backup-never-written.dump"))
    }

    @Test("database.url that is not postgres:// and a password file without a URL are refused by key")
    func refusedSettings() async throws {
        let notPostgres = try await vitalsd(["config", "check"], yaml: "database:\n  url: mysql://a@b/c\n")
        #expect(notPostgres.status == 2)
        #expect(notPostgres.errors.contains("database.url: must be a postgres:// URL"))
        let orphan = try await vitalsd(["config", "check"], yaml: "database:\n  path: $DIR/v.sqlite\n  password_file: /etc/passwd\n")
        #expect(orphan.status == 2)
        #expect(orphan.errors.contains("database.password_file: needs database.url"))
        let inURL = try await vitalsd(["config", "check"], yaml: "database:\n  url: postgres://a:secret@b/c\n")
        #expect(inURL.status == 2)
        #expect(inURL.errors.contains("database.url: database.url must not hold a password"))
        #expect(!inURL.errors.contains("secret"))
    }
}

/// A loopback TCP port that was free a moment ago.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw ClusterFailure("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
