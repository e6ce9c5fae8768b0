import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain

/// A message as received from one MQTT session, with what decoding made of it.
public struct ReceivedMessage: Sendable {
    /// The topic it arrived on.
    public var topic: String
    /// The device id the topic named, if any (kept in a dead letter of the whole message).
    public var deviceID: String?
    /// The payload bytes as received, kept in dead letters.
    public var payload: [UInt8]
    /// When vitalsd received it.
    public var receivedAt: Date
    /// The decoded message, or why the whole message was rejected.
    public var decoded: Result<DecodedMessage, Rejection>
    /// The broker sent it as a retained message, on a new subscription (MQTT 3.1.1 §3.3.1.3):
    /// possibly a copy of one received before.
    public var retained: Bool

    /// A message from its parts.
    public init(
        topic: String, deviceID: String?, payload: [UInt8], receivedAt: Date, decoded: Result<DecodedMessage, Rejection>,
        retained: Bool = false
    ) {
        self.retained = retained
        self.topic = topic
        self.deviceID = deviceID
        self.payload = payload
        self.receivedAt = receivedAt
        self.decoded = decoded
    }
}

/// What one stored batch of messages did.
public struct MessageIngestOutcome: Sendable, Hashable {
    /// Messages in the batch.
    public var messages = 0
    /// New reading rows.
    public var readingsStored = 0
    /// Readings already stored with the same value (a redelivery, a re-upload).
    public var duplicates = 0
    /// New dead-letter rows, by reason (``DeadLetterReason`` raw values).
    public var deadLetters: [String: Int] = [:]
    /// Gateway heartbeats acknowledged without a row.
    public var heartbeats = 0
    /// Retained copies of messages already received (recognised by topic and payload) that added nothing.
    public var retainedRepeats = 0
    /// Device status values written (the latest per device and name; an older one never replaces a newer).
    public var deviceStatusUpdated = 0
    /// Device events written (error codes, HI/LO markers), once per device, kind, vital and time.
    public var deviceEvents = 0
    /// Reading markers stored (a cuff's irregular-heartbeat mark sent apart from its reading).
    public var readingMarkers = 0
    /// What the clinical rules did with the new readings.
    public var alerting = AlertingOutcome()

    public init() {}

    /// Total new dead letters.
    public var deadLetterCount: Int { deadLetters.values.reduce(0, +) }
}

/// A device's binding to a patient over a span of measurement times (epoch ms; nil: open).
struct DeviceBinding: Sendable, Hashable {
    var patientID: String
    var from: Int64?
    var to: Int64?

    func covers(_ ms: Int64) -> Bool { (from.map { ms >= $0 } ?? true) && (to.map { ms < $0 } ?? true) }
}

/// A batch of messages sorted into rows: the readings to insert, with where each came from, and the
/// dead letters known before inserting.
struct ClassifiedBatch {
    /// Where a reading came from: its message and its index in that message.
    struct Origin {
        var message: Int
        var readingIndex: Int
    }

    var readings: [StoredReading] = []
    var origins: [Origin] = []
    var deadLetters: [StoredDeadLetter] = []
    var heartbeats = 0
    /// Reading markers of the batch, in order.
    var markers: [ReadingMarker] = []
    /// Device status values of the batch, the latest per device and name (the last in batch order
    /// among equal times): one upsert statement cannot touch a row twice.
    var status: [String: DeviceStatusValue] = [:]
    /// Device events of the batch, with their receive time.
    var events: [(event: DeviceEvent, receivedAt: Date)] = []
    /// Rejected readings per message so far (the cap of ``PostgresIngest/maxDeadLettersPerMessage``).
    var rejectedReadings: [Int: Int] = [:]
    /// Rejections over the cap, per message and reason: one more row per message counts them.
    var overflow: [Int: [DeadLetterReason: Int]] = [:]
    /// The rejected readings a person is to review when their dead letter is new (a reading with a
    /// wrong device time, an implausible value), by their index in ``deadLetters``.
    var reviews: [Int: (message: Int, deviceID: String, rejection: Rejection)] = [:]
}

extension PostgresIngest {
    /// Rejected readings of one message kept as rows of their own; the rest are counted in one more
    /// row (as in SQLite), so that one message cannot write thousands of rows.
    public static let maxDeadLettersPerMessage = 100

    /// Bytes kept of a payload over the size limit (a `too_large` dead letter), as in SQLite.
    public static let oversizedPayloadPrefixBytes = 4096

