import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain

/// One row for the `readings` table: a reading already checked, converted and bound to its patient.
public struct StoredReading: Sendable, Hashable {
    /// The device's id.
    public var deviceID: String
    /// The patient the device was bound to at `measuredAt`.
    public var patientID: String
    /// The vital type's name (`glucose`).
    public var type: String
    /// Its LOINC code.
    public var loinc: String
    /// The value as received, in `unit`.
    public var value: Double
    /// The unit as received.
    public var unit: String
    /// The value in `canonicalUnit`.
    public var canonicalValue: Double
    /// The type's canonical UCUM unit.
    public var canonicalUnit: String
    /// When the device measured it, in milliseconds since 1970 UTC.
    public var measuredAt: Int64
    /// When vitalsd received it, in milliseconds since 1970 UTC.
    public var receivedAt: Int64
    /// `device` or `manual`.
    public var source: String
    /// The message's id, when the payload had one.
    public var messageID: String?
    /// The device's flags in their stored form (`irregular_heartbeat,from_device_memory`), nil for none.
    public var flags: String?
    /// Where `measuredAt` came from (`device`, `device_local`, `vendor_estimate`, `received_at`).
    public var timeSource: String
    /// The device's UTC offset at the measurement, minutes east of UTC (-1080…1080).
    public var localOffsetMinutes: Int?
    /// The vendor's id of the reading.
    public var vendorReadingID: String?
    /// The payload format it arrived in.
    public var format: String?
    /// The checked reading, for the clinical rules (``BatchAlerting``); nil for a row given by its
    /// column values, which the rules then do not see.
    public var observation: Observation?
    /// The index of its message in the batch: readings of one message measured at one instant make
    /// one occurrence for the rules (a cuff's systolic and diastolic). Nil: a message of its own.
    public var message: Int?

    /// A row from a checked observation, as the SQLite ingest stores it.
    /// - Parameters:
    ///   - observation: the checked reading.
    ///   - patientID: the patient its device was bound to at the measurement.
    ///   - receivedAt: when vitalsd received the message.
    ///   - messageID: the message's id, if any.
    ///   - format: the payload format's name, if known.
    ///   - message: the index of its message in the batch.
    public init(
        observation: Observation, patientID: String, receivedAt: Date, messageID: String? = nil, format: String? = nil,
        message: Int? = nil
    ) {
        self.init(
            deviceID: observation.deviceID, patientID: patientID, type: observation.type.rawValue,
            loinc: observation.type.loinc, value: observation.value, unit: observation.unit,
            canonicalValue: observation.canonicalValue, canonicalUnit: observation.type.canonicalUnit.rawValue,
            measuredAt: epochMilliseconds(observation.measuredAt), receivedAt: epochMilliseconds(receivedAt),
            source: observation.source.rawValue, messageID: messageID, flags: observation.flags.stored,
            timeSource: observation.timeSource.rawValue, localOffsetMinutes: observation.localOffsetMinutes,
            vendorReadingID: observation.vendorReadingID, format: format)
        self.observation = observation
        self.message = message
    }

    /// A row from its column values.
    public init(
        deviceID: String, patientID: String, type: String, loinc: String, value: Double, unit: String,
        canonicalValue: Double, canonicalUnit: String, measuredAt: Int64, receivedAt: Int64, source: String = "device",
        messageID: String? = nil, flags: String? = nil, timeSource: String = "device", localOffsetMinutes: Int? = nil,
        vendorReadingID: String? = nil, format: String? = nil
    ) {
        self.deviceID = deviceID
        self.patientID = patientID
        self.type = type
        self.loinc = loinc
        self.value = value
        self.unit = unit
        self.canonicalValue = canonicalValue
        self.canonicalUnit = canonicalUnit
        self.measuredAt = measuredAt
        self.receivedAt = receivedAt
        self.source = source
        self.messageID = messageID
        self.flags = flags
        self.timeSource = timeSource
        self.localOffsetMinutes = localOffsetMinutes
        self.vendorReadingID = vendorReadingID
        self.format = format
    }
}

