import ArgumentParser
import Foundation
import VitalsConfig
import VitalsDaemon
import VitalsDomain
import VitalsStore

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "The append-only audit trail (HIPAA 45 CFR 164.312(b)).", subcommands: [List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Changes to patients, devices, thresholds, tasks, episodes and time entries; with --access, who read what.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "Only entries at or after this time (RFC 3339 or YYYY-MM-DD, UTC).") var since: String?
        @Option var limit: Int = 1000
        @Option var format: OutputFormat = .table
        @Flag(help: "The access log: workspace chart and task views, FHIR reads and searches, tokens issued and refused.")
        var access = false
        @Option(name: [.customLong("actor"), .customLong("user")],
                help: "With --access: only this actor (a user name, or client:<client id>).") var actor: String?
        @Option(help: "With --access: only views of this patient's chart, tasks and FHIR Patient resource.") var patient: String?

        func validate() throws {
            if actor != nil && !access { throw ValidationError("--actor needs --access") }
            if patient != nil && !access { throw ValidationError("--patient needs --access") }
        }

        func run() throws {
            let (_, db) = try options.database()
            let start: Date? = try since.map { text in
                guard let instant = parseSince(text) else { throw ValidationError("--since must be RFC 3339 or YYYY-MM-DD") }
                return instant
            }
            if access {
                let entries = try db.accessEntries(actor: actor, patientID: patient, since: start, limit: limit)
                try emit(format, json: entries, header: ["id", "at", "actor", "action", "target", "detail"],
                         rows: entries.map { [String($0.id), iso($0.at), $0.actor, $0.action,
                                              "\($0.targetType) \($0.targetID ?? "")", $0.detail ?? ""] })
                return
            }
            let entries = try db.auditEntries(since: start, limit: limit)
            try emit(format, json: entries, header: ["id", "at", "actor", "action", "target", "detail"],
                     rows: entries.map { [String($0.id), iso($0.at), $0.actor, $0.action, "\($0.targetType) \($0.targetID)", $0.detail ?? ""] })
        }
    }
}

struct DatabaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Database care.", subcommands: [Backup.self, Restore.self, Checkpoint.self, Migrate.self])

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a consistent copy of the live database (SQLite online backup), while the daemon runs.",
            discussion: "With database.url (PostgreSQL) it prints how to back up with pg_dump instead, and exits 1.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "Destination file; must not exist.") var path: String

        func run() throws {
            guard !FileManager.default.fileExists(atPath: path) else { throw ValidationError("\(path) already exists") }
            let config = try options.load()
            if let settings = try Daemon.postgresSettings(config) {
                FileHandle.standardError.write(Data((PostgresCommands.backupGuidance(settings, destination: path) + "\n").utf8))
                throw ExitCode(1)
            }
            // A copy of the database as it is: the backup before an upgrade is taken with the new
            // binary while the older daemon still runs, so it must not migrate the schema.
            let pending = (try? AppDatabase.pendingMigrations(path: config.database.path)) ?? []
            let db = try pending.isEmpty ? Daemon.openDatabase(config) : AppDatabase.openReadOnly(path: config.database.path)
            defer { try? db.close() }
            try db.backup(to: path)
            print("backup written to \(path)")
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put a backup in place of the database; the daemon must be stopped.",
            discussion: """
                Checks the backup (integrity, vitalsd's schema, not newer than this build), moves the \
                database and its -wal and -shm files aside to <database.path>.before-restore-<UTC time>, \
                and puts a copy of the backup at database.path. Run it as the service's user.
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The backup file (vitalsd db backup); it is copied, not moved.") var backup: String
        @Option(help: "Who restores, for the audit trail (default: the invoking user).") var by: String?

        func run() throws {
            let config = try options.load()
            try Daemon.refusePostgreSQL(config)
            if let problem = Daemon.databaseDirectoryProblem(config) { throw ConfigurationErrors(errors: [problem]) }
            // Refused while a daemon runs on the database: it holds this lock.
            let lock: DatabaseLock
            do {
                lock = try DatabaseLock(databasePath: config.database.path)
            } catch let failure as DatabaseLock.Failure where failure.description.contains("is in use by another vitalsd") {
                throw ValidationError("\(config.database.path) is in use by another vitalsd: stop it first (systemctl stop vitalsd), then restore")
            }
            defer { lock.release() }
            let now = Date()
            let result = try DatabaseRestore.restore(
                backup: backup, to: config.database.path, busyTimeout: config.database.busyTimeoutSeconds, now: now)
            print("restored \(backup) to \(result.path)")
            if let aside = result.replacedPath {
                print("the database it replaced is at \(aside) (with its -wal and -shm, if any); delete it once the restore is checked")
                if let problem = result.carryProblem {
                    FileHandle.standardError.write(Data("vitalsd: warning: its audit trail could not be read (\(problem)); entries written after the backup are only in \(aside)\n".utf8))
                } else {
                    print("carried over from it: \(result.carriedAuditEntries) audit trail and \(result.carriedAccessEntries) access log entries written after the backup")
                }
            }
            do {
                let db = try Daemon.openDatabase(config)
                try db.recordRestore(backup: backup, result: result, actor: actor(by), at: now)
                try db.close()
            } catch {
                throw ValidationError("""
                    the backup is in place at \(result.path), but opening it failed: \(error); \
                    the replaced database is at \(result.replacedPath ?? "(none)")
                    """)
            }
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upgrade the database's schema to this build's now; the daemon must be stopped.",
            discussion: """
                The daemon upgrades the schema as it starts; this does the same beforehand, for an upgrade \
                done in steps (stop the daemon, db backup, db migrate, install, start). Lists each migration \
                applied and records the upgrade in the audit trail. With --dry-run it only lists the \
                migrations this build would apply, and changes nothing.
                """)
        @OptionGroup var options: GlobalOptions
        @Flag(help: "List the migrations this build would apply; change nothing.") var dryRun = false
        @Option(help: "Who runs the upgrade, for the audit trail (default: the invoking user).") var by: String?

        func run() async throws {
            let config = try options.load()
            if let settings = try Daemon.postgresSettings(config) {
                return try await PostgresCommands.migrate(settings, dryRun: dryRun, actor: actor(by))
            }
            let path = config.database.path
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("there is no database at \(path); the daemon or the first admin command creates it with the current schema")
            }
            let pending = try AppDatabase.pendingMigrations(path: path)
            guard !pending.isEmpty else {
                print("the schema of \(path) is up to date")
                return
            }
            if dryRun {
                print("this build would apply \(pending.count) migration\(pending.count == 1 ? "" : "s") to \(path):")
                for name in pending { print("  \(name)") }
                return
            }
            let lock: DatabaseLock
            do {
                lock = try DatabaseLock(databasePath: path)
            } catch let failure as DatabaseLock.Failure where failure.heldByAnother {
                throw ValidationError("""
                    \(path) is in use by a running vitalsd\(failure.holderText): stop it first \
                    (systemctl stop vitalsd), or let its next start upgrade the schema
                    """)
            }
            defer { lock.release() }
            let db = try Daemon.openDatabase(config)
            defer { try? db.close() }
            try db.recordMigrations(pending, actor: actor(by), at: Date())
            print("applied \(pending.count) migration\(pending.count == 1 ? "" : "s") to \(path):")
            for name in pending { print("  \(name)") }
        }
    }

    struct Checkpoint: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Checkpoint and truncate the write-ahead log now.")
        @OptionGroup var options: GlobalOptions

        func run() throws {
            let (_, db) = try options.database()
            print("checkpointed \(try db.checkpoint()) WAL pages")
        }
    }
}