    /// Stores a session's batch of decoded messages in one transaction, if `lease` still holds: the
    /// daemon's ingest on PostgreSQL, with the SQLite ingest's rules for what becomes a reading and
    /// what a dead letter.
    ///
    /// - A message rejected as a whole is one dead letter; so is one from a device that is not enrolled.
    /// - A reading goes to the patient its device was bound to at its measurement time; one measured
    ///   before the device's first binding is a `before_binding` dead letter.
    /// - A reading already stored with the same value (same device, LOINC code and measured_at) is a
    ///   duplicate and adds nothing; one stored with another value is a `conflicting_duplicate` dead letter.
    /// - Rejected readings of one message: up to ``maxDeadLettersPerMessage`` rows, then one row that
    ///   counts the rest.
    /// - The clinical rules run on the new readings in the same transaction (``store(batch:lease:alerting:)``).
    ///
    /// - Device status (latest per device and name) and device events (once each) are stored as on SQLite.
    ///
    /// - The device-problem, device-clock and implausible-value review tasks are raised as on SQLite,
    ///   each from a device event or a rejected reading recorded for the first time.
    ///
    /// - Reading markers are kept for readings still to come, and applied to those already stored.
    /// - Parameters:
    ///   - messages: the batch, decoded, in the order received.
    ///   - lease: the lease of the session it arrived on.
    ///   - alerting: the rules' policy, clock and incarnation; nil stores without evaluating.
    ///   - maxPayloadBytes: payloads over it keep only their first ``oversizedPayloadPrefixBytes`` in a dead letter.
    /// - Throws: ``LeaseLost`` (nothing written) when the session changed owner or epoch; the
    ///   server's or connection's error otherwise (nothing written).
    public func store(
        messages: [ReceivedMessage], lease: Lease, alerting: BatchAlerting?, maxPayloadBytes: Int
    ) async throws -> MessageIngestOutcome {
        var deviceIDs = Set<String>()
        for m in messages { if case .success(let d) = m.decoded, !d.isHeartbeat { deviceIDs.insert(d.deviceID) } }
        let ids = Array(deviceIDs)
        return try await withFencedTransaction(lease: lease) { connection, logger in
            var outcome = MessageIngestOutcome()
            var bindings: [String: [DeviceBinding]] = [:]
            if !ids.isEmpty {
                let rows = try await connection.query("""
                    SELECT device_id, patient_id, bound_from, bound_to FROM device_bindings
                    WHERE device_id = ANY(\(ids)::text[])
                    ORDER BY device_id, bound_from IS NOT NULL, bound_from
                    """, logger: logger).decode((String, String, Int64?, Int64?).self).collected()
                for (device, patient, from, to) in rows {
                    bindings[device, default: []].append(DeviceBinding(patientID: patient, from: from, to: to))
                }
            }
            let repeats = try await Self.retainedRepeats(messages, connection, logger)
            var batch = Self.classify(messages, bindings: bindings, maxPayloadBytes: maxPayloadBytes, skipping: repeats)
            outcome.retainedRepeats = repeats.count
            outcome.messages = messages.count
            outcome.heartbeats = batch.heartbeats
            var newReadings: [String: [NewReading]] = [:]
            var newIDs: [ReadingKey: Int64] = [:]
            if !batch.readings.isEmpty {
                try await Self.applyStoredMarkers(&batch.readings, connection, logger)
                newIDs = try await Self.insert(batch.readings, connection, logger)
                outcome.readingsStored = newIDs.count
                try await Self.sortRepeats(&batch, newIDs: newIDs, messages: messages, maxPayloadBytes: maxPayloadBytes,
                                           duplicates: &outcome.duplicates, connection, logger)
                newReadings = Self.newReadings(batch.readings, ids: newIDs)
            }
            outcome.readingMarkers = try await Self.storeMarkers(batch.markers, connection, logger)
            outcome.deviceStatusUpdated = try await Self.storeStatus(Array(batch.status.values), messages.first?.receivedAt, connection, logger)
            let newEvents = try await Self.storeEvents(batch.events, connection, logger)
            outcome.deviceEvents = newEvents.count
            Self.addOverflowRows(&batch, messages: messages, maxPayloadBytes: maxPayloadBytes)
            var newLetters: [Int] = []
            if !batch.deadLetters.isEmpty {
                (outcome.deadLetters, newLetters) = try await Self.insertCounted(batch.deadLetters, connection, logger)
            }
            if let alerting {
                // What a person is to review besides the readings, each raised once: device events and
                // rejected readings recorded for the first time, for the patient who has the device.
                var problems = ReviewProblems()
                for (id, index) in newEvents {
                    let (event, receivedAt) = batch.events[index]
                    guard let patientID = Self.patient(of: event.deviceID, at: event.measuredAt, bindings) else { continue }
                    problems.device[patientID, default: []].append(DeviceProblem(eventID: id, event: event, receivedAt: receivedAt))
                }
                problems.add(newLetters.compactMap { batch.reviews[$0] }, messages: messages) { Self.patient(of: $0, at: nil, bindings) }
                if !newReadings.isEmpty || !problems.isEmpty {
                    outcome.alerting = try await PostgresAlerting.evaluate(
                        newReadings, problems: problems, alerting: alerting, connection: connection, logger: logger)
                }
            }
            if !newIDs.isEmpty { try await Self.rememberPayloads(batch, newIDs: newIDs, messages: messages, connection, logger) }
            return outcome
        }
    }