/// One row for the `dead_letters` table: what could not be stored, with the payload unchanged.
public struct StoredDeadLetter: Sendable, Hashable {
    /// When vitalsd received the message, in milliseconds since 1970 UTC.
    public var receivedAt: Int64
    /// The topic it arrived on.
    public var topic: String
    /// The device, when known.
    public var deviceID: String?
    /// Why (a ``DeadLetterReason`` raw value).
    public var reason: String
    /// A sentence for the operator (no values).
    public var detail: String
    /// The index of the rejected reading inside the message; nil when the whole message was rejected.
    public var readingIndex: Int?
    /// The payload bytes as received (or their first bytes, for a payload over the size limit).
    public var payload: [UInt8]
    /// The size of the payload as received.
    public var payloadBytes: Int

    /// A dead letter from its parts.
    public init(receivedAt: Int64, topic: String, deviceID: String?, reason: String, detail: String, readingIndex: Int? = nil, payload: [UInt8]) {
        self.receivedAt = receivedAt
        self.topic = topic
        self.deviceID = deviceID
        self.reason = reason
        self.detail = detail
        self.readingIndex = readingIndex
        self.payload = payload
        self.payloadBytes = payload.count
    }

    /// A dead letter for a rejection.
    public init(receivedAt: Date, topic: String, deviceID: String?, rejection: Rejection, readingIndex: Int? = nil, payload: [UInt8]) {
        self.init(
            receivedAt: epochMilliseconds(receivedAt), topic: topic, deviceID: deviceID,
            reason: rejection.reason.rawValue, detail: rejection.detail, readingIndex: readingIndex, payload: payload)
    }
}

/// What one session delivered between two acknowledgements: stored together or not at all.
public struct IngestBatch: Sendable, Hashable {
    /// The readings to store.
    public var readings: [StoredReading]
    /// The dead letters to record.
    public var deadLetters: [StoredDeadLetter]

    /// - Parameters:
    ///   - readings: the readings to store.
    ///   - deadLetters: the dead letters to record.
    public init(readings: [StoredReading] = [], deadLetters: [StoredDeadLetter] = []) {
        self.readings = readings
        self.deadLetters = deadLetters
    }
}

/// How much of a batch was new.
public struct IngestOutcome: Sendable, Hashable {
    /// Readings inserted; the others were already stored (a redelivery).
    public var newReadings: Int
    /// Dead letters inserted; the others were already recorded.
    public var newDeadLetters: Int
    /// What the clinical rules did with the new readings (nothing without ``BatchAlerting``).
    public var alerting = AlertingOutcome()

    /// An outcome from its counts.
    public init(newReadings: Int, newDeadLetters: Int) {
        self.newReadings = newReadings
        self.newDeadLetters = newDeadLetters
    }
}

/// A batch refused because its lease no longer holds: another node took the session (a later
/// epoch) or the lease was released. Nothing of the batch was written; the node must not
/// acknowledge it and must stop ingesting the session.
public struct LeaseLost: Error, Sendable, Hashable, CustomStringConvertible {
    /// The lease the batch was stored under.
    public var lease: Lease
    /// The session's owner now (nil when released or when the session has no row).
    public var currentOwner: String?
    /// The session's epoch now (nil when the session has no row).
    public var currentEpoch: Int64?

    /// A refusal from its parts.
    public init(lease: Lease, currentOwner: String?, currentEpoch: Int64?) {
        self.lease = lease
        self.currentOwner = currentOwner
        self.currentEpoch = currentEpoch
    }

    public var description: String {
        "lease of session \(lease.session) at epoch \(lease.epoch) lost to "
            + "\(currentOwner ?? "nobody") at epoch \(currentEpoch.map(String.init) ?? "none")"
    }
}

/// Stores ingest batches in PostgreSQL, each fenced by the session lease it was received under.
public struct PostgresIngest: Sendable {
    let client: PostgresClient
    let logger: Logger

