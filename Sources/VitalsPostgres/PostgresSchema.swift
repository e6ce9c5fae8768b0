import Logging
import PostgresNIO

/// One named, versioned change to the PostgreSQL schema, applied once.
///
/// Like the SQLite migrations (`AppDatabase.swift`), a migration is never edited once shipped: a
/// change comes as a new migration with a new name.
public struct PostgresMigration: Sendable {
    /// The name recorded in `schema_migrations`.
    public var name: String
    /// The statements, run in order in one transaction (one statement per query: the extended query
    /// protocol takes one at a time).
    public var statements: [PostgresQuery]

    /// - Parameters:
    ///   - name: the name recorded in `schema_migrations`; unique.
    ///   - statements: the statements of the migration, in order.
    public init(_ name: String, _ statements: [PostgresQuery]) {
        self.name = name
        self.statements = statements
    }
}

/// The PostgreSQL schema of vitalsd and its migrator.
///
/// Every migration runs in a transaction of its own that first takes a transaction-scoped advisory
/// lock (`pg_advisory_xact_lock`), then reads `schema_migrations`: two nodes migrating at once wait
/// for each other, and the second finds the migration recorded and skips it. A migration that fails
/// rolls back whole, recording nothing.
public enum PostgresSchema {
    /// The advisory lock key that serialises migrations: the bytes of "vitalsd\0" as a bigint.
    public static let migrationLockKey: Int64 = 0x7669_7461_6C73_6400

    /// The migrations of this version of vitalsd, in the order they are applied.
    public static let migrations: [PostgresMigration] = [
        PostgresMigration("1 mqtt session leases", [
            // One row per MQTT session (client id) that some node has ever owned. `epoch` rises by one at
            // each takeover and fences a former owner's writes; `owner` NULL once released. Expiry is
            // judged against the server's clock (`now()`), never a node's.
            """
            CREATE TABLE mqtt_session_leases (
                session_id TEXT PRIMARY KEY,
                owner TEXT,
                epoch BIGINT NOT NULL CHECK (epoch >= 1),
                expires_at TIMESTAMPTZ
            )
            """,
        ]),
        PostgresMigration("2 readings and dead letters", [
            // The same columns and the same invariant as the SQLite `readings` table (with its v6 columns):
            // one reading per (device, LOINC code, measured_at), so a redelivered message is absorbed.
            // Times in milliseconds since 1970 UTC, as in SQLite. No foreign keys to patients and devices
            // yet: those tables are not on PostgreSQL at this stage; they come with the rest of the schema.
            """
            CREATE TABLE readings (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                device_id TEXT NOT NULL,
                patient_id TEXT NOT NULL,
                type TEXT NOT NULL,
                loinc TEXT NOT NULL,
                value DOUBLE PRECISION NOT NULL,
                unit TEXT NOT NULL,
                canonical_value DOUBLE PRECISION NOT NULL,
                canonical_unit TEXT NOT NULL,
                measured_at BIGINT NOT NULL,
                received_at BIGINT NOT NULL,
                source TEXT NOT NULL DEFAULT 'device' CHECK (source IN ('device', 'manual')),
                message_id TEXT,
                flags TEXT,
                time_source TEXT NOT NULL DEFAULT 'device'
                    CHECK (time_source IN ('device', 'device_local', 'vendor_estimate', 'received_at')),
                local_offset_minutes INTEGER
                    CHECK (local_offset_minutes IS NULL OR local_offset_minutes BETWEEN -1080 AND 1080),
                vendor_reading_id TEXT,
                format TEXT,
                UNIQUE (device_id, loinc, measured_at)
            )
            """,
            "CREATE INDEX readings_patient_time ON readings (patient_id, measured_at)",
            // What could not be stored, with the payload unchanged, as in SQLite. A redelivered message is
            // recorded once per (topic, reason, payload, reading): SQLite reaches the same through its
            // `dead_letter_payloads` table and `dead_letters_once_per_message` index.
            """
            CREATE TABLE dead_letters (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                received_at BIGINT NOT NULL,
                topic TEXT NOT NULL,
                device_id TEXT,
                reason TEXT NOT NULL,
                detail TEXT NOT NULL,
                reading_index INTEGER,
                payload BYTEA NOT NULL,
                payload_bytes INTEGER NOT NULL
            )
            """,
            "CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at)",
            """
            CREATE UNIQUE INDEX dead_letters_once_per_message
                ON dead_letters (topic, reason, sha256(payload), coalesce(reading_index, -1))
            """,
        ]),
    ]

    /// Applies the migrations not yet recorded, each in its own transaction.
    ///
    /// Safe to call from several nodes at once and again on every start.
    /// - Parameters:
    ///   - client: a running client.
    ///   - migrations: the migrations to apply (default: ``migrations``).
    ///   - logger: receives one line per applied migration, with its name.
    /// - Returns: the names applied by this call, in order; empty when the schema was up to date.
    /// - Throws: the server's error for the first migration that failed (it and the later ones are not recorded).
    @discardableResult
    public static func migrate(
        _ client: PostgresClient, migrations: [PostgresMigration] = migrations, logger: Logger
    ) async throws -> [String] {
        var applied: [String] = []
        for migration in migrations {
            let ran = try await unwrappingTransactionError {
                try await client.withTransaction(logger: logger) { connection -> Bool in
                    try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLockKey))", logger: logger)
                    try await connection.query("""
                        CREATE TABLE IF NOT EXISTS schema_migrations (
                            name TEXT PRIMARY KEY,
                            applied_at TIMESTAMPTZ NOT NULL
                        )
                        """, logger: logger)
                    let done = try await connection.query(
                        "SELECT 1 FROM schema_migrations WHERE name = \(migration.name)", logger: logger
                    ).collect()
                    guard done.isEmpty else { return false }
                    for statement in migration.statements {
                        try await connection.query(statement, logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO schema_migrations (name, applied_at) VALUES (\(migration.name), now())", logger: logger)
                    return true
                }
            }
            if ran {
                logger.info("database migration applied", metadata: ["db.migration": "\(migration.name)"])
                applied.append(migration.name)
            }
        }
        return applied
    }

    /// The names recorded in `schema_migrations`, oldest first; empty when the table does not exist yet.
    /// - Throws: the server's error.
    public static func appliedMigrations(_ client: PostgresClient, logger: Logger) async throws -> [String] {
        let exists = try await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger)
            .decode(Bool.self).collected()
        guard exists.first == true else { return [] }
        return try await client.query("SELECT name FROM schema_migrations ORDER BY applied_at, name", logger: logger)
            .decode(String.self).collected()
    }
}

/// Runs `body` and rethrows the error thrown inside a `withTransaction` closure as it was thrown
/// (postgres-nio wraps it in `PostgresTransactionError`) when the rollback succeeded; other
/// transaction errors pass unchanged.
func unwrappingTransactionError<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as PostgresTransactionError {
        if let inner = error.closureError, error.rollbackError == nil { throw inner }
        throw error
    }
}

extension AsyncSequence {
    /// Every element, in order.
    func collected() async throws -> [Element] {
        var all: [Element] = []
        for try await element in self { all.append(element) }
        return all
    }
}
