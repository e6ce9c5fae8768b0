import PostgresTestSupport
import Foundation
import GRDB
import PostgresNIO
import Testing
import VitalsPostgres
import VitalsStore

/// The shape of a schema that both backends must share: tables, their columns and which of them may
/// be NULL, primary and unique keys, and foreign keys.
struct SchemaShape: Equatable, CustomStringConvertible {
    /// table → column → NOT NULL (a primary-key column counts as NOT NULL).
    var columns: [String: [String: Bool]] = [:]
    /// "table pk:a,b", "table unique:a,b" for a plain unique key, "table index:NAME" for a partial or
    /// expression unique index (compared by name: both schemas name them alike).
    var keys: Set<String> = []
    /// "table.column -> table.column".
    var foreignKeys: Set<String> = []

    var description: String {
        "\(columns.count) tables, \(keys.count) keys, \(foreignKeys.count) foreign keys"
    }

    /// The entries of `self` missing from `other`, one line each.
    func missing(from other: SchemaShape) -> [String] {
        var lines: [String] = []
        for (table, columns) in self.columns.sorted(by: { $0.key < $1.key }) {
            guard let theirs = other.columns[table] else {
                lines.append("table \(table)")
                continue
            }
            for (column, notNull) in columns.sorted(by: { $0.key < $1.key }) {
                if let theirNotNull = theirs[column] {
                    if theirNotNull != notNull { lines.append("\(table).\(column) NOT NULL \(notNull) against \(theirNotNull)") }
                } else {
                    lines.append("column \(table).\(column)")
                }
            }
        }
        lines += keys.subtracting(other.keys).sorted().map { "key \($0)" }
        lines += foreignKeys.subtracting(other.foreignKeys).sorted().map { "foreign key \($0)" }
        return lines
    }
}

/// Reads the shape of the SQLite schema that `AppDatabase` migrates to.
func sqliteShape() throws -> SchemaShape {
    let database = try AppDatabase.inMemory()
    return try database.writer.read { db in
        var shape = SchemaShape()
        let tables = try String.fetchAll(db, sql: """
            SELECT name FROM sqlite_master
            WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'grdb_migrations'
            """)
        for table in tables {
            var columns: [String: Bool] = [:]
            var primaryKey: [(Int, String)] = []
            for row in try Row.fetchAll(db, sql: "PRAGMA table_info(\(table.quotedDatabaseIdentifier))") {
                let name: String = row["name"]
                let pk: Int = row["pk"]
                columns[name] = (row["notnull"] as Int) == 1 || pk > 0
                if pk > 0 { primaryKey.append((pk, name)) }
            }
            shape.columns[table] = columns
            shape.keys.insert("\(table) pk:" + primaryKey.sorted { $0.0 < $1.0 }.map(\.1).joined(separator: ","))
            for index in try Row.fetchAll(db, sql: "PRAGMA index_list(\(table.quotedDatabaseIdentifier))") {
                let name: String = index["name"]
                guard (index["unique"] as Int) == 1, (index["origin"] as String) != "pk" else { continue }
                let parts = try Row.fetchAll(db, sql: "PRAGMA index_info(\(name.quotedDatabaseIdentifier))")
                let names = parts.map { $0["name"] as String? }
                if (index["partial"] as Int) == 1 || names.contains(nil) {
                    shape.keys.insert("\(table) index:\(name)")
                } else {
                    shape.keys.insert("\(table) unique:" + names.compactMap { $0 }.joined(separator: ","))
                }
            }
            for fk in try Row.fetchAll(db, sql: "PRAGMA foreign_key_list(\(table.quotedDatabaseIdentifier))") {
                shape.foreignKeys.insert("\(table).\(fk["from"] as String) -> \(fk["table"] as String).\(fk["to"] as String)")
            }
        }
        return shape
    }
}