    /// - Parameters:
    ///   - client: a running client on a migrated database.
    ///   - logger: for postgres-nio's query logging; this type logs nothing itself.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Stores `batch` in one transaction, if `lease` still holds.
    ///
    /// The transaction first locks the lease row `FOR SHARE` where owner and epoch are still the
    /// lease's: a takeover (an UPDATE of that row) then waits until this batch commits, and a batch
    /// after a takeover finds no row and writes nothing. Readings go in with one statement; a reading
    /// already stored (same device, LOINC code and measured_at) is skipped, so a redelivery is
    /// absorbed. Dead letters likewise, once per (topic, reason, payload, reading index).
    /// With `alerting`, the clinical rules run on the new readings in the same transaction (a
    /// redelivered reading is not new, so it raises nothing twice): the tasks, their events and the
    /// outbox commit with the readings or not at all.
    /// - Parameters:
    ///   - batch: the readings and dead letters.
    ///   - lease: the lease of the session the batch arrived on.
    ///   - alerting: the rules' policy, clock and the event ids' incarnation; nil stores without evaluating.
    /// - Returns: how many readings and dead letters were new, and what the rules did.
    /// - Throws: ``LeaseLost`` (nothing written) when the session's owner or epoch changed; the
    ///   server's or connection's error otherwise (nothing written either, unless the COMMIT's answer
    ///   was lost: a retry is then absorbed by the unique keys).
    public func store(batch: IngestBatch, lease: Lease, alerting: BatchAlerting? = nil) async throws -> IngestOutcome {
        try await withFencedTransaction(lease: lease) { connection, logger in
            var outcome = IngestOutcome(newReadings: 0, newDeadLetters: 0)
            if !batch.readings.isEmpty {
                let ids = try await Self.insert(batch.readings, connection, logger)
                outcome.newReadings = ids.count
                if let alerting {
                    outcome.alerting = try await PostgresAlerting.evaluate(
                        Self.newReadings(batch.readings, ids: ids), alerting: alerting, connection: connection, logger: logger)
                }
            }
            if !batch.deadLetters.isEmpty {
                outcome.newDeadLetters = try await Self.insertCounted(batch.deadLetters, connection, logger).counts.values.reduce(0, +)
            }
            return outcome
        }
    }

    /// Runs `body` in one transaction that first locks the lease row `FOR SHARE` where owner and
    /// epoch are still `lease`'s: a takeover waits for this transaction, and after a takeover the
    /// body does not run.
    /// - Throws: ``LeaseLost`` (nothing written), or what `body` or the server throws (rolled back).
    func withFencedTransaction<T: Sendable>(
        lease: Lease, _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let logger = logger
        return try await unwrappingTransactionError {
            try await client.withTransaction(logger: logger) { connection -> T in
                let held = try await connection.query("""
                    SELECT epoch FROM mqtt_session_leases
                    WHERE session_id = \(lease.session) AND owner = \(lease.node) AND epoch = \(lease.epoch)
                    FOR SHARE
                    """, logger: logger).collect()
                guard !held.isEmpty else {
                    let now = try await connection.query(
                        "SELECT owner, epoch FROM mqtt_session_leases WHERE session_id = \(lease.session)", logger: logger
                    ).decode((String?, Int64).self).collected()
                    throw LeaseLost(lease: lease, currentOwner: now.first?.0, currentEpoch: now.first?.1)
                }
                return try await body(connection, logger)
            }
        }
    }

    /// The key of a reading: (device, LOINC code, measured_at), the unique key of `readings`.
    struct ReadingKey: Hashable {
        var deviceID: String
        var loinc: String
        var measuredAt: Int64
    }

    /// The batch's readings that were new, for the rules, by patient, in batch order.
    static func newReadings(_ readings: [StoredReading], ids: [ReadingKey: Int64]) -> [String: [NewReading]] {
        var result: [String: [NewReading]] = [:]
        var claimed = Set<ReadingKey>()
        for (order, r) in readings.enumerated() {
            let key = ReadingKey(deviceID: r.deviceID, loinc: r.loinc, measuredAt: r.measuredAt)
            // A key twice in one batch was inserted once: the first copy is the new reading.
            guard let observation = r.observation, let id = ids[key], claimed.insert(key).inserted else { continue }
            result[r.patientID, default: []].append(NewReading(
                readingID: id, observation: observation, receivedAt: dateFromEpochMilliseconds(r.receivedAt),
                message: r.message ?? (readings.count + order), order: order))
        }
        return result
    }