    /// The patient a device was bound to at `measuredAt`; at nil, the patient who has it now.
    static func patient(of deviceID: String, at measuredAt: Date?, _ bindings: [String: [DeviceBinding]]) -> String? {
        guard let spans = bindings[deviceID] else { return nil }
        guard let at = measuredAt else { return spans.first { $0.to == nil }?.patientID ?? spans.last?.patientID }
        let ms = epochMilliseconds(at)
        return spans.first { $0.covers(ms) }?.patientID
    }

    /// The time zone of the patient each device is enrolled to, for reading naive local times;
    /// nil for a device not enrolled (or a zone this system does not know).
    /// - Throws: the server's or connection's error.
    public func patientTimeZones(deviceIDs: Set<String>) async throws -> [String: TimeZone?] {
        let ids = Array(deviceIDs)
        guard !ids.isEmpty else { return [:] }
        let rows = try await client.query("""
            SELECT d.id, p.timezone FROM devices d JOIN patients p ON p.id = d.patient_id WHERE d.id = ANY(\(ids)::text[])
            """, logger: logger).decode((String, String).self).collected()
        var zones = Dictionary(uniqueKeysWithValues: ids.map { ($0, TimeZone?.none) })
        for (id, zone) in rows { zones[id] = .some(TimeZone(identifier: zone)) }
        return zones
    }

    /// Sorts a batch into readings and the dead letters known before inserting: pure, on values.
    /// - Parameter skipping: indexes of retained copies already received, which add nothing.
    static func classify(
        _ messages: [ReceivedMessage], bindings: [String: [DeviceBinding]], maxPayloadBytes: Int, skipping: Set<Int> = []
    ) -> ClassifiedBatch {
        var batch = ClassifiedBatch()
        for (index, message) in messages.enumerated() where !skipping.contains(index) {
            let decoded: DecodedMessage
            switch message.decoded {
            case .failure(let rejection):
                batch.deadLetters.append(deadLetter(message, rejection, deviceID: message.deviceID, maxPayloadBytes: maxPayloadBytes))
                continue
            case .success(let d):
                decoded = d
            }
            if decoded.isHeartbeat {
                batch.heartbeats += 1
                continue
            }
            guard let deviceBindings = bindings[decoded.deviceID] else {
                batch.deadLetters.append(deadLetter(
                    message, Rejection(.unknownDevice, "device is not enrolled"), deviceID: decoded.deviceID,
                    maxPayloadBytes: maxPayloadBytes))
                continue
            }
            batch.markers += decoded.markers.filter { $0.deviceID == decoded.deviceID }
            for value in decoded.status where value.deviceID == decoded.deviceID {
                let key = "\(value.deviceID)\u{0}\(value.name.rawValue)"
                if let kept = batch.status[key], kept.observedAt > value.observedAt { continue }
                batch.status[key] = value
            }
            for event in decoded.events where event.deviceID == decoded.deviceID {
                batch.events.append((event, message.receivedAt))
            }
            for (readingIndex, reading) in decoded.readings.enumerated() {
                switch reading {
                case .failure(let rejection):
                    reject(&batch, index, message, rejection, deviceID: decoded.deviceID, readingIndex: readingIndex,
                           maxPayloadBytes: maxPayloadBytes)
                case .success(let observation):
                    let measuredAt = epochMilliseconds(observation.measuredAt)
                    guard let patientID = deviceBindings.first(where: { $0.covers(measuredAt) })?.patientID else {
                        // Before the device was handed to anyone: an old reading from its memory, or a
                        // clock reset to a plausible past date (F22), when the value is current. Its
                        // value goes to the device's clock task for the patient who has it now.
                        var received = observation
                        received.measuredAt = message.receivedAt
                        received.timeSource = .receivedAt
                        received.flags.insert(.estimatedTime)
                        reject(&batch, index, message,
                               Rejection(.beforeBinding, Rejection.beforeBindingDetail(measuredAt: measuredAt), clockObservation: received),
                               deviceID: decoded.deviceID, readingIndex: readingIndex, maxPayloadBytes: maxPayloadBytes)
                        continue
                    }
                    batch.readings.append(StoredReading(
                        observation: observation, patientID: patientID, receivedAt: message.receivedAt,
                        messageID: decoded.messageID, format: decoded.format, message: index))
                    batch.origins.append(.init(message: index, readingIndex: readingIndex))
                }
            }
        }
        return batch
    }