/// Reads the shape of the PostgreSQL schema in the public schema of `client`'s database.
func postgresShape(_ client: PostgresClient) async throws -> SchemaShape {
    var shape = SchemaShape()
    let columns = try await client.query("""
        SELECT c.table_name::text, c.column_name::text, c.is_nullable::text
        FROM information_schema.columns c
        JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
        """, logger: testLogger)
    for try await (table, column, nullable) in columns.decode((String, String, String).self) {
        shape.columns[table, default: [:]][column] = nullable == "NO"
    }
    let indexes = try await client.query("""
        SELECT t.relname::text, x.relname::text, i.indisprimary, i.indisunique,
               i.indpred IS NOT NULL OR i.indexprs IS NOT NULL,
               (SELECT string_agg(a.attname::text, ',' ORDER BY k.n)
                FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
        FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_class x ON x.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = 'public'
        """, logger: testLogger)
    for try await (table, index, primary, unique, partial, names) in indexes.decode((String, String, Bool, Bool, Bool, String?).self) {
        if primary {
            shape.keys.insert("\(table) pk:\(names ?? "")")
        } else if unique {
            shape.keys.insert(partial ? "\(table) index:\(index)" : "\(table) unique:\(names ?? "")")
        }
    }
    let foreignKeys = try await client.query("""
        SELECT t.relname::text, a.attname::text, f.relname::text, fa.attname::text
        FROM pg_constraint c
        JOIN pg_class t ON t.oid = c.conrelid
        JOIN pg_class f ON f.oid = c.confrelid
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
        WHERE c.contype = 'f'
        """, logger: testLogger)
    for try await (table, column, target, targetColumn) in foreignKeys.decode((String, String, String, String).self) {
        shape.foreignKeys.insert("\(table).\(column) -> \(target).\(targetColumn)")
    }
    return shape
}

@Suite("The PostgreSQL schema has the SQLite schema's tables, columns and keys")
struct SchemaParityTests {
    @Test func bothSchemasHaveTheSameTablesColumnsAndKeys() async throws {
        var sqlite = try sqliteShape()
        // Known differences, by design: SQLite shares dead-letter payloads through a table of their
        // own; PostgreSQL keeps each payload inline and its session leases and migration record apart.
        sqlite.columns["dead_letter_payloads"] = nil
        sqlite.columns["dead_letters"]?["payload_id"] = nil
        sqlite.keys = sqlite.keys.filter { !$0.hasPrefix("dead_letter_payloads ") }
        sqlite.foreignKeys.remove("dead_letters.payload_id -> dead_letter_payloads.id")
        // The schema this test guards: at least these, so a query that returned nothing fails here.
        #expect(sqlite.columns.count >= 30)
        #expect(sqlite.keys.contains("tasks index:tasks_one_unresolved_per_condition"))
        #expect(sqlite.foreignKeys.contains("readings.device_id -> devices.id"))

        let postgres = try await ThrowawayPostgres.shared().withDatabase { client, _ in
            var shape = try await postgresShape(client)
            for table in ["schema_migrations", "mqtt_session_leases", "cluster_nodes", "timer_runs"] {
                shape.columns[table] = nil
                shape.keys = shape.keys.filter { !$0.hasPrefix("\(table) ") }
            }
            // The payload's digest, kept when the payload is purged (migration 6).
            shape.columns["dead_letters"]?["payload_sha256"] = nil
            return shape
        }
        let onlySQLite = sqlite.missing(from: postgres)
        let onlyPostgres = postgres.missing(from: sqlite)
        #expect(onlySQLite.isEmpty, "in SQLite only:\n\(onlySQLite.joined(separator: "\n"))")
        #expect(onlyPostgres.isEmpty, "in PostgreSQL only:\n\(onlyPostgres.joined(separator: "\n"))")
    }
}

/// Runs `sql` and returns the server's SQLSTATE when it refused it, nil when it succeeded.
func refusal(_ client: PostgresClient, _ sql: String) async throws -> String? {
    do {
        try await client.query(PostgresQuery(unsafeSQL: sql), logger: testLogger)
        return nil
    } catch let error as PSQLError {
        return error.serverInfo?[.sqlState]
    }
}

