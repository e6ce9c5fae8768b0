import Foundation
import VitalsDomain

/// The payload formats vitalsd decodes; each subscription names one (`mqtt.subscriptions[].format`).
///
/// Field-level facts for each: `../shared/reference/payload-formats.md` (section in each decoder's docs).
public enum MessageFormat: String, Sendable, Hashable, CaseIterable {
    /// vitalsd's own format, version 1 (README "Canonical message format").
    case canonical
    /// SenML JSON pack (RFC 8428, units RFC 8798).
    case senml
    /// FHIR R4 Observation, or a Bundle (`transaction`/`collection`) of Observations.
    case fhir
    /// Tenovi HWI measurement webhook, one object or an array.
    case tenovi
    /// BodyTrace cellular scale.
    case bodytrace
    /// Withings getmeas response (or a bare measure group / list of groups).
    case withings
    /// Dexcom API v3 EGV response.
    case dexcom
    /// Telli Health webhook, v1 and v2.
    case telli
    /// iHealth Open API v2 `BPDataList`, `WeightDataList`, `BODataList`.
    case ihealth
    /// Qube-Vital BLE gateway messages (`HB_Msg` heartbeats, `reportAttribute` readings).
    case qube
    /// Smart Meter (iGlucose, iBloodPressure, iScale, iPulseOx) readings service response.
    case smartmeter
    /// LibreView / LibreLinkUp glucose items (`glucoseMeasurement`, `graphData`).
    case librelinkup
    /// Impilo platform blood-pressure, glucose and heart-rate records.
    case impilo
    /// Detect the format by the rules of ``FormatDetector``.
    case auto
}

/// What a decoder knows besides the payload: who sent it, when it arrived, the time rules.
public struct DecodeContext: Sendable {
    /// The device id the topic named, or nil when the subscription takes it from the payload.
    public var topicDeviceID: String?
    /// A dotted path (`data.ble_mac`) of a payload member that names the device, overriding the
    /// format's own device field; nil to use the format's field.
    public var deviceField: String?
    /// When vitalsd received the message.
    public var receivedAt: Date
    /// Plausibility bounds of measurement times.
    public var timePolicy: MeasurementTimePolicy
    /// The time zone for naive local times: the subscription's `timezone`, else the patient's.
    /// Returns nil when none is known; such a time is then refused (`bad_timestamp`).
    public var localTimeZone: @Sendable (_ deviceID: String) -> TimeZone?

    public init(
        topicDeviceID: String?, deviceField: String? = nil, receivedAt: Date,
        timePolicy: MeasurementTimePolicy = .init(),
        localTimeZone: @escaping @Sendable (_ deviceID: String) -> TimeZone? = { _ in nil }
    ) {
        self.topicDeviceID = topicDeviceID
        self.deviceField = deviceField
        self.receivedAt = receivedAt
        self.timePolicy = timePolicy
        self.localTimeZone = localTimeZone
    }
}

/// One payload format: turns a parsed JSON payload into normalised readings.
///
/// Decoders are pure: no I/O, no clock (the receive time comes in the context). The bytes have
/// already passed the size, UTF-8, JSON and repeated-key checks (``FormatDecoding``).
public protocol PayloadDecoder: Sendable {
    /// The format this decoder reads.
    var format: MessageFormat { get }

    /// Decodes one payload.
    ///
    /// - Returns: the readings (each accepted or rejected alone), device status and device events.
    ///   ``DecodedMessage/deviceID`` is the device the readings belong to.
    /// - Throws: ``Rejection`` when the message as a whole cannot be read (`unknown_format`,
    ///   `missing_field`, `device_mismatch`, …).
    func decode(_ root: JSONValue, context: DecodeContext) throws(Rejection) -> DecodedMessage
}

extension PayloadDecoder {
    /// Settles the message's device: the topic's, or the payload's (from ``DecodeContext/deviceField``
    /// or the format's own field). Both present and different: `device_mismatch`; neither: `missing_field`.
    func resolveDevice(_ root: JSONValue, payloadDevice: String?, context: DecodeContext) throws(Rejection) -> String {
        var named = payloadDevice
        if let path = context.deviceField {
            guard let value = root.at(path: path), let id = value.identifier else {
                throw Rejection(.missingField, "the configured device field is missing or not a string or integer")
            }
            named = id
        }
        switch (context.topicDeviceID, named) {
        case (let topic?, let payload?):
            guard topic == payload else {
                throw Rejection(.deviceMismatch, "the device in the payload differs from the device in the topic")
            }
            return topic
        case (let topic?, nil):
            return topic
        case (nil, let payload?):
            guard DeviceIdentifier.isValid(payload) else {
                throw Rejection(.badTopic, "the device id in the payload is not 1–128 characters from A–Z a–z 0–9 . _ : @ -")
            }
            return payload
        case (nil, nil):
            throw Rejection(.missingField, "neither the topic nor the payload names the device")
        }
    }
}