    /// A rejected reading: its own dead letter up to the cap, else counted for the message's overflow row.
    private static func reject(
        _ batch: inout ClassifiedBatch, _ index: Int, _ message: ReceivedMessage, _ rejection: Rejection, deviceID: String,
        readingIndex: Int, maxPayloadBytes: Int
    ) {
        batch.rejectedReadings[index, default: 0] += 1
        if batch.rejectedReadings[index]! <= maxDeadLettersPerMessage {
            if rejection.clockObservation != nil || rejection.rejectedValue != nil {
                batch.reviews[batch.deadLetters.count] = (index, deviceID, rejection)
            }
            batch.deadLetters.append(deadLetter(
                message, rejection, deviceID: deviceID, readingIndex: readingIndex, maxPayloadBytes: maxPayloadBytes))
        } else {
            batch.overflow[index, default: [:]][rejection.reason, default: 0] += 1
        }
    }

    /// One row per message whose rejected readings passed the cap, counting the rest by reason.
    private static func addOverflowRows(_ batch: inout ClassifiedBatch, messages: [ReceivedMessage], maxPayloadBytes: Int) {
        for (index, counts) in batch.overflow.sorted(by: { $0.key < $1.key }) {
            guard let rejection = Rejection.overflow(counts) else { continue }
            let message = messages[index]
            batch.deadLetters.append(deadLetter(
                message, rejection, deviceID: (try? message.decoded.get())?.deviceID, maxPayloadBytes: maxPayloadBytes))
        }
    }

    private static func deadLetter(
        _ message: ReceivedMessage, _ rejection: Rejection, deviceID: String?, readingIndex: Int? = nil, maxPayloadBytes: Int
    ) -> StoredDeadLetter {
        let kept = message.payload.count > maxPayloadBytes ? Array(message.payload.prefix(oversizedPayloadPrefixBytes)) : message.payload
        var letter = StoredDeadLetter(
            receivedAt: message.receivedAt, topic: message.topic, deviceID: deviceID, rejection: rejection,
            readingIndex: readingIndex, payload: kept)
        letter.payloadBytes = message.payload.count
        return letter
    }

    /// The batch's readings that were not new: a duplicate when the stored value is the same (within
    /// 1e-6 of the canonical value), else a `conflicting_duplicate` dead letter. The stored value is
    /// read in the batch's transaction, so a key twice in one batch compares with its first copy.
    private static func sortRepeats(
        _ batch: inout ClassifiedBatch, newIDs: [ReadingKey: Int64], messages: [ReceivedMessage], maxPayloadBytes: Int,
        duplicates: inout Int, _ connection: PostgresConnection, _ logger: Logger
    ) async throws {
        var claimed = Set<ReadingKey>()
        var repeats: [Int] = []
        for (i, r) in batch.readings.enumerated() {
            let key = ReadingKey(deviceID: r.deviceID, loinc: r.loinc, measuredAt: r.measuredAt)
            if newIDs[key] != nil, claimed.insert(key).inserted { continue }
            repeats.append(i)
        }
        guard !repeats.isEmpty else { return }
        let keys = repeats.map { batch.readings[$0] }
        let rows = try await connection.query("""
            SELECT r.device_id, r.loinc, r.measured_at, r.canonical_value
            FROM readings r JOIN unnest(\(keys.map(\.deviceID))::text[], \(keys.map(\.loinc))::text[], \(keys.map(\.measuredAt))::int8[])
                AS k(device_id, loinc, measured_at)
              ON r.device_id = k.device_id AND r.loinc = k.loinc AND r.measured_at = k.measured_at
            """, logger: logger).decode((String, String, Int64, Double).self).collected()
        var stored: [ReadingKey: Double] = [:]
        for (device, loinc, at, value) in rows { stored[ReadingKey(deviceID: device, loinc: loinc, measuredAt: at)] = value }
        for i in repeats {
            let r = batch.readings[i]
            let key = ReadingKey(deviceID: r.deviceID, loinc: r.loinc, measuredAt: r.measuredAt)
            if let value = stored[key], abs(value - r.canonicalValue) < 1e-6 {
                duplicates += 1
                continue
            }
            let origin = batch.origins[i]
            reject(&batch, origin.message, messages[origin.message], .conflictingDuplicate(type: r.type),
                   deviceID: r.deviceID, readingIndex: origin.readingIndex, maxPayloadBytes: maxPayloadBytes)
        }
    }