@Suite("The invariants hold in the PostgreSQL schema")
struct PostgresInvariantTests {
    /// A patient "p1" with device "d1", a reading of it (id 1, the first of a fresh database) and a
    /// user "nurse".
    static let seed = [
        "INSERT INTO users (username, display_name, role, password_hash, created_at, password_changed_at) VALUES ('nurse', 'N', 'care_manager', '$2b$12$abcdefghijklmnopqrstuv', 0, 0)",
        "INSERT INTO patients (id, timezone, created_at, care_manager) VALUES ('p1', 'America/Chicago', 0, 'nurse')",
        "INSERT INTO devices (id, kind, patient_id, created_at) VALUES ('d1', 'glucometer', 'p1', 0)",
        """
        INSERT INTO readings (device_id, patient_id, type, loinc, value, unit, canonical_value, canonical_unit, measured_at, received_at)
        VALUES ('d1', 'p1', 'glucose', '41653-7', 48, 'mg/dL', 48, 'mg/dL', 1000, 2000)
        """,
    ]

    static func withSeededDatabase(_ body: @escaping @Sendable (PostgresClient) async throws -> Void) async throws {
        _ = try await ThrowawayPostgres.shared().withDatabase { client, _ in
            for sql in seed { try await client.query(PostgresQuery(unsafeSQL: sql), logger: testLogger) }
            try await body(client)
            return true
        }
    }

    static func task(status: String = "open", resolvedAt: String = "NULL") -> String {
        """
        INSERT INTO tasks (patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
                           last_reading_id, last_measured_at, opened_at, updated_at, resolved_at)
        VALUES ('p1', 'threshold', 'glucose', 'low', 'critical', '\(status)', 'Glucose 48 mg/dL', 1, 1, 1000, 3000, 3000, \(resolvedAt))
        """
    }

    @Test func oneUnresolvedTaskPerCondition() async throws {
        try await Self.withSeededDatabase { (client: PostgresClient) async throws in
            #expect(try await refusal(client, Self.task()) == nil)
            // 23505: unique_violation. An acknowledged task is still unresolved.
            #expect(try await refusal(client, Self.task()) == "23505")
            #expect(try await refusal(client, Self.task(status: "acknowledged")) == "23505")
            #expect(try await refusal(client, "UPDATE tasks SET status = 'resolved', resolved_at = 4000") == nil)
            #expect(try await refusal(client, Self.task()) == nil)
            // 23514: check_violation: a resolved task without its time.
            #expect(try await refusal(client, Self.task(status: "resolved")) == "23514")
        }
    }