/// The rule for device ids (README "Commands"): 1–128 characters from `A–Z a–z 0–9 . _ : @ -`.
public enum DeviceIdentifier {
    public static func isValid(_ id: String) -> Bool {
        guard (1...128).contains(id.utf8.count) else { return false }
        return id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2E || b == 0x5F || b == 0x3A || b == 0x40 || b == 0x2D
        }
    }
}

extension JSONValue {
    /// The member at a dotted path (`data.ble_mac`); array elements by index (`records.0.id`).
    func at(path: String) -> JSONValue? {
        var current: JSONValue? = self
        for part in path.split(separator: ".") {
            switch current {
            case .object(let o)?: current = o[String(part)]
            case .array(let a)?:
                guard let i = Int(part), a.indices.contains(i) else { return nil }
                current = a[i]
            default: return nil
            }
        }
        return current
    }

    /// A string, or an integral number written without exponent (BodyTrace sends `deviceId` as a number).
    var identifier: String? {
        switch self {
        case .string(let s): return s.isEmpty ? nil : s
        case .number(let d) where d.isFinite && d == d.rounded() && abs(d) < 9.007e15: return String(Int64(d))
        default: return nil
        }
    }

    /// The members of an object, or nil.
    var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The elements of an array, or nil.
    var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// A boolean, also from the integers 0/1 and the strings "0"/"1"/"true"/"false".
    var flag: Bool? {
        switch self {
        case .bool(let b): return b
        case .number(let d): return d == 1 ? true : d == 0 ? false : nil
        case .string(let s):
            switch s.lowercased() {
            case "1", "true": return true
            case "0", "false": return false
            default: return nil
            }
        default: return nil
        }
    }
}

/// Builds the result list of a message reading by reading, with sentinels turned into events.
struct ReadingCollector {
    let deviceID: String
    var readings: [Result<Observation, Rejection>] = []
    var status: [DeviceStatusValue] = []
    var events: [DeviceEvent] = []
    var markers: [ReadingMarker] = []

    init(deviceID: String) { self.deviceID = deviceID }

    mutating func reject(_ rejection: Rejection) { readings.append(.failure(rejection)) }

    /// Adds one reading: parses the value with ``DeviceNumber``; a sentinel becomes a device event
    /// and a rejected reading, a number a checked ``Observation``.
    mutating func add(
        _ type: VitalType, _ value: JSONValue?, field: String, unit: String, in ucum: UCUMUnit, scale: Double = 1,
        time: Result<ReadingTime, Rejection>, flags: ObservationFlags = [], vendorID: String? = nil,
        sentinels: SentinelRules = .standard
    ) {
        var event: DeviceEvent?
        let result = Result { () throws(Rejection) -> Observation in
            guard let value else { throw Rejection(.missingField, "field '\(field)' is missing") }
            let number: Double
            switch try DeviceNumber.parse(value, field: field, type: type, rules: sentinels) {
            case .number(let n):
                number = n
            case .sentinel(let kind, let code):
                event = DeviceEvent(deviceID: deviceID, kind: kind, type: type, measuredAt: try? time.get().date, code: code)
                throw DeviceNumber.rejection(kind, code: code, field: field)
            }
            let t: ReadingTime
            switch time {
            case .success(let good):
                t = good
            case .failure(var problem):
                // The time is wrong, not the value: keep the value (timed by receipt) for a device
                // task, as the canonical decoder does, so that a critical value is not lost with the clock.
                if let receivedAt = problem.clockReceivedAt {
                    problem.clockObservation = try? Observation.make(
                        deviceID: deviceID, type: type, value: number, unit: unit, in: ucum, scale: scale,
                        measuredAt: receivedAt, flags: flags.union(.estimatedTime), timeSource: .receivedAt,
                        vendorReadingID: vendorID)
                }
                throw problem
            }
            return try Observation.make(
                deviceID: deviceID, type: type, value: number, unit: unit, in: ucum, scale: scale,
                measuredAt: t.date, flags: flags.union(t.flags), timeSource: t.source,
                localOffsetMinutes: t.offsetMinutes, vendorReadingID: vendorID)
        }
        if let event { events.append(event) }
        readings.append(result)
    }

    /// Adds a device-status value when `value` is a number (or numeric string); ignores it otherwise.
    mutating func status(_ name: DeviceStatusValue.Name, _ value: JSONValue?, scale: Double = 1, at: Date) {
        guard let value, let n = DeviceNumber.plain(value) else { return }
        status.append(DeviceStatusValue(deviceID: deviceID, name: name, value: n * scale, observedAt: at))
    }

    /// Marks the accepted readings from index `start` on as entered by hand (`source = manual`): they
    /// never count as days of data.
    mutating func markManual(from start: Int) {
        for i in start..<readings.count {
            if case .success(var o) = readings[i] {
                o.source = .manual
                readings[i] = .success(o)
            }
        }
    }

    func message(id: String? = nil) throws(Rejection) -> DecodedMessage {
        guard !readings.isEmpty || !status.isEmpty || !markers.isEmpty else {
            throw Rejection(.missingField, "the payload holds no reading")
        }
        var message = DecodedMessage(messageID: id, deviceID: deviceID, readings: readings, status: status, events: events)
        message.markers = markers
        return message
    }
}