    /// The readings a ``ReadingMarker`` flags: blood pressure and pulse (as on SQLite).
    static let markedTypes: Set<String> = [VitalType.systolicBP.rawValue, VitalType.diastolicBP.rawValue, VitalType.heartRate.rawValue]

    /// Adds to each reading of a marked type the flags of a marker stored before for its device and time.
    private static func applyStoredMarkers(
        _ readings: inout [StoredReading], _ connection: PostgresConnection, _ logger: Logger
    ) async throws {
        let marked = readings.indices.filter { markedTypes.contains(readings[$0].type) }
        guard !marked.isEmpty else { return }
        var stored: [String: Int] = [:]
        for (device, at, flags) in try await connection.query("""
            SELECT m.device_id, m.measured_at, m.flags FROM reading_markers m
            JOIN unnest(\(marked.map { readings[$0].deviceID })::text[], \(marked.map { readings[$0].measuredAt })::int8[]) AS k(device_id, measured_at)
              ON m.device_id = k.device_id AND m.measured_at = k.measured_at
            """, logger: logger).decode((String, Int64, Int).self).collected() {
            stored["\(device)\u{0}\(at)"] = flags
        }
        for i in marked {
            guard let flags = stored["\(readings[i].deviceID)\u{0}\(readings[i].measuredAt)"] else { continue }
            readings[i].flags = ObservationFlags(stored: readings[i].flags).union(ObservationFlags(rawValue: flags)).stored
        }
    }

    /// Stores reading markers (flags joined with any stored for the same device and time) and adds
    /// them to the readings of a marked type already stored for that device and time.
    /// - Returns: markers written.
    private static func storeMarkers(_ markers: [ReadingMarker], _ connection: PostgresConnection, _ logger: Logger) async throws -> Int {
        for m in markers {
            let at = epochMilliseconds(m.measuredAt)
            try await connection.query("""
                INSERT INTO reading_markers (device_id, measured_at, flags) VALUES (\(m.deviceID), \(at), \(m.flags.rawValue))
                ON CONFLICT (device_id, measured_at) DO UPDATE SET flags = reading_markers.flags | excluded.flags
                """, logger: logger)
            for (id, flags) in try await connection.query("""
                SELECT id, flags FROM readings WHERE device_id = \(m.deviceID) AND measured_at = \(at)
                AND type = ANY(\(Array(markedTypes))::text[])
                """, logger: logger).decode((Int64, String?).self).collected() {
                let joined = ObservationFlags(stored: flags).union(m.flags).stored
                if joined != flags {
                    try await connection.query("UPDATE readings SET flags = \(joined) WHERE id = \(id)", logger: logger)
                }
            }
        }
        return markers.count
    }