    @Test func appendOnlyTablesRefuseUpdateDeleteAndTruncate() async throws {
        try await Self.withSeededDatabase { (client: PostgresClient) async throws in
            #expect(try await refusal(client, "INSERT INTO audit_log (at, actor, action, target_type, target_id) VALUES (1, 'nurse', 'x', 'patient', 'p1')") == nil)
            #expect(try await refusal(client, Self.task()) == nil)
            #expect(try await refusal(client, "INSERT INTO task_notes (task_id, at, author, text) SELECT id, 1, 'nurse', 'called' FROM tasks") == nil)
            #expect(try await refusal(client, """
                INSERT INTO time_entries (patient_id, program, minutes, performed_at, performed_by, activity, interactive, created_at)
                VALUES ('p1', 'rpm', 5, 1, 'nurse', 'review', 0, 1)
                """) == nil)
            // 23001: restrict_violation, raised by refuse_change() with SQLite's message.
            for (table, column) in [("audit_log", "at"), ("task_notes", "at"), ("time_entries", "minutes"), ("access_log", "at")] {
                #expect(try await refusal(client, "UPDATE \(table) SET \(column) = \(column)") == "23001", "\(table)")
                #expect(try await refusal(client, "DELETE FROM \(table)") == "23001", "\(table)")
                #expect(try await refusal(client, "TRUNCATE \(table) CASCADE") == "23001", "\(table)")
            }
            #expect(try await rowCount(client, "audit_log") == 1)
            #expect(try await rowCount(client, "time_entries") == 1)
            // A correction is a voiding entry, which the schema accepts.
            #expect(try await refusal(client, """
                INSERT INTO time_entries (patient_id, program, minutes, performed_at, performed_by, activity, interactive,
                                          created_at, voids_entry_id, void_reason)
                SELECT 'p1', 'rpm', 5, 1, 'nurse', 'review', 0, 2, id, 'wrong patient' FROM time_entries
                """) == nil)
        }
    }

    @Test func aDeviceBindingGetsItsEndOnceAndIsNeverDeleted() async throws {
        try await Self.withSeededDatabase { (client: PostgresClient) async throws in
            let bind = "INSERT INTO device_bindings (device_id, patient_id, bound_from, created_at, created_by) VALUES ('d1', 'p1', 0, 0, 'nurse')"
            #expect(try await refusal(client, bind) == nil)
            // One current binding per device.
            #expect(try await refusal(client, bind) == "23505")
            #expect(try await refusal(client, "UPDATE device_bindings SET patient_id = 'p2'") == "23001")
            #expect(try await refusal(client, "UPDATE device_bindings SET bound_to = 5000") == nil)
            #expect(try await refusal(client, "UPDATE device_bindings SET bound_to = 6000") == "23001")
            #expect(try await refusal(client, "DELETE FROM device_bindings") == "23001")
            #expect(try await rowCount(client, "device_bindings WHERE bound_to = 5000") == 1)
        }
    }

    @Test func foreignKeysChecksAndJSONHold() async throws {
        try await Self.withSeededDatabase { (client: PostgresClient) async throws in
            // 23503: foreign_key_violation: a reading of a device nobody enrolled.
            #expect(try await refusal(client, """
                INSERT INTO readings (device_id, patient_id, type, loinc, value, unit, canonical_value, canonical_unit, measured_at, received_at)
                VALUES ('nobody', 'p1', 'glucose', '41653-7', 100, 'mg/dL', 100, 'mg/dL', 1, 2)
                """) == "23503")
            #expect(try await refusal(client, "INSERT INTO patients (id, timezone, created_at, care_manager) VALUES ('p2', 'UTC', 0, 'stranger')") == "23503")
            #expect(try await refusal(client, "INSERT INTO patients (id, timezone, created_at, birth_date) VALUES ('p3', 'UTC', 0, '1950-1-2')") == "23514")
            #expect(try await refusal(client, "INSERT INTO users (username, display_name, role, password_hash, created_at, password_changed_at) VALUES ('Bad Name', 'B', 'admin', '$2b$12$x', 0, 0)") == "23514")
            #expect(try await refusal(client, "INSERT INTO users (username, display_name, role, password_hash, created_at, password_changed_at) VALUES ('plain', 'P', 'admin', 'secret', 0, 0)") == "23514")
            #expect(try await refusal(client, Self.task()) == nil)
            let event = "INSERT INTO task_events (id, task_id, at, event, actor) OVERRIDING SYSTEM VALUE SELECT %@, id, 1, 'opened', 'vitalsd' FROM tasks"
            #expect(try await refusal(client, event.replacingOccurrences(of: "%@", with: "7")) == nil)
            #expect(try await refusal(client, event.replacingOccurrences(of: "%@", with: "8")) == nil)
            let outbox = "INSERT INTO outbox (id, task_id, patient_id, created_at, body, event_id) SELECT %@, id, 'p1', 1, '%@', 'e%@' FROM tasks"
            func row(_ id: Int, _ body: String) -> String {
                var sql = outbox
                for value in [String(id), body, String(id)] {
                    sql = sql.replacingCharacters(in: sql.range(of: "%@")!, with: value)
                }
                return sql
            }
            #expect(try await refusal(client, row(7, #"{"event":"opened"}"#)) == nil)
            #expect(try await refusal(client, row(8, "{not json")) == "23514")
            // One open episode per patient and program.
            let episode = "INSERT INTO episodes (patient_id, start_date, billing_practitioner, created_at, created_by) VALUES ('p1', '2026-12-01', 'dr', 0, 'nurse')"
            #expect(try await refusal(client, episode) == nil)
            #expect(try await refusal(client, episode) == "23505")
        }
    }
}
