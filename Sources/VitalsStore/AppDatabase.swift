import Foundation
import GRDB

/// The vitalsd database: readings, dead letters, enrollment, thresholds, tasks and the audit trail.
///
/// One `AppDatabase` wraps one `DatabaseWriter`. Production and the admin commands open a
/// `DatabasePool` on the same file (WAL mode), so a command can run while the daemon runs.
/// Every write runs in a `BEGIN IMMEDIATE` transaction (GRDB's default for pool writes), which
/// waits for the write lock up to the busy timeout instead of failing at once (failure-modes F17).
public struct AppDatabase: Sendable {
    /// The underlying GRDB writer.
    public let writer: any DatabaseWriter

    /// Wraps a writer and brings its schema up to date.
    /// - Throws: a GRDB `DatabaseError` if a migration fails.
    public init(_ writer: any DatabaseWriter) throws {
        self.writer = writer
        try Self.migrator.migrate(writer)
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
                INSERT INTO tasks_v3(id, patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
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
                INSERT INTO tasks_v5(id, patient_id, kind, vital, direction, priority, status, reason, first_reading_id,
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
                INSERT INTO task_events_v5 SELECT id, task_id, at, event, actor, reading_id, detail FROM task_events;
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
        migrator.registerMigration("v7 dead-letter replays") { db in
            // `vitalsd dead-letters replay`: when a dead letter's message was ingested again and no
            // longer failed for its reason, and what that replay did. New columns only.
            try db.execute(sql: """
                ALTER TABLE dead_letters ADD COLUMN replayed_at INTEGER;
                ALTER TABLE dead_letters ADD COLUMN replay_result TEXT;
                CREATE INDEX dead_letters_not_replayed ON dead_letters(reason, received_at) WHERE replayed_at IS NULL;
                """)
        }
        return migrator
    }
}

/// Milliseconds since 1970-01-01T00:00:00Z, the form in which vitalsd stores instants.
public func epochMilliseconds(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSince1970 * 1000).rounded())
}

/// The instant for stored epoch milliseconds.
public func dateFromEpochMilliseconds(_ ms: Int64) -> Date {
    Date(timeIntervalSince1970: Double(ms) / 1000)
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
