import Foundation
import GRDB
import VitalsDomain

/// The vitalsd database: readings, dead letters, enrollment, thresholds, tasks and the audit trail.
///
/// One `AppDatabase` wraps one `DatabaseWriter`. Production and the admin commands open a
/// `DatabasePool` on the same file (WAL mode), so a command can run while the daemon runs.
/// Every write runs in a `BEGIN IMMEDIATE` transaction (GRDB's default for pool writes), which
/// waits for the write lock up to the busy timeout instead of failing at once (failure-modes F17).
public struct AppDatabase: Sendable {
    /// The underlying GRDB writer.
    public let writer: any DatabaseWriter

    /// This opening of the database: 12 random hexadecimal digits, new for every `AppDatabase`, so for
    /// every start of the daemon and every command. Part of each task event's `event_id`
    /// (`task-event-<row id>-<incarnation>`), which keeps event ids unique after a restore from a
    /// backup, when SQLite's row ids start again from the copy's highest.
    public let incarnation: String

    /// Wraps a writer and brings its schema up to date.
    /// - Throws: a GRDB `DatabaseError` if a migration fails.
    public init(_ writer: any DatabaseWriter) throws {
        try self.init(writer, migrating: true)
    }

    private init(_ writer: any DatabaseWriter, migrating: Bool) throws {
        self.writer = writer
        self.incarnation = TaskEventMessage.newIncarnation()
        if migrating { try Self.migrator.migrate(writer) }
    }

    /// Opens the database at `path` for reading only, as it is: no migration, no change to the file
    /// (`config check` beside a running daemon). Its schema must be up to date for the queries used
    /// (see ``pendingMigrations(path:)``); every write throws.
    /// - Throws: GRDB `DatabaseError` when the file cannot be opened.
    public static func openReadOnly(path: String) throws -> AppDatabase {
        try AppDatabase(readOnlyQueue(path: path), migrating: false)
    }

    /// A read-only connection to the file at `path`: it never migrates, writes or creates anything.
    static func readOnlyQueue(path: String) throws -> DatabaseQueue {
        var config = Configuration()
        config.readonly = true
        config.foreignKeysEnabled = true
        return try DatabaseQueue(path: path, configuration: config)
    }

    /// How strictly commits reach the disk.
    public enum Synchronous: String, Sendable, CaseIterable {
        /// `PRAGMA synchronous = FULL`: a commit survives power loss. The default.
        case full
        /// `PRAGMA synchronous = NORMAL`: a commit survives a process crash; the last commits may be
        /// lost on power loss, after the broker was already told they were received.
        case normal
    }

    /// Opens (creating if needed) the database file at `path` as a WAL-mode pool. A new file is
    /// created with mode 0600 (``PrivateFile``).
    ///
    /// - Parameters:
    ///   - path: file path; its directory must exist.
    ///   - synchronous: durability of commits (default `full`, see failure-modes F19).
    ///   - busyTimeout: seconds a write waits for another process's write lock before failing (default 10 s).
    ///   - backgroundCheckpoints: true when the caller checkpoints the WAL itself with a
    ///     ``WALCheckpointer`` (the daemon); commits then never run a checkpoint. Default false:
    ///     SQLite checkpoints after a commit that leaves more than 1,000 pages in the WAL.
    /// - Throws: GRDB `DatabaseError` when the file cannot be opened or fails `PRAGMA quick_check`;
    ///   ``PrivateFile/Failure`` when it cannot be created.
    public static func open(
        path: String, synchronous: Synchronous = .full, busyTimeout: Double = 10, backgroundCheckpoints: Bool = false
    ) throws -> AppDatabase {
        var config = Configuration()
        config.busyMode = .timeout(busyTimeout)
        config.foreignKeysEnabled = true
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous == .full ? "FULL" : "NORMAL")")
            // Bound the WAL after checkpoints (failure-modes F18).
            try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
            if backgroundCheckpoints {
                // No checkpoint on the commit path: a checkpoint copies the WAL into the database
                // file and fsyncs it, and run by the committing connection it stalled live ingest by
                // tens of milliseconds (p99 60 ms against 6 ms without, BENCHMARKS.md). The caller
                // runs a ``WALCheckpointer`` instead.
                try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
            }
        }
        // The file holds PHI: 0600 whatever the umask, owned by the service's user (PrivateFile).
        // SQLite gives its -wal and -shm files the database file's mode.
        try PrivateFile.prepare(path)
        let pool = try DatabasePool(path: path, configuration: config)
        let result = try pool.read { db in try String.fetchOne(db, sql: "PRAGMA quick_check") }
        guard result == "ok" else {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "PRAGMA quick_check failed: \(result ?? "no result")")
        }
        return try AppDatabase(pool)
    }

    /// The schema migrations this build would apply to the database at `path`, in order; empty when
    /// it is up to date. Reads the file without changing it (a read-only connection), so it is safe
    /// beside a running daemon of an older build.
    /// - Throws: GRDB `DatabaseError` when the file cannot be read or is not a database.
    public static func pendingMigrations(path: String) throws -> [String] {
        let queue = try readOnlyQueue(path: path)
        defer { try? queue.close() }
        return try queue.read { db in
            let applied = try migrator.appliedIdentifiers(db)
            return migrator.migrations.filter { !applied.contains($0) }
        }
    }

    /// The names of this build's schema migrations, in the order they apply.
    public static var migrationNames: [String] { migrator.migrations }

    /// Closes the database; later use throws.
    public func close() throws {
        try writer.close()
    }

    /// An empty database in memory, for tests.
    public static func inMemory() throws -> AppDatabase {
        try AppDatabase(DatabaseQueue())
    }
}