    /// Inserts `readings` with one statement; returns the id of each new one by its key.
    static func insert(
        _ readings: [StoredReading], _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> [ReadingKey: Int64] {
        let r = readings
        let rows = try await connection.query("""
            INSERT INTO readings (device_id, patient_id, type, loinc, value, unit, canonical_value, canonical_unit,
                                  measured_at, received_at, source, message_id, flags, time_source,
                                  local_offset_minutes, vendor_reading_id, format)
            SELECT * FROM unnest(
                \(r.map(\.deviceID))::text[], \(r.map(\.patientID))::text[], \(r.map(\.type))::text[],
                \(r.map(\.loinc))::text[], \(r.map(\.value))::float8[], \(r.map(\.unit))::text[],
                \(r.map(\.canonicalValue))::float8[], \(r.map(\.canonicalUnit))::text[],
                \(r.map(\.measuredAt))::int8[], \(r.map(\.receivedAt))::int8[], \(r.map(\.source))::text[],
                \(NullableArray(r.map(\.messageID)))::text[], \(NullableArray(r.map(\.flags)))::text[],
                \(r.map(\.timeSource))::text[], \(NullableArray(r.map(\.localOffsetMinutes)))::int8[],
                \(NullableArray(r.map(\.vendorReadingID)))::text[], \(NullableArray(r.map(\.format)))::text[])
            ON CONFLICT (device_id, loinc, measured_at) DO NOTHING
            RETURNING id, device_id, loinc, measured_at
            """, logger: logger).decode((Int64, String, String, Int64).self).collected()
        var ids: [ReadingKey: Int64] = [:]
        for (id, device, loinc, measuredAt) in rows { ids[ReadingKey(deviceID: device, loinc: loinc, measuredAt: measuredAt)] = id }
        return ids
    }

    /// Inserts `deadLetters` with one statement.
    /// - Returns: how many were new, by reason, and the indexes in `deadLetters` of the new ones (of
    ///   two with the same key in one batch, the first).
    static func insertCounted(
        _ deadLetters: [StoredDeadLetter], _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> (counts: [String: Int], inserted: [Int]) {
        let d = deadLetters
        let payloads = d.map { ByteBuffer(bytes: $0.payload) }
        let rows = try await connection.query("""
            WITH input AS (
                SELECT u.*, sha256(u.payload) AS digest FROM unnest(
                    \(d.map(\.receivedAt))::int8[], \(d.map(\.topic))::text[], \(NullableArray(d.map(\.deviceID)))::text[],
                    \(d.map(\.reason))::text[], \(d.map(\.detail))::text[], \(NullableArray(d.map(\.readingIndex)))::int8[],
                    \(payloads)::bytea[], \(d.map(\.payloadBytes))::int8[]
                ) WITH ORDINALITY AS u(received_at, topic, device_id, reason, detail, reading_index, payload, payload_bytes, i)
            ),
            inserted AS (
                INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, reading_index, payload, payload_bytes)
                SELECT received_at, topic, device_id, reason, detail, reading_index, payload, payload_bytes FROM input ORDER BY i
                ON CONFLICT DO NOTHING
                RETURNING topic, reason, payload_sha256, coalesce(reading_index, -1) AS reading_index
            )
            SELECT min(input.i) - 1, inserted.reason FROM inserted JOIN input
                ON input.topic = inserted.topic AND input.reason = inserted.reason AND input.digest = inserted.payload_sha256
               AND coalesce(input.reading_index, -1) = inserted.reading_index
            GROUP BY inserted.topic, inserted.reason, inserted.payload_sha256, inserted.reading_index
            """, logger: logger).decode((Int64, String).self).collected()
        var counts: [String: Int] = [:]
        for (_, reason) in rows { counts[reason, default: 0] += 1 }
        return (counts, rows.map { Int($0.0) }.sorted())
    }
}
