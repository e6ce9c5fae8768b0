import Foundation

/// Why a message, or one reading in it, could not become a stored reading.
///
/// The raw value is the machine-readable reason stored in `dead_letters.reason` and
/// exported as a metric label. Every case is a reason a person can act on.
public enum DeadLetterReason: String, Sendable, CaseIterable, Codable, Hashable {
    /// The payload is larger than `ingest.max_payload_bytes` (default 256 KiB).
    case tooLarge = "too_large"
    /// The payload is not valid UTF-8 (failure-modes F10).
    case invalidUTF8 = "invalid_utf8"
    /// The payload is not a JSON object in the canonical format.
    case malformedJSON = "malformed_json"
    /// The topic does not name a device where the subscription expects one.
    case badTopic = "bad_topic"
    /// A required field (`type`, `value`, `unit`, `measured_at`) is missing.
    case missingField = "missing_field"
    /// The device id in the topic is not enrolled.
    case unknownDevice = "unknown_device"
    /// The payload names a device other than the one in the topic.
    case deviceMismatch = "device_mismatch"
    /// `type` is not one of the supported vital types.
    case unknownType = "unknown_type"
    /// `unit` is missing, unrecognised, or does not measure this type (mmol/L for a weight).
    case badUnit = "bad_unit"
    /// `value` is not a finite number or a plain numeric string ("HI", "LO", "", NaN).
    case notANumber = "not_a_number"
    /// The value, in the canonical unit, is outside ``VitalType/plausibleRange``.
    case implausibleValue = "implausible_value"
    /// `measured_at` is unparseable, before 2000-01-02 (unset clocks start at 2000-01-01), or more than the allowed skew in the future.
    case badTimestamp = "bad_timestamp"
    /// A reading with the same device, LOINC code and measurement time is stored with a different value.
    case conflictingDuplicate = "conflicting_duplicate"
    /// The device sent an error code instead of a value (SFLOAT NaN 2047, `Err`, cuff 0/255);
    /// also recorded as a device event (failure-modes F21).
    case deviceError = "device_error"
    /// The meter sent its "HI" or "LO" marker (or a value flagged so) instead of a measurement;
    /// also recorded as a device event (failure-modes F21).
    case outOfMeterRange = "out_of_meter_range"
    /// The payload does not have the shape of the subscription's format, or `auto` recognised no format.
    case unknownFormat = "unknown_format"
    /// The reading was measured before the device's first binding to a patient (`device add --from`):
    /// it belongs to no patient.
    case beforeBinding = "before_binding"
}

/// A rejection: the reason and a short description of what was wrong.
///
/// `detail` names fields and limits; it never repeats text from the payload (values, units, types),
/// so it is safe to log and cannot forge log lines. The raw payload is kept with the dead letter.
public struct Rejection: Error, Sendable, Hashable {
    /// The machine-readable reason.
    public var reason: DeadLetterReason
    /// What was wrong, for a person, without reading values (e.g. "field 'unit' not recognised").
    public var detail: String
    /// For a `bad_timestamp` caused by a wrong device clock (before 2000-01-02, or ahead of the
    /// receive time by more than the allowed skew): the reading as received, timed by its receipt
    /// (`time_source` `received_at`, flag `estimated_time`). It is never stored as a reading; its
    /// values go to a device task so that a critical value is not lost with the clock.
    public var clockObservation: Observation?
    /// For a `bad_timestamp` caused by a wrong device clock: the receive time, by which a decoder
    /// times the reading it builds as ``clockObservation``. Nil for every other rejection, including
    /// a time that could not be read at all.
    public var clockReceivedAt: Date?
    /// For an `implausible_value`: the value as received, for a person (e.g. "Glucose 650 mg/dL").
    /// PHI: it goes to a routine device task, never to the dead letter's detail or a log.
    public var rejectedValue: String?

    public init(_ reason: DeadLetterReason, _ detail: String, clockObservation: Observation? = nil) {
        self.reason = reason
        self.detail = detail
        self.clockObservation = clockObservation
    }
}

extension Rejection {
    /// The detail of a `before_binding` dead letter, the same on both stores.
    /// - Parameter measuredAt: the reading's measurement time, epoch milliseconds.
    public static func beforeBindingDetail(measuredAt: Int64) -> String {
        let date = dateFromEpochMilliseconds(measuredAt).formatted(Date.ISO8601FormatStyle())
        return "measured at \(date), before the device's first binding to a patient (or an old reading from its memory)"
    }
}

extension Rejection {
    /// A reading whose key (device, LOINC code, measured_at) is stored with another value.
    /// - Parameter type: the vital type's name (`glucose`).
    public static func conflictingDuplicate(type: String) -> Rejection {
        Rejection(.conflictingDuplicate, "a \(type) reading with this device and measured_at is stored with another value")
    }

    /// The one row that counts a message's rejected readings past the cap of rows of their own:
    /// its reason is the most frequent (the first by name among equals), its detail counts each.
    /// - Returns: nil for no rejections.
    public static func overflow(_ counts: [DeadLetterReason: Int]) -> Rejection? {
        guard let (reason, _) = counts.max(by: { ($0.value, $1.key.rawValue) < ($1.value, $0.key.rawValue) }) else { return nil }
        let list = counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) x\($0.value)" }
        return Rejection(reason, "\(counts.values.reduce(0, +)) further readings of this message rejected: \(list.joined(separator: ", "))")
    }
}
