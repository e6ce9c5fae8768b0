import Crypto
import Foundation
import GRDB
import VitalsAlerting
import VitalsDomain
import VitalsFormats

/// A message as received from the broker, before decoding.
public struct IncomingMessage: Sendable, Hashable {
    /// The topic it arrived on.
    public var topic: String
    /// The device id that the subscription's topic filter found in the topic; nil if none matched.
    public var deviceID: String?
    /// The raw payload bytes, kept unchanged in dead letters.
    public var payload: [UInt8]
    /// When vitalsd received it.
    public var receivedAt: Date
    /// The payload format of the subscription it arrived on (`canonical` for `mqtt.topics`).
    public var format: MessageFormat
    /// The subscription's `device_field`: a payload member that names the device, if configured.
    public var deviceField: String?
    /// The subscription's `timezone` for naive local times; nil to use the patient's.
    public var timeZone: TimeZone?
    /// True when the topic matched a subscription. A message on a subscription whose device is in the
    /// payload has no ``deviceID`` yet is not `bad_topic`.
    public var matchedSubscription: Bool
    /// The broker sent it as a retained message, because of a new subscription (MQTT 3.1.1 §3.3.1.3):
    /// possibly a copy of a message received before.
    public var retained: Bool

    /// - Parameter matchedSubscription: defaults to `deviceID != nil`.
    public init(
        topic: String, deviceID: String?, payload: [UInt8], receivedAt: Date, format: MessageFormat = .canonical,
        deviceField: String? = nil, timeZone: TimeZone? = nil, matchedSubscription: Bool? = nil, retained: Bool = false
    ) {
        self.retained = retained
        self.topic = topic
        self.deviceID = deviceID
        self.payload = payload
        self.receivedAt = receivedAt
        self.format = format
        self.deviceField = deviceField
        self.timeZone = timeZone
        self.matchedSubscription = matchedSubscription ?? (deviceID != nil)
    }
}

/// One result per message of a batch, each slot written by one decoding thread only.
private final class DecodedSlots: @unchecked Sendable {
    typealias Slot = (message: IncomingMessage, result: Result<DecodedMessage, Rejection>)
    // Safe without a lock: the storage is allocated once and never moves, concurrentPerform gives
    // each index to exactly one iteration, and `values` is read only after concurrentPerform returned.
    private let slots: UnsafeMutableBufferPointer<Slot?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    deinit {
        slots.deinitialize()
        slots.deallocate()
    }

    func set(_ index: Int, _ value: Slot) { slots[index] = value }

    var values: [Slot] { slots.map { $0! } }
}

/// How messages become readings and tasks: the decoder and the threshold policy in force.
public struct IngestPipeline: Sendable {
    public var decoder: CanonicalMessageDecoder
    public var thresholds: ThresholdPolicy
    /// Trend rules, late data, re-alerting, confirmation and escalation.
    public var alerts: AlertPolicy

    public init(decoder: CanonicalMessageDecoder = .init(), thresholds: ThresholdPolicy, alerts: AlertPolicy = .clinicalDefaults) {
        self.decoder = decoder
        self.thresholds = thresholds
        self.alerts = alerts
    }
}