    /// Upserts status values; an older value never replaces a newer one.
    /// - Returns: rows written.
    private static func storeStatus(
        _ values: [DeviceStatusValue], _ receivedAt: Date?, _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> Int {
        guard !values.isEmpty, let receivedAt else { return 0 }
        let rows = try await connection.query("""
            INSERT INTO device_status (device_id, name, value, observed_at, received_at)
            SELECT d, n, v, o, \(epochMilliseconds(receivedAt)) FROM unnest(
                \(values.map(\.deviceID))::text[], \(values.map(\.name.rawValue))::text[], \(values.map(\.value))::float8[],
                \(values.map { epochMilliseconds($0.observedAt) })::int8[]) AS u(d, n, v, o)
            ON CONFLICT (device_id, name) DO UPDATE SET value = excluded.value, observed_at = excluded.observed_at,
                received_at = excluded.received_at
            WHERE excluded.observed_at >= device_status.observed_at
            RETURNING 1
            """, logger: logger).collect()
        return rows.count
    }

    /// Inserts device events, once per device, kind, vital and time.
    /// - Returns: the id of each new event and its index in `events` (of two alike in one batch, the first).
    private static func storeEvents(
        _ events: [(event: DeviceEvent, receivedAt: Date)], _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> [(id: Int64, index: Int)] {
        guard !events.isEmpty else { return [] }
        let e = events.map(\.event)
        let rows = try await connection.query("""
            WITH input AS (
                SELECT * FROM unnest(
                    \(e.map(\.deviceID))::text[], \(e.map(\.kind.rawValue))::text[], \(NullableArray(e.map { $0.type?.rawValue }))::text[],
                    \(e.map(\.code))::text[], \(NullableArray(e.map { $0.measuredAt.map(epochMilliseconds) }))::int8[],
                    \(events.map { epochMilliseconds($0.receivedAt) })::int8[]
                ) WITH ORDINALITY AS u(device_id, kind, type, code, measured_at, received_at, i)
            ),
            inserted AS (
                INSERT INTO device_events (device_id, kind, type, code, measured_at, received_at)
                SELECT device_id, kind, type, code, measured_at, received_at FROM input ORDER BY i
                ON CONFLICT DO NOTHING
                RETURNING id, device_id, kind, coalesce(type, '') AS type, coalesce(measured_at, received_at) AS at
            )
            SELECT inserted.id, min(input.i) - 1 FROM inserted JOIN input
                ON input.device_id = inserted.device_id AND input.kind = inserted.kind AND coalesce(input.type, '') = inserted.type
               AND coalesce(input.measured_at, input.received_at) = inserted.at
            GROUP BY inserted.id ORDER BY 2
            """, logger: logger).decode((Int64, Int64).self).collected()
        return rows.map { (id: $0.0, index: Int($0.1)) }
    }

    /// The retained messages of a batch whose topic and payload were received before with a reading
    /// timed by its receipt (`received_payloads`, as on SQLite): the broker's copy on a new
    /// subscription, which would otherwise be stored again under a new receive time.
    private static func retainedRepeats(
        _ messages: [ReceivedMessage], _ connection: PostgresConnection, _ logger: Logger
    ) async throws -> Set<Int> {
        let retained = messages.indices.filter { messages[$0].retained }
        guard !retained.isEmpty else { return [] }
        let rows = try await connection.query("""
            SELECT u.i FROM unnest(\(retained)::int8[], \(retained.map { messages[$0].topic })::text[],
                                   \(retained.map { ByteBuffer(bytes: messages[$0].payload) })::bytea[]) AS u(i, topic, payload)
            WHERE EXISTS (SELECT 1 FROM received_payloads r WHERE r.topic = u.topic AND r.sha256 = sha256(u.payload))
            """, logger: logger).decode(Int.self).collected()
        return Set(rows)
    }

    /// Records the topic and payload digest of each message that stored a new reading timed by its
    /// receipt, so that a retained copy of it is recognised later.
    private static func rememberPayloads(
        _ batch: ClassifiedBatch, newIDs: [ReadingKey: Int64], messages: [ReceivedMessage],
        _ connection: PostgresConnection, _ logger: Logger
    ) async throws {
        var indexes = Set<Int>()
        for (i, r) in batch.readings.enumerated() where r.timeSource == TimeSource.receivedAt.rawValue {
            if newIDs[ReadingKey(deviceID: r.deviceID, loinc: r.loinc, measuredAt: r.measuredAt)] != nil {
                indexes.insert(batch.origins[i].message)
            }
        }
        guard !indexes.isEmpty else { return }
        let m = indexes.sorted().map { messages[$0] }
        try await connection.query("""
            INSERT INTO received_payloads (topic, sha256, received_at)
            SELECT t, sha256(p), r FROM unnest(\(m.map(\.topic))::text[], \(m.map { ByteBuffer(bytes: $0.payload) })::bytea[],
                                              \(m.map { epochMilliseconds($0.receivedAt) })::int8[]) AS u(t, p, r)
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }
}
