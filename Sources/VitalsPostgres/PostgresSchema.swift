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
            // yet: those tables are not on PostgreSQL at this stage; migration 3 brings them and the keys.
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
        PostgresMigration("3 the clinical schema", clinicalSchema),
        PostgresMigration("4 cluster nodes", [
            // Each node's last heartbeat, by the server's clock: the nodes alive share the MQTT
            // sessions out (``ClusterMembership``). A row of a node that stopped goes stale; it is
            // deleted when the node shuts down cleanly.
            """
            CREATE TABLE cluster_nodes (
                node TEXT PRIMARY KEY,
                seen_at TIMESTAMPTZ NOT NULL
            )
            """,
        ]),
        PostgresMigration("5 timer runs", [
            // The last start of each job that one node runs per interval (routine checks,
            // maintenance), by the starting node's clock in milliseconds since 1970 UTC
            // (``PostgresTimerRuns``).
            """
            CREATE TABLE timer_runs (
                job TEXT PRIMARY KEY,
                started_at BIGINT NOT NULL,
                node TEXT NOT NULL
            )
            """,
        ]),
        PostgresMigration("6 dead-letter digests", [
            // A dead letter's payload digest kept in a column of its own, so that the payload can be
            // purged after the retention period (``PostgresMaintenance``) and a redelivery of the
            // message is still recorded once: the index of migration 2 hashed the payload itself.
            "ALTER TABLE dead_letters ADD COLUMN payload_sha256 BYTEA",
            "UPDATE dead_letters SET payload_sha256 = sha256(payload)",
            "ALTER TABLE dead_letters ALTER COLUMN payload_sha256 SET NOT NULL",
            """
            CREATE FUNCTION dead_letter_digest() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                NEW.payload_sha256 := sha256(NEW.payload);
                RETURN NEW;
            END
            $$
            """,
            """
            CREATE TRIGGER dead_letters_digest BEFORE INSERT ON dead_letters
            FOR EACH ROW EXECUTE FUNCTION dead_letter_digest()
            """,
            "DROP INDEX dead_letters_once_per_message",
            """
            CREATE UNIQUE INDEX dead_letters_once_per_message
                ON dead_letters (topic, reason, payload_sha256, coalesce(reading_index, -1))
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

extension PostgresSchema {
    /// Migration 3: every table of the SQLite schema (`AppDatabase.swift`, as of its migration "tasks:
    /// the worst reading when acknowledged") with the same columns, keys, checks and foreign keys, so
    /// that the invariants hold in the schema on both backends.
    ///
    /// Translated one to one: `INTEGER PRIMARY KEY` becomes an identity column; times stay
    /// milliseconds since 1970 UTC in `BIGINT`; flags stay `INTEGER` 0/1 with their checks, so both
    /// backends read the same values; `GLOB` checks become regular expressions; SQLite's
    /// `RAISE(ABORT, …)` triggers become one trigger function, ``refuse_change``, that raises the
    /// same message (and refuses `TRUNCATE` of an append-only table too, which SQLite has not);
    /// `json_valid` is a function of the same name. Known differences, checked by the schema parity
    /// test: a dead letter keeps its payload inline (unique per message through `sha256(payload)`,
    /// migration 2, kept in a column of its own since migration 6) where SQLite shares payloads through `dead_letter_payloads`.
    static let clinicalSchema: [PostgresQuery] = [
        // Trigger function of every append-only or change-once table: refuses the statement with the
        // message given as the trigger's argument.
        """
        CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
        END
        $$
        """,
        // SQLite's json_valid(text): true when the text parses as JSON.
        """
        CREATE FUNCTION json_valid(document TEXT) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN
            PERFORM document::jsonb;
            RETURN true;
        EXCEPTION WHEN others THEN
            RETURN false;
        END
        $$
        """,
        """
        CREATE TABLE users (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            username TEXT NOT NULL UNIQUE
                CHECK (length(username) BETWEEN 1 AND 64 AND username ~ '^[a-z0-9._@-]*$'),
            display_name TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
            role TEXT NOT NULL CHECK (role IN ('care_manager', 'clinician', 'admin')),
            password_hash TEXT NOT NULL CHECK (password_hash ~ '^\\$2[aby]\\$[0-9][0-9]\\$'),
            disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            created_at BIGINT NOT NULL,
            password_changed_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE patients (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
            timezone TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            name TEXT CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
            birth_date TEXT CHECK (birth_date IS NULL OR birth_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
            phone TEXT CHECK (phone IS NULL OR length(phone) BETWEEN 1 AND 40),
            care_manager TEXT REFERENCES users(username)
        )
        """,
        "CREATE INDEX patients_care_manager ON patients (care_manager)",
        """
        CREATE TABLE patient_programs (
            patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
            program TEXT NOT NULL CHECK (program IN ('hypertension', 'diabetes', 'heart_failure', 'copd')),
            PRIMARY KEY (patient_id, program)
        )
        """,
        """
        CREATE TABLE devices (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
            kind TEXT NOT NULL CHECK (kind IN ('bp_cuff', 'glucometer', 'cgm', 'scale', 'pulse_oximeter', 'thermometer', 'other')),
            patient_id TEXT NOT NULL REFERENCES patients(id),
            created_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX devices_patient ON devices (patient_id)",
        """
        CREATE TABLE patient_thresholds (
            patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            level TEXT NOT NULL CHECK (level IN ('critical', 'warning')),
            direction TEXT NOT NULL CHECK (direction IN ('high', 'low')),
            limit_value DOUBLE PRECISION NOT NULL,
            set_by TEXT NOT NULL,
            set_at BIGINT NOT NULL,
            PRIMARY KEY (patient_id, type, level, direction)
        )
        """,
        // A reading belongs to an enrolled device and patient, as in SQLite.
        "ALTER TABLE readings ADD FOREIGN KEY (device_id) REFERENCES devices(id)",
        "ALTER TABLE readings ADD FOREIGN KEY (patient_id) REFERENCES patients(id)",
        "ALTER TABLE dead_letters ADD COLUMN replayed_at BIGINT",
        "ALTER TABLE dead_letters ADD COLUMN replay_result TEXT",
        "CREATE INDEX dead_letters_not_replayed ON dead_letters (reason, received_at) WHERE replayed_at IS NULL",
        """
        CREATE TABLE audit_log (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target_type TEXT NOT NULL,
            target_id TEXT NOT NULL,
            detail TEXT
        )
        """,
        "CREATE INDEX audit_log_target ON audit_log (target_type, target_id)",
        """
        CREATE TABLE counters (
            name TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE episodes (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            patient_id TEXT NOT NULL REFERENCES patients(id),
            program TEXT NOT NULL DEFAULT 'rpm' CHECK (program IN ('rpm')),
            start_date TEXT NOT NULL CHECK (start_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
            end_date TEXT CHECK (end_date IS NULL OR end_date >= start_date),
            billing_practitioner TEXT NOT NULL CHECK (length(billing_practitioner) > 0),
            created_at BIGINT NOT NULL,
            created_by TEXT NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX episodes_one_open_per_patient ON episodes (patient_id, program) WHERE end_date IS NULL",
        """
        CREATE TABLE tasks (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            patient_id TEXT NOT NULL REFERENCES patients(id),
            kind TEXT NOT NULL DEFAULT 'threshold'
                CHECK (kind IN ('threshold', 'trend', 'late_data', 'days_of_data', 'no_data', 'device')),
            vital TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('high', 'low')),
            priority TEXT NOT NULL CHECK (priority IN ('critical', 'warning', 'routine')),
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
            reason TEXT NOT NULL,
            first_reading_id BIGINT REFERENCES readings(id),
            last_reading_id BIGINT REFERENCES readings(id),
            last_measured_at BIGINT,
            occurrences INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
            condition_key TEXT,
            opened_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            acknowledged_at BIGINT,
            acknowledged_by TEXT,
            resolved_at BIGINT,
            resolved_by TEXT,
            escalation_level INTEGER NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
            escalated_at BIGINT,
            next_escalation_at BIGINT,
            confirmation TEXT CHECK (confirmation IN ('pending', 'confirmed', 'not_confirmed', 'not_repeated')),
            confirmation_due_at BIGINT,
            data_stale INTEGER NOT NULL DEFAULT 0 CHECK (data_stale IN (0, 1)),
            owner TEXT REFERENCES users(username),
            version INTEGER NOT NULL DEFAULT 1,
            disposition TEXT CHECK (disposition IS NULL OR disposition IN (
                'contacted_patient', 'advised_emergency_care', 'notified_provider',
                'medication_adjusted_by_provider', 'device_problem', 'not_actionable')),
            latest_summary TEXT,
            worst_reading_id BIGINT REFERENCES readings(id),
            worst_summary TEXT,
            worst_measured_at BIGINT,
            worst_severity DOUBLE PRECISION,
            worst_level TEXT CHECK (worst_level IN ('critical', 'warning')),
            suppressed_breaches INTEGER NOT NULL DEFAULT 0 CHECK (suppressed_breaches >= 0),
            last_suppressed_at BIGINT,
            escalated_to TEXT CHECK (escalated_to IS NULL OR length(escalated_to) BETWEEN 1 AND 80),
            acknowledged_worst TEXT CHECK (acknowledged_worst IS NULL OR json_valid(acknowledged_worst)),
            CHECK ((status = 'resolved') = (resolved_at IS NOT NULL)),
            CHECK (kind NOT IN ('threshold', 'trend', 'late_data')
                   OR (first_reading_id IS NOT NULL AND last_reading_id IS NOT NULL AND last_measured_at IS NOT NULL)),
            CHECK (kind NOT IN ('threshold', 'trend') OR priority <> 'routine'),
            CHECK (kind IN ('threshold', 'trend', 'late_data') OR condition_key IS NOT NULL),
            -- Only an open critical task waits for escalation.
            CHECK (next_escalation_at IS NULL OR (status = 'open' AND priority = 'critical')),
            CHECK ((confirmation = 'pending') = (confirmation_due_at IS NOT NULL))
        )
        """,
        // One unresolved task per condition: the safety net under the task writer.
        "CREATE UNIQUE INDEX tasks_one_unresolved_per_condition ON tasks (patient_id, vital, direction) WHERE status <> 'resolved'",
        "CREATE UNIQUE INDEX tasks_once_per_timer_condition ON tasks (patient_id, kind, condition_key) WHERE condition_key IS NOT NULL",
        "CREATE INDEX tasks_queue ON tasks (status, priority, opened_at)",
        "CREATE INDEX tasks_escalation_due ON tasks (next_escalation_at) WHERE next_escalation_at IS NOT NULL",
        "CREATE INDEX tasks_confirmation_pending ON tasks (patient_id, vital) WHERE confirmation = 'pending'",
        "CREATE INDEX tasks_condition_history ON tasks (patient_id, vital, direction, id)",
        "CREATE INDEX tasks_owner ON tasks (owner, status)",
        """
        CREATE TABLE time_entries (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            patient_id TEXT NOT NULL REFERENCES patients(id),
            program TEXT NOT NULL CHECK (program IN ('rpm', 'ccm')),
            minutes INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 600),
            performed_at BIGINT NOT NULL,
            performed_by TEXT NOT NULL CHECK (length(performed_by) > 0),
            activity TEXT NOT NULL CHECK (length(activity) > 0),
            interactive INTEGER NOT NULL CHECK (interactive IN (0, 1)),
            modality TEXT CHECK (modality IN ('audio', 'video', 'sync_message')),
            task_id BIGINT REFERENCES tasks(id),
            voids_entry_id BIGINT UNIQUE REFERENCES time_entries(id),
            void_reason TEXT,
            created_at BIGINT NOT NULL,
            seconds INTEGER CHECK (seconds IS NULL OR seconds BETWEEN 1 AND 36000),
            timer_page TEXT CHECK (timer_page IS NULL OR length(timer_page) BETWEEN 1 AND 64),
            CHECK (interactive = 0 OR modality IS NOT NULL),
            CHECK ((voids_entry_id IS NULL) = (void_reason IS NULL))
        )
        """,
        "CREATE INDEX time_entries_patient ON time_entries (patient_id, performed_at)",
        "CREATE UNIQUE INDEX time_entries_once_per_timer_page ON time_entries (timer_page) WHERE timer_page IS NOT NULL",
        """
        CREATE TABLE task_events (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            task_id BIGINT NOT NULL REFERENCES tasks(id),
            at BIGINT NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('opened', 'updated', 'priority_raised', 'acknowledged', 'resolved',
                                                 'escalated', 'recovered', 'confirmation', 'data_stale',
                                                 'assigned', 'reopened')),
            actor TEXT NOT NULL,
            reading_id BIGINT REFERENCES readings(id),
            detail TEXT
        )
        """,
        "CREATE INDEX task_events_task ON task_events (task_id)",
        """
        CREATE TABLE outbox (
            id BIGINT PRIMARY KEY REFERENCES task_events(id),
            task_id BIGINT NOT NULL REFERENCES tasks(id),
            patient_id TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            body TEXT NOT NULL CHECK (json_valid(body)),
            event_id TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE UNIQUE INDEX outbox_event_id ON outbox (event_id)",
        """
        CREATE TABLE delivery_cursors (
            channel TEXT PRIMARY KEY,
            last_event_id BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE alert_states (
            patient_id TEXT NOT NULL REFERENCES patients(id),
            rule TEXT NOT NULL,
            active INTEGER NOT NULL CHECK (active IN (0, 1)),
            level TEXT CHECK (level IN ('critical', 'warning')),
            since BIGINT NOT NULL,
            suppressed INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (patient_id, rule)
        )
        """,
        """
        CREATE TABLE patient_rule_overrides (
            patient_id TEXT NOT NULL REFERENCES patients(id),
            rule_id TEXT NOT NULL,
            bound DOUBLE PRECISION,
            disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            set_by TEXT NOT NULL,
            set_at BIGINT NOT NULL,
            PRIMARY KEY (patient_id, rule_id),
            CHECK (disabled = 1 OR bound IS NOT NULL)
        )
        """,
        """
        CREATE TABLE device_status (
            device_id TEXT NOT NULL REFERENCES devices(id),
            name TEXT NOT NULL CHECK (name IN ('battery_percent', 'battery_mv', 'signal_dbm', 'signal_bars',
                                               'perfusion_index', 'external_power')),
            value DOUBLE PRECISION NOT NULL,
            observed_at BIGINT NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (device_id, name)
        )
        """,
        """
        CREATE TABLE device_events (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(id),
            kind TEXT NOT NULL CHECK (kind IN ('device_error', 'above_range', 'below_range')),
            type TEXT,
            code TEXT NOT NULL,
            measured_at BIGINT,
            received_at BIGINT NOT NULL
        )
        """,
        "CREATE UNIQUE INDEX device_events_once ON device_events (device_id, kind, coalesce(type, ''), coalesce(measured_at, received_at))",
        """
        CREATE TABLE reading_markers (
            device_id TEXT NOT NULL REFERENCES devices(id),
            measured_at BIGINT NOT NULL,
            flags INTEGER NOT NULL,
            PRIMARY KEY (device_id, measured_at)
        )
        """,
        """
        CREATE TABLE access_log (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target_type TEXT NOT NULL,
            target_id TEXT,
            detail TEXT
        )
        """,
        "CREATE INDEX access_log_at ON access_log (at)",
        "CREATE INDEX access_log_target ON access_log (target_type, target_id)",
        """
        CREATE TABLE smart_clients (
            id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
            name TEXT NOT NULL CHECK (length(name) > 0),
            jwks TEXT CHECK (jwks IS NULL OR json_valid(jwks)),
            jwks_url TEXT,
            scopes TEXT NOT NULL CHECK (length(scopes) > 0),
            enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
            created_at BIGINT NOT NULL,
            created_by TEXT NOT NULL,
            CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
        )
        """,
        """
        CREATE TABLE smart_assertion_ids (
            client_id TEXT NOT NULL REFERENCES smart_clients(id),
            jti TEXT NOT NULL,
            expires_at BIGINT NOT NULL,
            PRIMARY KEY (client_id, jti)
        )
        """,
        "CREATE INDEX smart_assertion_ids_expiry ON smart_assertion_ids (expires_at)",
        """
        CREATE TABLE access_tokens (
            token_sha256 BYTEA PRIMARY KEY CHECK (length(token_sha256) = 32),
            client_id TEXT NOT NULL REFERENCES smart_clients(id),
            scopes TEXT NOT NULL,
            issued_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL CHECK (expires_at > issued_at)
        )
        """,
        "CREATE INDEX access_tokens_expiry ON access_tokens (expires_at)",
        """
        CREATE TABLE reading_delivery_cursors (
            channel TEXT PRIMARY KEY,
            last_reading_id BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        )
        """,
        """
        CREATE TABLE task_notes (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            task_id BIGINT NOT NULL REFERENCES tasks(id),
            at BIGINT NOT NULL,
            author TEXT NOT NULL CHECK (length(author) > 0),
            text TEXT NOT NULL CHECK (length(text) > 0)
        )
        """,
        "CREATE INDEX task_notes_task ON task_notes (task_id, id)",
        """
        CREATE TABLE web_sessions (
            token_hash BYTEA PRIMARY KEY CHECK (length(token_hash) = 32),
            user_id BIGINT NOT NULL REFERENCES users(id),
            csrf_token TEXT NOT NULL CHECK (length(csrf_token) >= 32),
            created_at BIGINT NOT NULL,
            last_seen_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL
        )
        """,
        "CREATE INDEX web_sessions_user ON web_sessions (user_id)",
        """
        CREATE TABLE sign_in_failures (
            username TEXT PRIMARY KEY,
            failures INTEGER NOT NULL CHECK (failures >= 1),
            last_failure_at BIGINT NOT NULL,
            locked_until BIGINT
        )
        """,
        """
        CREATE TABLE device_bindings (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(id),
            patient_id TEXT NOT NULL REFERENCES patients(id),
            bound_from BIGINT,
            bound_to BIGINT,
            created_at BIGINT NOT NULL,
            created_by TEXT NOT NULL,
            CHECK (bound_to IS NULL OR bound_from IS NULL OR bound_to > bound_from)
        )
        """,
        "CREATE UNIQUE INDEX device_bindings_one_current ON device_bindings (device_id) WHERE bound_to IS NULL",
        "CREATE INDEX device_bindings_device ON device_bindings (device_id, bound_from)",
        """
        CREATE TABLE received_payloads (
            topic TEXT NOT NULL,
            sha256 BYTEA NOT NULL,
            received_at BIGINT NOT NULL,
            PRIMARY KEY (topic, sha256)
        )
        """,
        """
        CREATE TABLE monitoring_pauses (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            patient_id TEXT NOT NULL REFERENCES patients(id),
            starts_at BIGINT NOT NULL,
            end_date TEXT NOT NULL CHECK (end_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
            -- The first instant after end_date in the patient's time zone.
            ends_at BIGINT NOT NULL,
            reason TEXT NOT NULL CHECK (length(trim(reason)) BETWEEN 1 AND 500),
            created_by TEXT NOT NULL CHECK (length(created_by) > 0),
            created_at BIGINT NOT NULL,
            closed_at BIGINT,
            closed_by TEXT,
            CHECK (ends_at > starts_at),
            CHECK ((closed_at IS NULL) = (closed_by IS NULL)),
            CHECK (closed_at IS NULL OR closed_at >= starts_at)
        )
        """,
        "CREATE UNIQUE INDEX monitoring_pauses_one_open ON monitoring_pauses (patient_id) WHERE closed_at IS NULL",
    ] + appendOnly("audit_log", "audit_log is append-only")
        + appendOnly("time_entries", "time_entries is append-only; void an entry instead")
        + appendOnly("access_log", "access_log is append-only")
        + appendOnly("task_notes", "task_notes is append-only")
        + [
            // A binding gets its end once and nothing else; bindings are never deleted.
            """
            CREATE TRIGGER device_bindings_end_only BEFORE UPDATE ON device_bindings FOR EACH ROW
                WHEN (OLD.bound_to IS NOT NULL OR NEW.device_id IS DISTINCT FROM OLD.device_id
                      OR NEW.patient_id IS DISTINCT FROM OLD.patient_id OR NEW.bound_from IS DISTINCT FROM OLD.bound_from
                      OR NEW.created_at IS DISTINCT FROM OLD.created_at)
                EXECUTE FUNCTION refuse_change('a device binding only gets its end, once')
            """,
            """
            CREATE TRIGGER device_bindings_no_delete BEFORE DELETE OR TRUNCATE ON device_bindings
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('device bindings are history; end a binding instead')
            """,
            // A pause gets its close once and nothing else; pauses are never deleted.
            """
            CREATE TRIGGER monitoring_pauses_close_only BEFORE UPDATE ON monitoring_pauses FOR EACH ROW
                WHEN (OLD.closed_at IS NOT NULL OR NEW.patient_id IS DISTINCT FROM OLD.patient_id
                      OR NEW.starts_at IS DISTINCT FROM OLD.starts_at OR NEW.end_date IS DISTINCT FROM OLD.end_date
                      OR NEW.ends_at IS DISTINCT FROM OLD.ends_at OR NEW.reason IS DISTINCT FROM OLD.reason
                      OR NEW.created_by IS DISTINCT FROM OLD.created_by OR NEW.created_at IS DISTINCT FROM OLD.created_at)
                EXECUTE FUNCTION refuse_change('a monitoring pause only gets its close, once')
            """,
            """
            CREATE TRIGGER monitoring_pauses_no_delete BEFORE DELETE OR TRUNCATE ON monitoring_pauses
                FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('monitoring pauses are history; resume instead')
            """,
        ]

    /// Triggers that refuse every UPDATE, DELETE and TRUNCATE of `table` with `message`.
    private static func appendOnly(_ table: String, _ message: String) -> [PostgresQuery] {
        [
            PostgresQuery(unsafeSQL: """
                CREATE TRIGGER \(table)_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON \(table)
                    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change('\(message)')
                """),
        ]
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
