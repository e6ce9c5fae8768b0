import Foundation
import GRDB
import VitalsDomain

/// Counts for `vitalsd stats`.
public struct Statistics: Sendable, Hashable, Codable {
    /// Stored reading rows.
    public var readings: Int
    /// Readings received again and absorbed (same device, LOINC code, measured_at and value).
    public var duplicates: Int
    /// Dead-letter rows.
    public var deadLetters: Int
    /// Dead letters by reason.
    public var deadLettersByReason: [String: Int]
    /// Tasks not yet acknowledged.
    public var tasksOpen: Int
    /// Tasks acknowledged but not resolved.
    public var tasksAcknowledged: Int
    /// Resolved tasks.
    public var tasksResolved: Int
    public var patients: Int
    public var devices: Int

    enum CodingKeys: String, CodingKey {
        case readings, duplicates, patients, devices
        case deadLetters = "dead_letters"
        case deadLettersByReason = "dead_letters_by_reason"
        case tasksOpen = "tasks_open"
        case tasksAcknowledged = "tasks_acknowledged"
        case tasksResolved = "tasks_resolved"
    }
}

/// A dead letter, without its payload bytes.
public struct DeadLetter: Sendable, Hashable, Codable {
    public var id: Int64
    public var receivedAt: Date
    public var topic: String
    public var deviceID: String?
    public var reason: String
    public var detail: String
    public var readingIndex: Int?
    public var payloadBytes: Int
    /// When `dead-letters replay` ingested its message again and its reason did not come back.
    public var replayedAt: Date?
    /// What that replay did, e.g. "stored 1, duplicates 0".
    public var replayResult: String?
}

extension AppDatabase {
    /// Current counts.
    public func statistics() throws -> Statistics {
        try writer.read { db in
            func count(_ sql: String) throws -> Int { try Int.fetchOne(db, sql: sql) ?? 0 }
            var byReason: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason") {
                byReason[row["reason"]] = row["n"]
            }
            return Statistics(
                readings: try count("SELECT count(*) FROM readings"),
                duplicates: try count("SELECT value FROM counters WHERE name = 'duplicates'"),
                deadLetters: byReason.values.reduce(0, +),
                deadLettersByReason: byReason,
                tasksOpen: try count("SELECT count(*) FROM tasks WHERE status = 'open'"),
                tasksAcknowledged: try count("SELECT count(*) FROM tasks WHERE status = 'acknowledged'"),
                tasksResolved: try count("SELECT count(*) FROM tasks WHERE status = 'resolved'"),
                patients: try count("SELECT count(*) FROM patients"),
                devices: try count("SELECT count(*) FROM devices"))
        }
    }

    /// The most recent dead letters, newest first.
    public func deadLetters(reason: String? = nil, limit: Int = 100) throws -> [DeadLetter] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, received_at, topic, device_id, reason, detail, reading_index, payload_bytes, replayed_at, replay_result
                    FROM dead_letters WHERE ?1 IS NULL OR reason = ?1 ORDER BY id DESC LIMIT ?2
                    """,
                arguments: [reason, limit]
            ).map { r in
                DeadLetter(id: r["id"], receivedAt: dateFromEpochMilliseconds(r["received_at"]), topic: r["topic"],
                           deviceID: r["device_id"], reason: r["reason"], detail: r["detail"],
                           readingIndex: r["reading_index"], payloadBytes: r["payload_bytes"],
                           replayedAt: (r["replayed_at"] as Int64?).map(dateFromEpochMilliseconds), replayResult: r["replay_result"])
            }
        }
    }

    /// The raw payload of a dead letter, for inspection or repair.
    public func deadLetterPayload(id: Int64) throws -> Data? {
        try writer.read { db in
            try Data.fetchOne(
                db,
                sql: """
                    SELECT coalesce(p.payload, d.payload) FROM dead_letters d
                    LEFT JOIN dead_letter_payloads p ON p.id = d.payload_id WHERE d.id = ?
                    """,
                arguments: [id])
        }
    }

    /// A dead letter's stored payload with the size and SHA-256 of the message as received: for a
    /// payload over `ingest.max_payload_bytes` only the first 4,096 bytes are stored
    /// (``bytes`` is then shorter than ``size``).
    public struct StoredPayload: Sendable, Hashable {
        /// The bytes kept.
        public var bytes: Data
        /// The size of the payload as received, in bytes.
        public var size: Int
        /// SHA-256 of the payload as received; nil for rows older than payload deduplication.
        public var sha256: Data?
        /// True when only a prefix was kept.
        public var isTruncated: Bool { bytes.count < size }
    }

    /// The stored payload of a dead letter, or nil when there is no such dead letter.
    public func storedDeadLetterPayload(id: Int64) throws -> StoredPayload? {
        try writer.read { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT coalesce(p.payload, d.payload) AS bytes, d.payload_bytes AS size, p.sha256 AS sha256
                    FROM dead_letters d LEFT JOIN dead_letter_payloads p ON p.id = d.payload_id WHERE d.id = ?
                    """,
                arguments: [id]
            ).map { StoredPayload(bytes: $0["bytes"] ?? Data(), size: $0["size"], sha256: $0["sha256"]) }
        }
    }

    /// A patient's readings, oldest first (measurement time).
    public func readings(patientID: String, limit: Int = 1000) throws -> [(type: String, canonicalValue: Double, unit: String, measuredAt: Date)] {
        try writer.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT type, canonical_value, canonical_unit, measured_at FROM readings WHERE patient_id = ? ORDER BY measured_at LIMIT ?",
                arguments: [patientID, limit]
            ).map { r in (r["type"], r["canonical_value"], r["canonical_unit"], dateFromEpochMilliseconds(r["measured_at"])) }
        }
    }
}