/// What one ingest transaction did.
public struct IngestSummary: Sendable, Hashable {
    /// Messages in the batch.
    public var messages = 0
    /// New reading rows.
    public var readingsStored = 0
    /// Readings already stored with the same value (redelivery, re-upload, retained replay).
    public var duplicates = 0
    /// Dead-letter rows written, by reason.
    public var deadLetters: [DeadLetterReason: Int] = [:]
    /// Tasks opened, by priority.
    public var tasksOpened: [TaskPriority: Int] = [:]
    /// Tasks raised to a higher priority (warning to critical), by the priority reached.
    public var tasksRaised: [TaskPriority: Int] = [:]
    /// Retained copies of messages already received (recognised by topic and payload) that added nothing.
    public var retainedRepeats = 0
    /// Existing tasks that got a new occurrence.
    public var tasksUpdated = 0
    /// Breaches that opened no task because their condition never recovered since its last task was resolved.
    public var suppressedBreaches = 0
    /// Instants of late readings whose breaches went to a `late_data` review task.
    public var lateBreaches = 0
    /// Each dead letter's row id (`vitalsd dead-letters show ID`), device and reason, for logging (no
    /// payload, no values).
    public var rejections: [(id: Int64, deviceID: String?, topic: String, rejection: Rejection)] = []
    /// Dead letters not written again because the same message was already recorded (redelivery, retained replay).
    public var repeatedDeadLetters = 0
    /// Device-status values written (battery, signal, perfusion index; latest per device).
    public var deviceStatusUpdated = 0
    /// Device events written (error codes, HI/LO markers).
    public var deviceEvents = 0
    /// Gateway heartbeats acknowledged without a row (Qube-Vital `HB_Msg`).
    public var heartbeats = 0

    public init() {}

    /// Total dead letters written.
    public var deadLetterCount: Int { deadLetters.values.reduce(0, +) }

    public static func == (a: Self, b: Self) -> Bool {
        a.messages == b.messages && a.readingsStored == b.readingsStored && a.duplicates == b.duplicates
            && a.deadLetters == b.deadLetters && a.tasksOpened == b.tasksOpened && a.tasksUpdated == b.tasksUpdated
    }

    public func hash(into h: inout Hasher) {
        h.combine(messages)
        h.combine(readingsStored)
        h.combine(duplicates)
    }
}

extension AppDatabase {
    /// Stores a batch of messages in one transaction: readings, dead letters, task changes and
    /// counters commit together or not at all.
    ///
    /// For each message: decode it (outside the transaction); a message that cannot be read as a
    /// whole, or that comes from an unknown device, becomes one dead letter. Each reading is then
    /// stored once per (device, LOINC code, measured_at): a repeat with the same value counts as a
    /// duplicate and adds nothing, a repeat with another value is a `conflicting_duplicate` dead
    /// letter. Each newly stored reading is evaluated against the patient's thresholds; the breaches
    /// of one message that concern one condition open or update one task.
    ///
    /// - Returns: what was written.
    /// - Throws: only database errors (disk full, I/O error, lock timeout). Then nothing of the batch
    ///   is stored, and the caller must not acknowledge it.
    /// - Parameter now: the time the rules see (re-alert windows, escalation schedules, the time
    ///   stamped on task events); default: the latest receive time of the batch, which the daemon
    ///   takes from its clock.
    public func ingest(_ messages: [IncomingMessage], pipeline: IngestPipeline, now: Date? = nil) async throws -> IngestSummary {
        let decoded = decode(messages, pipeline: pipeline)
        let now = now ?? Self.batchTime(messages)
        return try await writer.write { db in try Self.store(db, decoded, pipeline: pipeline, incarnation: incarnation, now: now) }
    }

    /// The blocking form of ``ingest(_:pipeline:now:)``.
    public func ingestBlocking(_ messages: [IncomingMessage], pipeline: IngestPipeline, now: Date? = nil) throws -> IngestSummary {
        let decoded = decode(messages, pipeline: pipeline)
        let now = now ?? Self.batchTime(messages)
        return try writer.write { db in try Self.store(db, decoded, pipeline: pipeline, incarnation: incarnation, now: now) }
    }

    /// The latest receive time of a batch: its evaluation time unless the caller gives one.
    static func batchTime(_ messages: [IncomingMessage]) -> Date {
        messages.map(\.receivedAt).max() ?? Date(timeIntervalSince1970: 0)
    }