extension AppDatabase {
    /// The schema. Migrations are never edited once shipped; changes are new migrations.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE patients (
                    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
                    timezone TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                );
                CREATE TABLE patient_programs (
                    patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
                    program TEXT NOT NULL CHECK (program IN ('hypertension', 'diabetes', 'heart_failure', 'copd')),
                    PRIMARY KEY (patient_id, program)
                ) WITHOUT ROWID;
                CREATE TABLE devices (
                    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
                    kind TEXT NOT NULL CHECK (kind IN ('bp_cuff', 'glucometer', 'cgm', 'scale', 'pulse_oximeter', 'thermometer', 'other')),
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    created_at INTEGER NOT NULL
                );
                CREATE INDEX devices_patient ON devices(patient_id);
                CREATE TABLE patient_thresholds (
                    patient_id TEXT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
                    type TEXT NOT NULL,
                    level TEXT NOT NULL CHECK (level IN ('critical', 'warning')),
                    direction TEXT NOT NULL CHECK (direction IN ('high', 'low')),
                    limit_value REAL NOT NULL,
                    set_by TEXT NOT NULL,
                    set_at INTEGER NOT NULL,
                    PRIMARY KEY (patient_id, type, level, direction)
                ) WITHOUT ROWID;
                CREATE TABLE readings (
                    id INTEGER PRIMARY KEY,
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    type TEXT NOT NULL,
                    loinc TEXT NOT NULL,
                    value REAL NOT NULL,
                    unit TEXT NOT NULL,
                    canonical_value REAL NOT NULL,
                    canonical_unit TEXT NOT NULL,
                    measured_at INTEGER NOT NULL,
                    received_at INTEGER NOT NULL,
                    source TEXT NOT NULL DEFAULT 'device' CHECK (source IN ('device', 'manual')),
                    message_id TEXT,
                    UNIQUE (device_id, loinc, measured_at)
                );
                CREATE INDEX readings_patient_time ON readings(patient_id, measured_at);
                CREATE TABLE dead_letters (
                    id INTEGER PRIMARY KEY,
                    received_at INTEGER NOT NULL,
                    topic TEXT NOT NULL,
                    device_id TEXT,
                    reason TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    reading_index INTEGER,
                    payload BLOB NOT NULL,
                    payload_bytes INTEGER NOT NULL
                );
                CREATE INDEX dead_letters_reason ON dead_letters(reason, received_at);
                CREATE TABLE tasks (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    vital TEXT NOT NULL,
                    direction TEXT NOT NULL CHECK (direction IN ('high', 'low')),
                    priority TEXT NOT NULL CHECK (priority IN ('critical', 'warning')),
                    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
                    reason TEXT NOT NULL,
                    first_reading_id INTEGER NOT NULL REFERENCES readings(id),
                    last_reading_id INTEGER NOT NULL REFERENCES readings(id),
                    last_measured_at INTEGER NOT NULL,
                    occurrences INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
                    opened_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    acknowledged_at INTEGER,
                    acknowledged_by TEXT,
                    resolved_at INTEGER,
                    resolved_by TEXT,
                    note TEXT,
                    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
                );
                -- At most one unresolved task per condition, enforced by SQLite itself.
                CREATE UNIQUE INDEX tasks_one_unresolved_per_condition
                    ON tasks(patient_id, vital, direction) WHERE status <> 'resolved';
                CREATE INDEX tasks_queue ON tasks(status, priority, opened_at);
                CREATE TABLE task_events (
                    id INTEGER PRIMARY KEY,
                    task_id INTEGER NOT NULL REFERENCES tasks(id),
                    at INTEGER NOT NULL,
                    event TEXT NOT NULL CHECK (event IN ('opened', 'updated', 'priority_raised', 'acknowledged', 'resolved')),
                    actor TEXT NOT NULL,
                    reading_id INTEGER REFERENCES readings(id),
                    detail TEXT
                );
                CREATE INDEX task_events_task ON task_events(task_id);
                CREATE TABLE audit_log (
                    id INTEGER PRIMARY KEY,
                    at INTEGER NOT NULL,
                    actor TEXT NOT NULL,
                    action TEXT NOT NULL,
                    target_type TEXT NOT NULL,
                    target_id TEXT NOT NULL,
                    detail TEXT
                );
                CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
                    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
                CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
                    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
                CREATE TABLE counters (
                    name TEXT PRIMARY KEY NOT NULL,
                    value INTEGER NOT NULL
                ) WITHOUT ROWID;
                INSERT INTO counters(name, value) VALUES ('duplicates', 0);
                """)
        }
        migrator.registerMigration("v2 episodes and time entries") { db in
            try db.execute(sql: """
                CREATE TABLE episodes (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    program TEXT NOT NULL DEFAULT 'rpm' CHECK (program IN ('rpm')),
                    start_date TEXT NOT NULL CHECK (start_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
                    end_date TEXT CHECK (end_date IS NULL OR end_date >= start_date),
                    billing_practitioner TEXT NOT NULL CHECK (length(billing_practitioner) > 0),
                    created_at INTEGER NOT NULL,
                    created_by TEXT NOT NULL
                );
                -- One open RPM episode per patient: one practitioner bills per period (CMS CY2021 rule).
                CREATE UNIQUE INDEX episodes_one_open_per_patient ON episodes(patient_id, program) WHERE end_date IS NULL;
                CREATE TABLE time_entries (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    program TEXT NOT NULL CHECK (program IN ('rpm', 'ccm')),
                    minutes INTEGER NOT NULL CHECK (minutes BETWEEN 1 AND 600),
                    performed_at INTEGER NOT NULL,
                    performed_by TEXT NOT NULL CHECK (length(performed_by) > 0),
                    activity TEXT NOT NULL CHECK (length(activity) > 0),
                    interactive INTEGER NOT NULL CHECK (interactive IN (0, 1)),
                    modality TEXT CHECK (modality IN ('audio', 'video', 'sync_message')),
                    task_id INTEGER REFERENCES tasks(id),
                    voids_entry_id INTEGER UNIQUE REFERENCES time_entries(id),
                    void_reason TEXT,
                    created_at INTEGER NOT NULL,
                    CHECK (interactive = 0 OR modality IS NOT NULL),
                    CHECK ((voids_entry_id IS NULL) = (void_reason IS NULL))
                );
                CREATE INDEX time_entries_patient ON time_entries(patient_id, performed_at);
                -- Append-only: a correction is a new entry that voids an old one.
                CREATE TRIGGER time_entries_append_only_update BEFORE UPDATE ON time_entries
                    BEGIN SELECT RAISE(ABORT, 'time_entries is append-only; void an entry instead'); END;
                CREATE TRIGGER time_entries_append_only_delete BEFORE DELETE ON time_entries
                    BEGIN SELECT RAISE(ABORT, 'time_entries is append-only; void an entry instead'); END;
                """)
        }
        migrator.registerMigration("v3 routine tasks") { db in
            // Tasks that timers raise (days of data, no data) have no reading and a `routine` priority.
            // SQLite cannot relax NOT NULL or CHECK in place: rebuild the table (sqlite.org/lang_altertable.html).
            try db.execute(sql: """
                CREATE TABLE tasks_v3 (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    kind TEXT NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'days_of_data', 'no_data')),
                    vital TEXT NOT NULL,
                    direction TEXT NOT NULL CHECK (direction IN ('high', 'low')),
                    priority TEXT NOT NULL CHECK (priority IN ('critical', 'warning', 'routine')),
                    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
                    reason TEXT NOT NULL,
                    first_reading_id INTEGER REFERENCES readings(id),
                    last_reading_id INTEGER REFERENCES readings(id),
                    last_measured_at INTEGER,
                    occurrences INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
                    condition_key TEXT,
                    opened_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    acknowledged_at INTEGER,
                    acknowledged_by TEXT,
                    resolved_at INTEGER,
                    resolved_by TEXT,
                    note TEXT,
                    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL)),
                    CHECK (kind <> 'threshold' OR (first_reading_id IS NOT NULL AND last_reading_id IS NOT NULL
                                                   AND last_measured_at IS NOT NULL AND priority <> 'routine')),
                    CHECK (kind = 'threshold' OR condition_key IS NOT NULL)
                );
                INSERT INTO "tasks_v3"(id, patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
                                     last_reading_id, last_measured_at, occurrences, opened_at, updated_at, acknowledged_at,
                                     acknowledged_by, resolved_at, resolved_by, note)
                    SELECT id, patient_id, 'threshold', vital, direction, priority, status, reason, first_reading_id,
                           last_reading_id, last_measured_at, occurrences, opened_at, updated_at, acknowledged_at,
                           acknowledged_by, resolved_at, resolved_by, note
                    FROM tasks;
                DROP TABLE tasks;
                ALTER TABLE tasks_v3 RENAME TO tasks;
                -- At most one unresolved task per condition, enforced by SQLite itself.
                CREATE UNIQUE INDEX tasks_one_unresolved_per_condition
                    ON tasks(patient_id, vital, direction) WHERE status <> 'resolved';
                -- A timer raises a condition at most once, ever: one task per patient and period, or per silence.
                CREATE UNIQUE INDEX tasks_once_per_timer_condition
                    ON tasks(patient_id, kind, condition_key) WHERE condition_key IS NOT NULL;
                CREATE INDEX tasks_queue ON tasks(status, priority, opened_at);
                """)
        }
        migrator.registerMigration("v4 dead-letter payloads stored once") { db in
            // A message's payload is stored once, however many of its readings are rejected, and a
            // redelivered message (retained, or unacknowledged before a crash) is recorded once.
            try db.execute(sql: """
                CREATE TABLE dead_letter_payloads (
                    id INTEGER PRIMARY KEY,
                    sha256 BLOB NOT NULL UNIQUE,
                    payload BLOB NOT NULL,
                    payload_bytes INTEGER NOT NULL
                );
                ALTER TABLE dead_letters ADD COLUMN payload_id INTEGER REFERENCES dead_letter_payloads(id);
                CREATE UNIQUE INDEX dead_letters_once_per_message
                    ON dead_letters(payload_id, topic, reason, coalesce(reading_index, -1)) WHERE payload_id IS NOT NULL;
                """)
        }
        migrator.registerMigration("v5-alerting") { db in
            // Trend and late-data tasks, escalation, confirmation and stale-data flags on tasks; alert
            // state for hysteresis; the outbox of task events. Tasks and task events are rebuilt to
            // widen their CHECK constraints (sqlite.org/lang_altertable.html).
            try db.execute(sql: """
                CREATE TABLE tasks_v5 (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    kind TEXT NOT NULL DEFAULT 'threshold'
                        CHECK (kind IN ('threshold', 'trend', 'late_data', 'days_of_data', 'no_data', 'device')),
                    vital TEXT NOT NULL,
                    direction TEXT NOT NULL CHECK (direction IN ('high', 'low')),
                    priority TEXT NOT NULL CHECK (priority IN ('critical', 'warning', 'routine')),
                    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
                    reason TEXT NOT NULL,
                    first_reading_id INTEGER REFERENCES readings(id),
                    last_reading_id INTEGER REFERENCES readings(id),
                    last_measured_at INTEGER,
                    occurrences INTEGER NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
                    condition_key TEXT,
                    opened_at INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL,
                    acknowledged_at INTEGER,
                    acknowledged_by TEXT,
                    resolved_at INTEGER,
                    resolved_by TEXT,
                    note TEXT,
                    escalation_level INTEGER NOT NULL DEFAULT 0 CHECK (escalation_level >= 0),
                    escalated_at INTEGER,
                    next_escalation_at INTEGER,
                    confirmation TEXT CHECK (confirmation IN ('pending', 'confirmed', 'not_confirmed', 'not_repeated')),
                    confirmation_due_at INTEGER,
                    data_stale INTEGER NOT NULL DEFAULT 0 CHECK (data_stale IN (0, 1)),
                    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL)),
                    CHECK (kind NOT IN ('threshold', 'trend', 'late_data')
                           OR (first_reading_id IS NOT NULL AND last_reading_id IS NOT NULL AND last_measured_at IS NOT NULL)),
                    CHECK (kind NOT IN ('threshold', 'trend') OR priority <> 'routine'),
                    CHECK (kind IN ('threshold', 'trend', 'late_data') OR condition_key IS NOT NULL),
                    -- Only an open critical task waits for escalation.
                    CHECK (next_escalation_at IS NULL OR (status = 'open' AND priority = 'critical')),
                    CHECK ((confirmation = 'pending') = (confirmation_due_at IS NOT NULL))
                );
                INSERT INTO "tasks_v5"(id, patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
                                     last_reading_id, last_measured_at, occurrences, condition_key, opened_at, updated_at,
                                     acknowledged_at, acknowledged_by, resolved_at, resolved_by, note)
                    SELECT id, patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
                           last_reading_id, last_measured_at, occurrences, condition_key, opened_at, updated_at,
                           acknowledged_at, acknowledged_by, resolved_at, resolved_by, note
                    FROM tasks;
                CREATE TABLE task_events_v5 (
                    id INTEGER PRIMARY KEY,
                    task_id INTEGER NOT NULL REFERENCES tasks(id),
                    at INTEGER NOT NULL,
                    event TEXT NOT NULL CHECK (event IN ('opened', 'updated', 'priority_raised', 'acknowledged', 'resolved',
                                                         'escalated', 'recovered', 'confirmation', 'data_stale')),
                    actor TEXT NOT NULL,
                    reading_id INTEGER REFERENCES readings(id),
                    detail TEXT
                );
                INSERT INTO "task_events_v5" SELECT id, task_id, at, event, actor, reading_id, detail FROM task_events;
                DROP TABLE task_events;
                DROP TABLE tasks;
                ALTER TABLE tasks_v5 RENAME TO tasks;
                ALTER TABLE task_events_v5 RENAME TO task_events;
                CREATE INDEX task_events_task ON task_events(task_id);
                -- At most one unresolved task per condition (F14), enforced by SQLite itself. A late-data
                -- review task is the condition (patient, 'late_data', 'high').
                CREATE UNIQUE INDEX tasks_one_unresolved_per_condition
                    ON tasks(patient_id, vital, direction) WHERE status <> 'resolved';
                CREATE UNIQUE INDEX tasks_once_per_timer_condition
                    ON tasks(patient_id, kind, condition_key) WHERE condition_key IS NOT NULL;
                CREATE INDEX tasks_queue ON tasks(status, priority, opened_at);
                CREATE INDEX tasks_escalation_due ON tasks(next_escalation_at) WHERE next_escalation_at IS NOT NULL;
                CREATE INDEX tasks_confirmation_pending ON tasks(patient_id, vital) WHERE confirmation = 'pending';
                CREATE INDEX tasks_condition_history ON tasks(patient_id, vital, direction, id);

                -- Whether each rule is active for a patient, so that a condition clears only on recovery
                -- (F13) and a restart or reload remembers what was raised (F15).
                CREATE TABLE alert_states (
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    rule TEXT NOT NULL,
                    active INTEGER NOT NULL CHECK (active IN (0, 1)),
                    level TEXT CHECK (level IN ('critical', 'warning')),
                    since INTEGER NOT NULL,
                    suppressed INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (patient_id, rule)
                ) WITHOUT ROWID;

                -- A clinician's change to a trend rule for one patient: another bound, or the rule off.
                CREATE TABLE patient_rule_overrides (
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    rule_id TEXT NOT NULL,
                    bound REAL,
                    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
                    set_by TEXT NOT NULL,
                    set_at INTEGER NOT NULL,
                    PRIMARY KEY (patient_id, rule_id),
                    CHECK (disabled = 1 OR bound IS NOT NULL)
                ) WITHOUT ROWID;

                -- Every task event, written by the same transaction that changed the task, waiting for
                -- delivery. Each channel keeps a cursor: the last event id it delivered.
                CREATE TABLE outbox (
                    id INTEGER PRIMARY KEY REFERENCES task_events(id),
                    task_id INTEGER NOT NULL REFERENCES tasks(id),
                    patient_id TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    body TEXT NOT NULL CHECK (json_valid(body))
                );
                CREATE TABLE delivery_cursors (
                    channel TEXT PRIMARY KEY,
                    last_event_id INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                CREATE TRIGGER task_events_to_outbox AFTER INSERT ON task_events
                BEGIN
                    INSERT INTO outbox(id, task_id, patient_id, created_at, body)
                    SELECT NEW.id, t.id, t.patient_id, NEW.at, json_object(
                        'event_id', 'task-event-' || NEW.id,
                        'event', NEW.event,
                        'at', strftime('%Y-%m-%dT%H:%M:%fZ', NEW.at / 1000.0, 'unixepoch'),
                        'actor', NEW.actor,
                        'detail', NEW.detail,
                        'task', json_object(
                            'id', t.id,
                            'patient_id', t.patient_id,
                            'kind', t.kind,
                            'condition', t.vital,
                            'direction', t.direction,
                            'priority', t.priority,
                            'fhir_priority', CASE t.priority WHEN 'critical' THEN 'stat' WHEN 'warning' THEN 'urgent'
                                                             ELSE 'routine' END,
                            'status', t.status,
                            'fhir_status', CASE t.status WHEN 'open' THEN 'requested' WHEN 'acknowledged' THEN 'accepted'
                                                         ELSE 'completed' END,
                            'reason', t.reason,
                            'occurrences', t.occurrences,
                            'escalation_level', t.escalation_level,
                            'confirmation', t.confirmation,
                            'data_stale', json(CASE t.data_stale WHEN 1 THEN 'true' ELSE 'false' END),
                            'opened_at', strftime('%Y-%m-%dT%H:%M:%fZ', t.opened_at / 1000.0, 'unixepoch'),
                            'acknowledged_by', t.acknowledged_by,
                            'resolved_by', t.resolved_by))
                    FROM tasks t WHERE t.id = NEW.task_id;
                END;
                """)
        }
        migrator.registerMigration("v6-formats") { db in
            // Device formats: what the device said about each reading, device status (telemetry is
            // never a reading), and device events (error codes and range markers are never values).
            // New columns and tables only.
            try db.execute(sql: """
                ALTER TABLE readings ADD COLUMN flags TEXT;
                ALTER TABLE readings ADD COLUMN time_source TEXT NOT NULL DEFAULT 'device'
                    CHECK (time_source IN ('device', 'device_local', 'vendor_estimate', 'received_at'));
                ALTER TABLE readings ADD COLUMN local_offset_minutes INTEGER
                    CHECK (local_offset_minutes IS NULL OR local_offset_minutes BETWEEN -1080 AND 1080);
                ALTER TABLE readings ADD COLUMN vendor_reading_id TEXT;
                ALTER TABLE readings ADD COLUMN format TEXT;
                CREATE TABLE device_status (
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    name TEXT NOT NULL CHECK (name IN ('battery_percent', 'battery_mv', 'signal_dbm', 'signal_bars',
                                                       'perfusion_index', 'external_power')),
                    value REAL NOT NULL,
                    observed_at INTEGER NOT NULL,
                    received_at INTEGER NOT NULL,
                    PRIMARY KEY (device_id, name)
                ) WITHOUT ROWID;
                CREATE TABLE device_events (
                    id INTEGER PRIMARY KEY,
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    kind TEXT NOT NULL CHECK (kind IN ('device_error', 'above_range', 'below_range')),
                    type TEXT,
                    code TEXT NOT NULL,
                    measured_at INTEGER,
                    received_at INTEGER NOT NULL
                );
                -- A redelivered message records its events once.
                CREATE UNIQUE INDEX device_events_once
                    ON device_events(device_id, kind, coalesce(type, ''), coalesce(measured_at, received_at));
                -- Flags sent apart from their readings (Tenovi irregular_heartbeat), as ObservationFlags bits.
                CREATE TABLE reading_markers (
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    measured_at INTEGER NOT NULL,
                    flags INTEGER NOT NULL,
                    PRIMARY KEY (device_id, measured_at)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("access log") { db in
            // Who read what (HIPAA 45 CFR 164.312(b)): FHIR reads and searches, token issues and
            // refusals, and the workspace's sign-ins and views. Ids and parameter names only, never values.
            try db.execute(sql: """
                CREATE TABLE access_log (
                    id INTEGER PRIMARY KEY,
                    at INTEGER NOT NULL /* epoch ms */,
                    actor TEXT NOT NULL /* user name, or "client:<client id>" */,
                    action TEXT NOT NULL /* e.g. "fhir.read", "fhir.search", "token.issued", "token.refused" */,
                    target_type TEXT NOT NULL,
                    target_id TEXT,
                    detail TEXT
                );
                CREATE INDEX access_log_at ON access_log(at);
                CREATE TRIGGER access_log_append_only_update BEFORE UPDATE ON access_log
                    BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;
                CREATE TRIGGER access_log_append_only_delete BEFORE DELETE ON access_log
                    BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;
                """)
        }
        migrator.registerMigration("fhir clients, tokens and push cursor") { db in
            // SMART Backend Services: registered clients with their JWK Set (inline or by URL) and
            // pre-authorised scopes; assertion ids seen, until they expire (replay refusal); bearer
            // tokens stored as SHA-256 hashes with expiry and scopes, so that several nodes can share
            // them. The FHIR push channel's cursor is a reading id, apart from the task-event cursors.
            try db.execute(sql: """
                CREATE TABLE smart_clients (
                    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 1 AND 128),
                    name TEXT NOT NULL CHECK (length(name) > 0),
                    jwks TEXT CHECK (jwks IS NULL OR json_valid(jwks)),
                    jwks_url TEXT,
                    scopes TEXT NOT NULL CHECK (length(scopes) > 0),
                    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
                    created_at INTEGER NOT NULL,
                    created_by TEXT NOT NULL,
                    CHECK ((jwks IS NULL) <> (jwks_url IS NULL))
                );
                CREATE TABLE smart_assertion_ids (
                    client_id TEXT NOT NULL REFERENCES smart_clients(id),
                    jti TEXT NOT NULL,
                    expires_at INTEGER NOT NULL,
                    PRIMARY KEY (client_id, jti)
                ) WITHOUT ROWID;
                CREATE INDEX smart_assertion_ids_expiry ON smart_assertion_ids(expires_at);
                CREATE TABLE access_tokens (
                    token_sha256 BLOB PRIMARY KEY NOT NULL CHECK (length(token_sha256) = 32),
                    client_id TEXT NOT NULL REFERENCES smart_clients(id),
                    scopes TEXT NOT NULL,
                    issued_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL CHECK (expires_at > issued_at)
                ) WITHOUT ROWID;
                CREATE INDEX access_tokens_expiry ON access_tokens(expires_at);
                CREATE TABLE reading_delivery_cursors (
                    channel TEXT PRIMARY KEY NOT NULL,
                    last_reading_id INTEGER NOT NULL,
                    updated_at INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("task notes") { db in
            // The notes of a task, oldest first: an append-only history (a second note never replaces the first).
            try db.execute(sql: """
                CREATE TABLE task_notes (
                    id INTEGER PRIMARY KEY,
                    task_id INTEGER NOT NULL REFERENCES tasks(id),
                    at INTEGER NOT NULL,
                    author TEXT NOT NULL CHECK (length(author) > 0),
                    text TEXT NOT NULL CHECK (length(text) > 0)
                );
                CREATE INDEX task_notes_task ON task_notes(task_id, id);
                CREATE TRIGGER task_notes_append_only_update BEFORE UPDATE ON task_notes
                    BEGIN SELECT RAISE(ABORT, 'task_notes is append-only'); END;
                CREATE TRIGGER task_notes_append_only_delete BEFORE DELETE ON task_notes
                    BEGIN SELECT RAISE(ABORT, 'task_notes is append-only'); END;
                """)
        }
        migrator.registerMigration("v7 users, sessions and caseloads") { db in
            // Workspace users and their server-side sessions; a care manager per patient (the caseload),
            // an owner, a version and a disposition per task; the patient's name, date of birth and
            // phone (PHI: shown in the workspace, never logged). New tables and columns only.
            try db.execute(sql: """
                CREATE TABLE users (
                    id INTEGER PRIMARY KEY,
                    username TEXT NOT NULL UNIQUE
                        CHECK (length(username) BETWEEN 1 AND 64 AND username NOT GLOB '*[^a-z0-9._@-]*'),
                    display_name TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
                    role TEXT NOT NULL CHECK (role IN ('care_manager', 'clinician', 'admin')),
                    password_hash TEXT NOT NULL CHECK (password_hash GLOB '$2[aby]$[0-9][0-9]$*'),
                    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
                    created_at INTEGER NOT NULL,
                    password_changed_at INTEGER NOT NULL
                );
                -- A signed-in browser. The cookie holds a random session id; only its SHA-256 is stored,
                -- so a copy of the database signs nobody in.
                CREATE TABLE web_sessions (
                    token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
                    user_id INTEGER NOT NULL REFERENCES users(id),
                    csrf_token TEXT NOT NULL CHECK (length(csrf_token) >= 32),
                    created_at INTEGER NOT NULL,
                    last_seen_at INTEGER NOT NULL,
                    expires_at INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX web_sessions_user ON web_sessions(user_id);
                -- Failed sign-ins since the last success, per user name typed (known or not), for lockout.
                CREATE TABLE sign_in_failures (
                    username TEXT PRIMARY KEY,
                    failures INTEGER NOT NULL CHECK (failures >= 1),
                    last_failure_at INTEGER NOT NULL,
                    locked_until INTEGER
                ) WITHOUT ROWID;

                ALTER TABLE patients ADD COLUMN name TEXT CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200);
                ALTER TABLE patients ADD COLUMN birth_date TEXT
                    CHECK (birth_date IS NULL OR birth_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]');
                ALTER TABLE patients ADD COLUMN phone TEXT CHECK (phone IS NULL OR length(phone) BETWEEN 1 AND 40);
                ALTER TABLE patients ADD COLUMN care_manager TEXT REFERENCES users(username);
                CREATE INDEX patients_care_manager ON patients(care_manager);

                ALTER TABLE tasks ADD COLUMN owner TEXT REFERENCES users(username);
                -- Changes whenever the owner or the status changes: claim and assign compare and set it.
                ALTER TABLE tasks ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE tasks ADD COLUMN disposition TEXT CHECK (disposition IS NULL OR disposition IN (
                    'contacted_patient', 'advised_emergency_care', 'notified_provider',
                    'medication_adjusted_by_provider', 'device_problem', 'not_actionable'));
                CREATE INDEX tasks_owner ON tasks(owner, status);

                -- A new task goes to the patient's care manager (unless disabled); without one it waits unassigned.
                CREATE TRIGGER tasks_owner_from_care_manager AFTER INSERT ON tasks
                    WHEN NEW.owner IS NULL AND (SELECT care_manager FROM patients WHERE id = NEW.patient_id) IS NOT NULL
                BEGIN
                    UPDATE tasks SET owner = (SELECT u.username FROM patients p JOIN users u ON u.username = p.care_manager
                                              WHERE p.id = NEW.patient_id AND u.disabled = 0)
                    WHERE id = NEW.id;
                END;
                CREATE TRIGGER tasks_version AFTER UPDATE OF owner, status ON tasks
                    WHEN (NEW.owner IS NOT OLD.owner OR NEW.status IS NOT OLD.status) AND NEW.version = OLD.version
                BEGIN
                    UPDATE tasks SET version = OLD.version + 1 WHERE id = NEW.id;
                END;
                """)
        }
        migrator.registerMigration("tasks: version, latest and worst readings, suppressed breaches, notes") { db in
            // One task writer (TaskWriter.swift) builds the outbox copy of each event: the trigger goes.
            // A version for optimistic updates; the latest and worst readings with their measurement
            // times; breaches suppressed after a resolve; notes as an append-only history.
            // New columns only; `note` moves to `task_notes` (migration "task notes") and its column is
            // dropped; `version` came with migration "v7 users, sessions and caseloads".
            try db.execute(sql: "DROP TRIGGER IF EXISTS task_events_to_outbox")
            let columns = Set(try db.columns(in: "tasks").map(\.name))
            try db.execute(sql: """
                ALTER TABLE tasks ADD COLUMN latest_summary TEXT;
                ALTER TABLE tasks ADD COLUMN worst_reading_id INTEGER REFERENCES readings(id);
                ALTER TABLE tasks ADD COLUMN worst_summary TEXT;
                ALTER TABLE tasks ADD COLUMN worst_measured_at INTEGER;
                ALTER TABLE tasks ADD COLUMN worst_severity REAL;
                ALTER TABLE tasks ADD COLUMN worst_level TEXT CHECK (worst_level IN ('critical', 'warning'));
                ALTER TABLE tasks ADD COLUMN suppressed_breaches INTEGER NOT NULL DEFAULT 0 CHECK (suppressed_breaches >= 0);
                ALTER TABLE tasks ADD COLUMN last_suppressed_at INTEGER;
                """)
            if columns.contains("note") {
                // Notes kept in the old column that are not in the history yet.
                try db.execute(sql: """
                    INSERT INTO task_notes(task_id, at, author, text)
                        SELECT id, updated_at, coalesce(resolved_by, acknowledged_by, 'unknown'), note FROM tasks t
                        WHERE note IS NOT NULL AND length(note) > 0
                          AND NOT EXISTS (SELECT 1 FROM task_notes n WHERE n.task_id = t.id AND n.text = t.note);
                    ALTER TABLE tasks DROP COLUMN note;
                    """)
            }
            // The latest and worst readings of existing reading tasks, from the readings they name.
            let rows = try Row.fetchAll(db, sql: """
                SELECT t.id, t.priority, l.type AS l_type, l.canonical_value AS l_value, f.type AS f_type,
                       f.canonical_value AS f_value, f.measured_at AS f_at
                FROM tasks t JOIN readings l ON l.id = t.last_reading_id JOIN readings f ON f.id = t.first_reading_id
                """)
            for row in rows {
                func summary(_ type: String?, _ value: Double) -> String? {
                    VitalType(rawValue: type ?? "").map { "\($0.displayName) \(Observation.format(value)) \($0.canonicalUnit.display)" }
                }
                let level = ThresholdLevel(rawValue: row["priority"])
                try db.execute(
                    sql: """
                        UPDATE tasks SET latest_summary = ?, worst_reading_id = first_reading_id, worst_summary = ?,
                            worst_measured_at = ?, worst_severity = 1, worst_level = ? WHERE id = ?
                        """,
                    arguments: [summary(row["l_type"], row["l_value"]), summary(row["f_type"], row["f_value"]), row["f_at"] as Int64,
                                level?.rawValue, row["id"] as Int64])
            }
        }
        migrator.registerMigration("device bindings") { db in
            // Which patient a device belonged to when: a reading belongs to the patient the device was
            // bound to at its measurement time. A binding without a start covers everything before its end.
            try db.execute(sql: """
                CREATE TABLE device_bindings (
                    id INTEGER PRIMARY KEY,
                    device_id TEXT NOT NULL REFERENCES devices(id),
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    bound_from INTEGER,
                    bound_to INTEGER,
                    created_at INTEGER NOT NULL,
                    created_by TEXT NOT NULL,
                    CHECK (bound_to IS NULL OR bound_from IS NULL OR bound_to > bound_from)
                );
                -- One current binding per device, and a binding only ever gets its end, once.
                CREATE UNIQUE INDEX device_bindings_one_current ON device_bindings(device_id) WHERE bound_to IS NULL;
                CREATE INDEX device_bindings_device ON device_bindings(device_id, bound_from);
                CREATE TRIGGER device_bindings_end_only BEFORE UPDATE ON device_bindings
                    WHEN OLD.bound_to IS NOT NULL OR NEW.device_id IS NOT OLD.device_id OR NEW.patient_id IS NOT OLD.patient_id
                      OR NEW.bound_from IS NOT OLD.bound_from OR NEW.created_at IS NOT OLD.created_at
                    BEGIN SELECT RAISE(ABORT, 'a device binding only gets its end, once'); END;
                CREATE TRIGGER device_bindings_no_delete BEFORE DELETE ON device_bindings
                    BEGIN SELECT RAISE(ABORT, 'device bindings are history; end a binding instead'); END;
                INSERT INTO device_bindings(device_id, patient_id, bound_from, bound_to, created_at, created_by)
                    SELECT id, patient_id, NULL, NULL, created_at, 'migration' FROM devices;
                """)
        }
        migrator.registerMigration("received payloads of messages timed on receipt") { db in
            // A message whose readings carry no time of their own is recognised by its payload when the
            // broker delivers it again as a retained message (on every subscribe).
            try db.execute(sql: """
                CREATE TABLE received_payloads (
                    topic TEXT NOT NULL,
                    sha256 BLOB NOT NULL,
                    received_at INTEGER NOT NULL,
                    PRIMARY KEY (topic, sha256)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("one task writer: owners, dispositions, assigned and reopened events") { db in
            // The task writer (TaskWriter.swift) now sets a new task's owner (the patient's care manager)
            // and every version: the triggers that did it go. Claims, assignments and reopenings become
            // task events, delivered like the others: task_events is rebuilt to widen its CHECK
            // (sqlite.org/lang_altertable.html), keeping every row and id.
            try db.execute(sql: """
                DROP TRIGGER IF EXISTS tasks_owner_from_care_manager;
                DROP TRIGGER IF EXISTS tasks_version;
                CREATE TABLE task_events_v8 (
                    id INTEGER PRIMARY KEY,
                    task_id INTEGER NOT NULL REFERENCES tasks(id),
                    at INTEGER NOT NULL,
                    event TEXT NOT NULL CHECK (event IN ('opened', 'updated', 'priority_raised', 'acknowledged', 'resolved',
                                                         'escalated', 'recovered', 'confirmation', 'data_stale',
                                                         'assigned', 'reopened')),
                    actor TEXT NOT NULL,
                    reading_id INTEGER REFERENCES readings(id),
                    detail TEXT
                );
                INSERT INTO "task_events_v8" SELECT id, task_id, at, event, actor, reading_id, detail FROM task_events;
                DROP TABLE task_events;
                ALTER TABLE task_events_v8 RENAME TO task_events;
                CREATE INDEX task_events_task ON task_events(task_id);
                """)
        }
        migrator.registerMigration("dead-letter replays") { db in
            // `vitalsd dead-letters replay`: when a dead letter's message was ingested again and no
            // longer failed for its reason, and what that replay did. New columns only.
            try db.execute(sql: """
                ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER;
                ALTER TABLE dead_letters ADD COLUMN replay_result TEXT;
                CREATE INDEX dead_letters_not_replayed ON dead_letters(reason, received_at) WHERE replayed_at IS NULL;
                """)
        }
        migrator.registerMigration("audit and access log by target") { db in
            // The patient chart's timeline reads a patient's threshold changes from the audit log, and
            // `audit list --access --patient` a patient's chart and task views from the access log.
            try db.execute(sql: """
                CREATE INDEX audit_log_target ON audit_log(target_type, target_id);
                CREATE INDEX access_log_target ON access_log(target_type, target_id);
                """)
        }
        migrator.registerMigration("time entries: seconds measured by the workspace timer") { db in
            // The workspace timer measures seconds; billing adds a month's seconds before it takes full
            // minutes. Entries typed in minutes keep seconds NULL. New column only (the table stays append-only).
            try db.execute(sql: """
                ALTER TABLE time_entries ADD COLUMN seconds INTEGER CHECK (seconds IS NULL OR seconds BETWEEN 1 AND 36000);
                """)
        }
        migrator.registerMigration("monitoring pauses") { db in
            // A patient's monitoring paused (hospital stay, travel) until the end of a local date, with
            // a reason: readings are stored and shown, no alert task is raised. History is kept: a pause
            // only ever gets its close (resumed early, or closed when its end passed), once; one open
            // pause per patient.
            try db.execute(sql: """
                CREATE TABLE monitoring_pauses (
                    id INTEGER PRIMARY KEY,
                    patient_id TEXT NOT NULL REFERENCES patients(id),
                    starts_at INTEGER NOT NULL,
                    end_date TEXT NOT NULL CHECK (end_date GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
                    -- The first instant after end_date in the patient's time zone.
                    ends_at INTEGER NOT NULL,
                    reason TEXT NOT NULL CHECK (length(trim(reason)) BETWEEN 1 AND 500),
                    created_by TEXT NOT NULL CHECK (length(created_by) > 0),
                    created_at INTEGER NOT NULL,
                    closed_at INTEGER,
                    closed_by TEXT,
                    CHECK (ends_at > starts_at),
                    CHECK ((closed_at IS NULL) = (closed_by IS NULL)),
                    CHECK (closed_at IS NULL OR closed_at >= starts_at)
                );
                CREATE UNIQUE INDEX monitoring_pauses_one_open ON monitoring_pauses(patient_id) WHERE closed_at IS NULL;
                CREATE TRIGGER monitoring_pauses_close_only BEFORE UPDATE ON monitoring_pauses
                    WHEN OLD.closed_at IS NOT NULL OR NEW.patient_id IS NOT OLD.patient_id OR NEW.starts_at IS NOT OLD.starts_at
                      OR NEW.end_date IS NOT OLD.end_date OR NEW.ends_at IS NOT OLD.ends_at OR NEW.reason IS NOT OLD.reason
                      OR NEW.created_by IS NOT OLD.created_by OR NEW.created_at IS NOT OLD.created_at
                    BEGIN SELECT RAISE(ABORT, 'a monitoring pause only gets its close, once'); END;
                CREATE TRIGGER monitoring_pauses_no_delete BEFORE DELETE ON monitoring_pauses
                    BEGIN SELECT RAISE(ABORT, 'monitoring pauses are history; resume instead'); END;
                """)
        }
        migrator.registerMigration("tasks: whom an escalation reached") { db in
            // An escalation reaches a person: the owner or care manager first, then the configured backup
            // user or `role:<role>`. New column only.
            try db.execute(sql: "ALTER TABLE tasks ADD COLUMN escalated_to TEXT CHECK (escalated_to IS NULL OR length(escalated_to) BETWEEN 1 AND 80)")
        }
        migrator.registerMigration("time entries: once per timer page") { db in
            // The workspace timer's page token (an HMAC of the page's serving time): one entry per page,
            // so a form sent again cannot log the same minutes twice. New column only.
            try db.execute(sql: """
                ALTER TABLE time_entries ADD COLUMN timer_page TEXT CHECK (timer_page IS NULL OR length(timer_page) BETWEEN 1 AND 64);
                CREATE UNIQUE INDEX time_entries_once_per_timer_page ON time_entries(timer_page) WHERE timer_page IS NOT NULL;
                """)
        }
        migrator.registerMigration("outbox: event ids unique across restores") { db in
            // The event's idempotency key as delivered (`task-event-<id>-<incarnation>`, TaskWriter),
            // kept beside the body so that the webhook's Idempotency-Key is the body's event_id. Events
            // written before keep the ids they were written with.
            try db.execute(sql: """
                ALTER TABLE outbox ADD COLUMN event_id TEXT NOT NULL DEFAULT '';
                UPDATE outbox SET event_id = json_extract(body, '$.event_id');
                CREATE UNIQUE INDEX outbox_event_id ON outbox(event_id);
                """)
        }
        migrator.registerMigration("tasks: the worst reading when acknowledged") { db in
            // A reading clearly worse than it puts an acknowledged task back to open (AlertEngine).
            // New column only; tasks acknowledged before compare with their worst reading.
            try db.execute(sql: "ALTER TABLE tasks ADD COLUMN acknowledged_worst TEXT CHECK (acknowledged_worst IS NULL OR json_valid(acknowledged_worst))")
        }
        return migrator
    }
}

extension AppDatabase {
    /// What a failed write means for an operator, from SQLite's result code: a full disk
    /// (`SQLITE_FULL`), a lock held by another connection (`SQLITE_BUSY`), a read-only file
    /// (`SQLITE_READONLY`), an I/O error (`SQLITE_IOERR`); otherwise the error itself.
    public static func describeWriteFailure(_ error: any Error) -> String {
        guard let e = error as? DatabaseError else { return "\(error)" }
        switch e.resultCode {
        case .SQLITE_FULL: return "the disk holding the database is full (SQLITE_FULL): free space on its file system"
        case .SQLITE_BUSY: return "another connection holds the database's write lock (SQLITE_BUSY)"
        case .SQLITE_READONLY:
            return "the database cannot be written (SQLITE_READONLY): check the owner and mode of the file, its -wal and -shm files and their directory"
        case .SQLITE_IOERR: return "the disk reported an I/O error (SQLITE_IOERR): \(e.message ?? "no detail")"
        default: return "\(error)"
        }
    }

    /// After the daemon's connections are closed: opens one connection, copies what is left of the
    /// WAL into the database file and closes it, so that SQLite removes the `-wal` and `-shm` files.
    /// The read-only connections of a pool cannot do that themselves when they close last; a WAL left
    /// behind would be replayed over a backup copied into the database's place.
    /// - Throws: GRDB errors (another process has the database open: the files then stay).
    public static func removeWAL(path: String) throws {
        let queue = try DatabaseQueue(path: path)
        _ = try queue.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        try queue.close()
    }

    /// Whether a write transaction can start on the database file within `timeout` seconds, for
    /// readiness checks: opens a separate short-lived connection and runs `BEGIN IMMEDIATE; ROLLBACK`.
    /// - Returns: nil when writable, otherwise the reason (locked, read-only, missing).
    public static func writeProbe(path: String, timeout: Double = 0.5) -> String? {
        var config = Configuration()
        config.busyMode = .timeout(timeout)
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                try db.execute(sql: "ROLLBACK")
            }
            try queue.close()
            return nil
        } catch {
            return "database not writable: \(error)"
        }
    }
}
