import ArgumentParser
import Foundation
import Logging
import VitalsConfig
import VitalsDaemon
import VitalsPostgres

/// The PostgreSQL side of `config check`, `db migrate` and `db backup`, for a configuration with
/// `database.url`.
enum PostgresCommands {
    /// postgres-nio's logger for a command: its errors only (the command prints what it did).
    static let logger: Logger = {
        var logger = Logger(label: "vitalsd.postgres")
        logger.logLevel = .error
        return logger
    }()

    /// `config check` with `database.url`: what is wrong with the database (unreachable, migrated by
    /// a newer build) as problems, and what the operator should do next (migrations to apply) as warnings.
    static func check(_ settings: PostgresSettings) async -> (problems: [String], warnings: [String], summary: String) {
        let status: PostgresDatabaseStatus
        do {
            status = try await PostgresAdmin.status(settings, logger: logger)
        } catch {
            return (["database.url: cannot use \(error)"], [], "")
        }
        var problems: [String] = []
        var warnings: [String] = []
        if !status.unknown.isEmpty {
            problems.append("""
                database.url: the schema holds migrations this build does not know (\(status.unknown.joined(separator: ", "))): \
                a newer vitalsd upgraded it
                """)
        }
        if !status.pending.isEmpty {
            warnings.append("""
                database.url: the schema needs \(status.pending.count) migration\(status.pending.count == 1 ? "" : "s") \
                (\(status.pending.joined(separator: ", "))): run vitalsd db migrate
                """)
        }
        return (problems, warnings, "PostgreSQL \(status.serverVersion) at \(settings)")
    }

    /// Runs `body` on the task queue of a migrated database (`task list|show|ack|resolve|note`).
    /// - Throws: `ValidationError` when the server cannot be used or its schema is not this build's.
    static func withTasks<T: Sendable>(
        _ settings: PostgresSettings, _ body: @escaping @Sendable (PostgresCareTasks) async throws -> T
    ) async throws -> T {
        let status: PostgresDatabaseStatus
        do {
            status = try await PostgresAdmin.status(settings, logger: logger)
        } catch {
            throw ValidationError("cannot use \(error)")
        }
        guard status.unknown.isEmpty, status.pending.isEmpty else {
            throw ValidationError("the schema of \(settings) is not this build's: run vitalsd db migrate first (or a newer vitalsd)")
        }
        return try await PostgresAdmin.withClient(settings, logger: logger) { client in
            try await body(PostgresCareTasks(client: client, logger: logger))
        }
    }

    /// `db migrate` with `database.url`.
    static func migrate(_ settings: PostgresSettings, dryRun: Bool, actor: String) async throws {
        let status: PostgresDatabaseStatus
        do {
            status = try await PostgresAdmin.status(settings, logger: logger)
        } catch {
            throw ValidationError("cannot use \(error)")
        }
        guard status.unknown.isEmpty else {
            throw ValidationError("""
                the schema of \(settings) holds migrations this build does not know (\(status.unknown.joined(separator: ", "))): \
                a newer vitalsd upgraded it
                """)
        }
        guard !status.pending.isEmpty else {
            print("the schema of \(settings) is up to date")
            return
        }
        if dryRun {
            print("this build would apply \(status.pending.count) migration\(status.pending.count == 1 ? "" : "s") to \(settings):")
            for name in status.pending { print("  \(name)") }
            return
        }
        let applied: [String]
        do {
            applied = try await PostgresAdmin.migrate(settings, actor: actor, now: Date(), logger: logger)
        } catch {
            throw ValidationError("migration failed: \(error)")
        }
        // Another node may have applied some meanwhile: each migration runs once, under a lock.
        guard !applied.isEmpty else {
            print("applied no migration to \(settings): another node applied them meanwhile, or the schema was up to date")
            return
        }
        print("applied \(applied.count) migration\(applied.count == 1 ? "" : "s") to \(settings):")
        for name in applied { print("  \(name)") }
    }

    /// What `db backup` says with `database.url`: PostgreSQL's own tools back it up.
    static func backupGuidance(_ settings: PostgresSettings, destination: String) -> String {
        """
        the database is PostgreSQL (\(settings)): back it up with PostgreSQL's own tools, which copy \
        a consistent snapshot while vitalsd runs, e.g.
          pg_dump --format=custom --file=\(destination) --host=\(settings.host) --port=\(settings.port) \
        --username=\(settings.username) \(settings.database)
        and restore it with pg_restore; for point-in-time recovery, continuous archiving (pg_basebackup \
        and WAL archiving). vitalsd db backup copies SQLite databases only.
        """
    }
}