    /// Stores a reading entered by hand (a nurse reading a meter over the phone) with `source = manual`.
    ///
    /// It is evaluated against the thresholds like any reading, but never counts as a day of data
    /// for CPT 99445/99454: CMS requires data transmitted by the device itself
    /// (`clinical-and-billing.md` §2.2 rule 2).
    /// - Throws: ``Rejection`` when the reading is invalid or its device unknown; database errors.
    public func recordManualReading(
        deviceID: String, typeName: String, value: Double, unit: String, measuredAt: Date, actor: String,
        pipeline: IngestPipeline, now: Date = Date()
    ) throws -> IngestSummary {
        let observation = try Observation.make(
            deviceID: deviceID, typeName: typeName, value: .number(value), unit: .string(unit), measuredAt: measuredAt,
            source: .manual)
        try pipeline.decoder.timePolicy.check(measuredAt, receivedAt: now)
        let message = IncomingMessage(
            topic: "manual", deviceID: deviceID, payload: Array("entered by \(actor)".utf8), receivedAt: now)
        let decoded = DecodedMessage(messageID: nil, deviceID: deviceID, readings: [.success(observation)])
        return try writer.write { db in
            let summary = try Self.store(db, [(message, .success(decoded))], pipeline: pipeline, incarnation: incarnation, now: now)
            if let rejection = summary.rejections.first?.rejection { throw rejection }
            try Self.audit(db, actor: actor, action: "reading.manual", targetType: "device", targetID: deviceID,
                           detail: "\(observation.type.rawValue) at \(epochMilliseconds(measuredAt))")
            return summary
        }
    }

    /// Bytes kept of a payload over `ingest.max_payload_bytes` (a `too_large` dead letter): enough to
    /// see what it was; its size and SHA-256 are kept too.
    public static let oversizedPayloadPrefixBytes = 4096

    /// Rejected readings of one message kept as rows of their own; the rest are counted in one more row.
    static let maxDeadLettersPerMessage = 100

    private typealias Decoded = IngestDecoding.Decoded

    /// Decodes each message in its subscription's format (``IngestDecoding/decode(_:pipeline:patientZone:)``),
    /// with the time zone of the patient the device is enrolled to.
    private func decode(_ messages: [IncomingMessage], pipeline: IngestPipeline) -> [Decoded] {
        let writer = self.writer
        return IngestDecoding.decode(messages, pipeline: pipeline) { deviceID in
            let name = try? writer.read { db in
                try String.fetchOne(
                    db, sql: "SELECT p.timezone FROM devices d JOIN patients p ON p.id = d.patient_id WHERE d.id = ?",
                    arguments: [deviceID])
            }
            return name.flatMap { $0 }.flatMap(TimeZone.init(identifier:))
        }
    }

    /// A device's bindings to patients, oldest first (bound_from NULL: since before any reading).
    struct Binding {
        var patientID: String
        var from: Int64?
        var to: Int64?

        func covers(_ ms: Int64) -> Bool { (from.map { ms >= $0 } ?? true) && (to.map { ms < $0 } ?? true) }
    }

    /// Each device's bindings and each bound patient's programs, for every device a batch names:
    /// two cached statements per batch. The ids travel as one JSON array read with `json_each`, so
    /// the statements do not depend on the batch size.
    private static func bindings(
        _ db: Database, _ batch: [Decoded]
    ) throws -> (devices: [String: [Binding]], programs: [String: [Program]]) {
        var deviceIDs = Set<String>()
        for case (_, .success(let decoded)) in batch { deviceIDs.insert(decoded.deviceID) }
        guard !deviceIDs.isEmpty else { return ([:], [:]) }
        var devices: [String: [Binding]] = [:]
        let rows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT device_id, patient_id, bound_from, bound_to FROM device_bindings
                WHERE device_id IN (SELECT value FROM json_each(?)) ORDER BY device_id, bound_from IS NOT NULL, bound_from
                """),
            arguments: [try jsonArray(deviceIDs)])
        var patients = Set<String>()
        while let row = try rows.next() {
            devices[row[0], default: []].append(Binding(patientID: row[1], from: row[2], to: row[3]))
            patients.insert(row[1])
        }
        var programs: [String: [Program]] = [:]
        let programRows = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT patient_id, program FROM patient_programs WHERE patient_id IN (SELECT value FROM json_each(?))
                ORDER BY patient_id, program
                """),
            arguments: [try jsonArray(patients)])
        while let row = try programRows.next() {
            if let program = Program(rawValue: row[1]) { programs[row[0], default: []].append(program) }
        }
        for p in patients where programs[p] == nil { programs[p] = [] }
        return (devices, programs)
    }

    /// `ids` as a JSON array of strings, for `json_each`: `"` and `\` escaped, control characters as
    /// `\u00XX`, everything else as it is (JSON text is UTF-8). Written by hand: several arrays go with
    /// every ingest batch, and `JSONEncoder` cost tens of microseconds for each.
    static func jsonArray(_ ids: Set<String>) throws -> String {
        var out = "["
        out.reserveCapacity(ids.reduce(2) { $0 + $1.utf8.count + 3 })
        var first = true
        for id in ids {
            if !first { out.append(",") }
            first = false
            out.append("\"")
            for scalar in id.unicodeScalars {
                switch scalar {
                case "\"": out.append("\\\"")
                case "\\": out.append("\\\\")
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    out.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                default: out.unicodeScalars.append(scalar)
                }
            }
            out.append("\"")
        }
        out.append("]")
        return out
    }

    private static func store(_ db: Database, _ batch: [Decoded], pipeline: IngestPipeline, incarnation: String, now: Date) throws -> IngestSummary {
        var summary = IngestSummary()
        summary.messages = batch.count
        let (devices, programs) = try bindings(db, batch)

        /// The patient a device was bound to at an instant (epoch ms), nil before its first binding.
        func patient(_ deviceID: String, at ms: Int64?) -> String? {
            guard let list = devices[deviceID] else { return nil }
            guard let ms else { return list.first { $0.to == nil }?.patientID ?? list.last?.patientID }
            return list.first { $0.covers(ms) }?.patientID
        }

        var payloadIDs: [Int: Int64] = [:]
        var digests: [Int: Data] = [:]
        func digest(_ index: Int, _ message: IncomingMessage) -> Data {
            if let d = digests[index] { return d }
            let d = Data(SHA256.hash(data: message.payload))
            digests[index] = d
            return d
        }

        /// The id of the stored copy of a message's payload, stored once per distinct payload. A
        /// payload over the size limit keeps only its first ``oversizedPayloadPrefixBytes``, with its
        /// size and the SHA-256 of the whole: a faulty gateway must not fill the disk.
        func payloadID(_ index: Int, _ message: IncomingMessage) throws -> Int64 {
            if let id = payloadIDs[index] { return id }
            let digest = digest(index, message)
            let kept = message.payload.count > pipeline.decoder.maxPayloadBytes
                ? Data(message.payload.prefix(Self.oversizedPayloadPrefixBytes)) : Data(message.payload)
            try db.cachedStatement(sql: """
                INSERT INTO dead_letter_payloads(sha256, payload, payload_bytes) VALUES (?, ?, ?) ON CONFLICT(sha256) DO NOTHING
                """).execute(arguments: [digest, kept, message.payload.count])
            let id = try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT id FROM dead_letter_payloads WHERE sha256 = ?"), arguments: [digest])!
            payloadIDs[index] = id
            return id
        }

        /// Records a dead letter. - Returns: false when the same message was recorded before.
        @discardableResult
        func deadLetter(_ messageIndex: Int, _ message: IncomingMessage, _ rejection: Rejection, deviceID: String?, index: Int? = nil) throws -> Bool {
            try db.cachedStatement(sql: """
                INSERT INTO dead_letters(received_at, topic, device_id, reason, detail, reading_index, payload, payload_bytes, payload_id)
                VALUES (?, ?, ?, ?, ?, ?, X'', ?, ?)
                ON CONFLICT DO NOTHING
                """).execute(arguments: [
                    epochMilliseconds(message.receivedAt), message.topic, deviceID, rejection.reason.rawValue,
                    rejection.detail, index, message.payload.count, try payloadID(messageIndex, message),
                ])
            guard db.changesCount > 0 else {
                summary.repeatedDeadLetters += 1
                return false
            }
            summary.deadLetters[rejection.reason, default: 0] += 1
            summary.rejections.append((db.lastInsertedRowID, deviceID, message.topic, rejection))
            return true
        }

        var toEvaluate: [String: [NewReading]] = [:]
        var deviceProblems: [String: [DeviceProblem]] = [:]
        var clockProblems: [String: [ClockProblem]] = [:]
        var implausibleValues: [String: [ImplausibleValues]] = [:]
        var evaluated = 0
        // Prepared once per batch: a per-row cache lookup hashes the whole SQL text each time.
        let insertReading = RawStatement(try db.cachedStatement(sql: """
            INSERT INTO readings(device_id, patient_id, type, loinc, value, unit, canonical_value,
                                 canonical_unit, measured_at, received_at, source, message_id,
                                 flags, time_source, local_offset_minutes, vendor_reading_id, format)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(device_id, loinc, measured_at) DO NOTHING
            """))
        let storedValue = try db.cachedStatement(
            sql: "SELECT canonical_value FROM readings WHERE device_id = ? AND loinc = ? AND measured_at = ?")
        let markers = try db.cachedStatement(sql: "SELECT flags FROM reading_markers WHERE device_id = ? AND measured_at = ?")
        let seenPayload = try db.cachedStatement(sql: "SELECT 1 FROM received_payloads WHERE topic = ? AND sha256 = ?")

        for (messageIndex, (message, result)) in batch.enumerated() {
            let decoded: DecodedMessage
            switch result {
            case .failure(let rejection):
                try deadLetter(messageIndex, message, rejection, deviceID: message.deviceID)
                continue
            case .success(let d):
                decoded = d
            }
            if decoded.isHeartbeat {
                summary.heartbeats += 1
                continue
            }
            guard devices[decoded.deviceID] != nil else {
                try deadLetter(messageIndex, message, Rejection(.unknownDevice, "device is not enrolled"), deviceID: decoded.deviceID)
                continue
            }
            // A retained copy the broker delivers again on a subscribe, of a message whose readings
            // carry no time of their own: recognised by its payload, it adds nothing.
            if message.retained, try Bool.fetchOne(seenPayload, arguments: [message.topic, digest(messageIndex, message)]) == true {
                summary.retainedRepeats += 1
                summary.duplicates += decoded.readings.filter { (try? $0.get()) != nil }.count
                continue
            }

            var stored: [(observation: Observation, readingID: Int64, patientID: String)] = []
            // One row per rejected reading up to a cap, then one row that counts the rest, so that a
            // single message cannot write thousands of rows.
            var rejectedReadings = 0
            var overflow: [DeadLetterReason: Int] = [:]
            var clockObservations: [Observation] = []
            var clockDetail = ""
            var implausible: [String] = []
            var implausibleDetail = ""
            func rejectReading(_ rejection: Rejection, _ index: Int) throws {
                rejectedReadings += 1
                if rejectedReadings <= Self.maxDeadLettersPerMessage {
                    let recorded = try deadLetter(messageIndex, message, rejection, deviceID: decoded.deviceID, index: index)
                    if recorded, let o = rejection.clockObservation {
                        clockObservations.append(o)
                        clockDetail = rejection.detail
                    }
                    if recorded, let value = rejection.rejectedValue {
                        implausible.append(value)
                        implausibleDetail = rejection.detail
                    }
                } else {
                    overflow[rejection.reason, default: 0] += 1
                }
            }
            let receivedAt = epochMilliseconds(message.receivedAt)
            for (index, reading) in decoded.readings.enumerated() {
                let observation: Observation
                switch reading {
                case .failure(let rejection):
                    try rejectReading(rejection, index)
                    continue
                case .success(let o):
                    observation = o
                }
                let measuredAt = epochMilliseconds(observation.measuredAt)
                guard let patientID = patient(decoded.deviceID, at: measuredAt) else {
                    // Before the device was handed to anyone: an old reading from the device's memory,
                    // or a clock reset to a plausible past date (F22), when the value is current. Its
                    // value goes to the device's clock task for the patient who has it now, so that a
                    // critical value is shown to a person either way.
                    var received = observation
                    received.measuredAt = message.receivedAt
                    received.timeSource = .receivedAt
                    received.flags.insert(.estimatedTime)
                    try rejectReading(Rejection(
                        .beforeBinding, Rejection.beforeBindingDetail(measuredAt: measuredAt), clockObservation: received), index)
                    continue
                }
                var flags = observation.flags
                if Self.markedTypes.contains(observation.type), let marked = try Int.fetchOne(
                    markers, arguments: [observation.deviceID, measuredAt]) {
                    flags.formUnion(ObservationFlags(rawValue: marked))
                }
                // Bound column by column: GRDB's `execute(arguments:)` boxed each of the 17 values
                // and cost as much as SQLite's insert (BENCHMARKS.md, "Levers").
                insertReading.reset()
                insertReading.bind(1, observation.deviceID)
                insertReading.bind(2, patientID)
                insertReading.bind(3, observation.type.rawValue)
                insertReading.bind(4, observation.type.loinc)
                insertReading.bind(5, observation.value)
                insertReading.bind(6, observation.unit)
                insertReading.bind(7, observation.canonicalValue)
                insertReading.bind(8, observation.type.canonicalUnit.rawValue)
                insertReading.bind(9, measuredAt)
                insertReading.bind(10, receivedAt)
                insertReading.bind(11, observation.source.rawValue)
                insertReading.bind(12, decoded.messageID)
                insertReading.bind(13, flags.stored)
                insertReading.bind(14, observation.timeSource.rawValue)
                insertReading.bind(15, observation.localOffsetMinutes)
                insertReading.bind(16, observation.vendorReadingID)
                insertReading.bind(17, decoded.format)
                try insertReading.execute()
                // One row inserted, or none on a conflict with the unique key.
                if db.changesCount == 1 {
                    let id = db.lastInsertedRowID
                    stored.append((observation, id, patientID))
                    summary.readingsStored += 1
                    continue
                }
                let existing = try Double.fetchOne(
                    storedValue,
                    arguments: [observation.deviceID, observation.type.loinc, measuredAt])
                if let existing, abs(existing - observation.canonicalValue) < 1e-6 {
                    summary.duplicates += 1
                } else {
                    try rejectReading(
                        Rejection.conflictingDuplicate(type: observation.type.rawValue),
                        index)
                }
            }
            for (eventID, event) in try storeDeviceReport(db, decoded, receivedAt: message.receivedAt, summary: &summary) {
                guard let patientID = patient(decoded.deviceID, at: event.measuredAt.map(epochMilliseconds)) else { continue }
                deviceProblems[patientID, default: []].append(DeviceProblem(eventID: eventID, event: event, receivedAt: message.receivedAt))
            }
            if !clockObservations.isEmpty, let patientID = patient(decoded.deviceID, at: nil) {
                clockProblems[patientID, default: []].append(ClockProblem(
                    deviceID: decoded.deviceID, observations: clockObservations, receivedAt: message.receivedAt, detail: clockDetail))
            }
            if !implausible.isEmpty, let patientID = patient(decoded.deviceID, at: nil) {
                implausibleValues[patientID, default: []].append(ImplausibleValues(
                    deviceID: decoded.deviceID, values: implausible, detail: implausibleDetail, receivedAt: message.receivedAt))
            }
            if let rejection = Rejection.overflow(overflow) {
                try deadLetter(messageIndex, message, rejection, deviceID: decoded.deviceID)
            }
            if stored.contains(where: { $0.observation.timeSource == .receivedAt }) {
                try db.cachedStatement(sql: """
                    INSERT INTO received_payloads(topic, sha256, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING
                    """).execute(arguments: [message.topic, digest(messageIndex, message), epochMilliseconds(message.receivedAt)])
            }
            for (observation, id, patientID) in stored {
                toEvaluate[patientID, default: []].append(NewReading(
                    readingID: id, observation: observation, receivedAt: message.receivedAt, message: messageIndex, order: evaluated))
                evaluated += 1
            }
        }
        let concerned = Set(toEvaluate.keys).union(deviceProblems.keys).union(clockProblems.keys).union(implausibleValues.keys)
        let policy = AlertingPolicy(thresholds: pipeline.thresholds, alerts: pipeline.alerts)
        let snapshots = try snapshots(
            db, patients: Dictionary(uniqueKeysWithValues: concerned.map { ($0, programs[$0] ?? []) }), readings: toEvaluate,
            policy: policy)
        for patientID in concerned.sorted() {
            guard let snapshot = snapshots[patientID] else { continue }
            func evaluate(_ snapshot: PatientSnapshot) -> AlertDecision {
                AlertEngine.evaluate(
                    readings: toEvaluate[patientID] ?? [], deviceProblems: deviceProblems[patientID] ?? [],
                    clockProblems: clockProblems[patientID] ?? [], implausibleValues: implausibleValues[patientID] ?? [],
                    snapshot: snapshot, policy: policy, now: now)
            }
            var decision = evaluate(snapshot)
            if decision.needsHistory {
                // Rare (a critical task opened): read the patient's readings around the batch and decide again.
                let full = try Self.snapshots(
                    db, patients: [patientID: programs[patientID] ?? []], readings: [patientID: toEvaluate[patientID] ?? []],
                    policy: policy, history: [patientID])
                decision = evaluate(full[patientID] ?? snapshot)
            }
            try storeAlertStates(db, patientID: patientID, decision.states)
            try apply(db, decision.changes, incarnation: incarnation)
            summary.tasksOpened.merge(decision.opened, uniquingKeysWith: +)
            summary.tasksRaised.merge(decision.raised, uniquingKeysWith: +)
            summary.tasksUpdated += decision.updated
            summary.suppressedBreaches += decision.suppressed
            summary.lateBreaches += decision.lateBreaches
        }
        if summary.duplicates > 0 {
            try db.execute(sql: "UPDATE counters SET value = value + ? WHERE name = 'duplicates'", arguments: [summary.duplicates])
        }
        return summary
    }

    /// The readings a ``ReadingMarker`` flags: blood pressure and pulse.
    static let markedTypes: Set<VitalType> = [.systolicBP, .diastolicBP, .heartRate]

    /// Stores a message's device status (latest value per device and name: an older value never
    /// replaces a newer one), device events (once per device, kind, vital and time), and markers
    /// (kept for readings still to come, and applied to those already stored).
    /// - Returns: the device events recorded for the first time, with their ids.
    private static func storeDeviceReport(
        _ db: Database, _ decoded: DecodedMessage, receivedAt: Date, summary: inout IngestSummary
    ) throws -> [(Int64, DeviceEvent)] {
        var recorded: [(Int64, DeviceEvent)] = []
        for m in decoded.markers where m.deviceID == decoded.deviceID {
            let at = epochMilliseconds(m.measuredAt)
            try db.cachedStatement(sql: """
                INSERT INTO reading_markers(device_id, measured_at, flags) VALUES (?, ?, ?)
                ON CONFLICT(device_id, measured_at) DO UPDATE SET flags = reading_markers.flags | excluded.flags
                """).execute(arguments: [m.deviceID, at, m.flags.rawValue])
            let stored = try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT id, flags FROM readings WHERE device_id = ? AND measured_at = ?
                    AND type IN ('systolic_bp', 'diastolic_bp', 'heart_rate')
                    """), arguments: [m.deviceID, at])
            for row in stored {
                let flags = ObservationFlags(stored: row["flags"]).union(m.flags)
                try db.cachedStatement(sql: "UPDATE readings SET flags = ? WHERE id = ?")
                    .execute(arguments: [flags.stored, row["id"] as Int64])
            }
        }
        for s in decoded.status where s.deviceID == decoded.deviceID {
            try db.cachedStatement(sql: """
                INSERT INTO device_status(device_id, name, value, observed_at, received_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(device_id, name) DO UPDATE SET value = excluded.value, observed_at = excluded.observed_at,
                    received_at = excluded.received_at
                WHERE excluded.observed_at >= device_status.observed_at
                """).execute(arguments: [s.deviceID, s.name.rawValue, s.value, epochMilliseconds(s.observedAt),
                                         epochMilliseconds(receivedAt)])
            summary.deviceStatusUpdated += db.changesCount
        }
        for e in decoded.events where e.deviceID == decoded.deviceID {
            try db.cachedStatement(sql: """
                INSERT INTO device_events(device_id, kind, type, code, measured_at, received_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                """).execute(arguments: [e.deviceID, e.kind.rawValue, e.type?.rawValue, e.code,
                                         e.measuredAt.map(epochMilliseconds), epochMilliseconds(receivedAt)])
            summary.deviceEvents += db.changesCount
            if db.changesCount > 0 { recorded.append((db.lastInsertedRowID, e)) }
        }
        return recorded
    }
}

/// The decoding half of an ingest, shared by the SQLite and PostgreSQL stores.
public enum IngestDecoding {
    /// A message with what decoding made of it.
    public typealias Decoded = (message: IncomingMessage, result: Result<DecodedMessage, Rejection>)

    /// Decodes each message in its subscription's format: pure CPU work, outside any transaction.
    ///
    /// A topic whose device level is not a valid id, or a topic no filter matched, is a `bad_topic`
    /// rejection. Naive local times are read in the subscription's `timezone`, else in
    /// `patientZone(deviceID)`. A batch of 256 messages or more is decoded on every core.
    /// - Returns: one result per message, in order, with the message (its device id removed when the
    ///   topic's level was not a valid id: never stored, never logged).
    public static func decode(
        _ messages: [IncomingMessage], pipeline: IngestPipeline, patientZone: @escaping @Sendable (String) -> TimeZone?
    ) -> [Decoded] {
        let formats = FormatDecoding(canonical: pipeline.decoder)
        let timePolicy = pipeline.decoder.timePolicy
        let decodeOne: @Sendable (IncomingMessage) -> Decoded = { message in
            if let id = message.deviceID, (try? EnrollmentIdentifier.validate(id, "device")) == nil {
                // Never an id: not stored, not logged (a topic level can carry any text, even a name).
                var unnamed = message
                unnamed.deviceID = nil
                return (unnamed, .failure(Rejection(
                    .badTopic, "the topic's device level is not 1-128 characters from A-Z a-z 0-9 . _ : @ -")))
            }
            guard message.deviceID != nil || message.matchedSubscription else {
                return (message, .failure(Rejection(.badTopic, "topic matches no device topic filter")))
            }
            let zone = message.timeZone
            let context = DecodeContext(
                topicDeviceID: message.deviceID, deviceField: message.deviceField, receivedAt: message.receivedAt,
                timePolicy: timePolicy, localTimeZone: { zone ?? patientZone($0) })
            return (message, Result { () throws(Rejection) -> DecodedMessage in
                try formats.decode(payload: message.payload, format: message.format, context: context)
            })
        }
        // A large batch (a backlog) is decoded on every core: decoding is pure CPU work, and the
        // batch cannot be written before all of it is decoded.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard messages.count >= 256, cores > 1 else { return messages.map(decodeOne) }
        let results = DecodedSlots(count: messages.count)
        let chunk = (messages.count + cores - 1) / cores
        DispatchQueue.concurrentPerform(iterations: cores) { part in
            for i in (part * chunk)..<min(messages.count, (part + 1) * chunk) { results.set(i, decodeOne(messages[i])) }
        }
        return results.values
    }
}
