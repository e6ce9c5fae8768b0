import Foundation

/// A message after decoding: the readings it carried, each either accepted or rejected.
///
/// One rejected reading does not reject its siblings: they are stored, and it is dead-lettered alone.
public struct DecodedMessage: Sendable {
    /// The sender's optional message id (`message_id`), kept for tracing.
    public var messageID: String?
    /// The device that sent it.
    public var deviceID: String
    /// The readings in payload order.
    public var readings: [Result<Observation, Rejection>]
    /// Device-health values (battery, signal, perfusion index): kept as device status, never readings.
    public var status: [DeviceStatusValue]
    /// Error codes and range markers sent in place of values; each also has a rejected reading.
    public var events: [DeviceEvent]
    /// The payload format it was decoded from (`senml`, `tenovi`, …), stored with each reading.
    public var format: String?
    /// Flags sent apart from their readings (Tenovi `irregular_heartbeat`).
    public var markers: [ReadingMarker] = []
    /// A gateway heartbeat (Qube-Vital `HB_Msg`, `payload-formats.md` §1.11): the gateway is alive and
    /// sent nothing to store. It is acknowledged without any row: no reading, no device status, no
    /// dead letter (heartbeats arrive all the time, and the gateway itself is not an enrolled device).
    public var isHeartbeat = false

    public init(
        messageID: String?, deviceID: String, readings: [Result<Observation, Rejection>],
        status: [DeviceStatusValue] = [], events: [DeviceEvent] = []
    ) {
        self.messageID = messageID
        self.deviceID = deviceID
        self.readings = readings
        self.status = status
        self.events = events
        self.format = nil
    }
}

/// Decodes the canonical vitalsd message format, version 1.
///
/// Shape (UTF-8 JSON object), either an envelope
/// ```json
/// {"measured_at": "2026-11-28T07:10:00-06:00", "message_id": "optional",
///  "readings": [{"type": "systolic_bp", "value": 182, "unit": "mm[Hg]"}, ...]}
/// ```
/// where each reading may carry its own `measured_at` that overrides the envelope's, or one flat
/// reading `{"type": "glucose", "value": 52, "unit": "mg/dL", "measured_at": "..."}`.
/// An optional `device_id` member must equal the device in the topic. Unknown members are ignored.
public struct CanonicalMessageDecoder: Sendable {
    /// Time rules for `measured_at`.
    public var timePolicy: MeasurementTimePolicy
    /// Largest accepted payload, in bytes. Default 262,144 (256 KiB).
    public var maxPayloadBytes: Int

    public init(timePolicy: MeasurementTimePolicy = .init(), maxPayloadBytes: Int = 256 * 1024) {
        self.timePolicy = timePolicy
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// Decodes one payload.
    ///
    /// - Parameters:
    ///   - payload: the raw MQTT payload bytes.
    ///   - deviceID: the device id taken from the topic.
    ///   - receivedAt: when vitalsd received it; bounds future timestamps.
    /// - Returns: the message with one result per reading.
    /// - Throws: ``Rejection`` when the message as a whole cannot be read: `too_large`,
    ///   `invalid_utf8`, `malformed_json` (also for an object that repeats a key), `device_mismatch`,
    ///   `missing_field`.
    public func decode(payload: [UInt8], deviceID: String, receivedAt: Date) throws(Rejection) -> DecodedMessage {
        guard payload.count <= maxPayloadBytes else {
            throw Rejection(.tooLarge, "payload of \(payload.count) bytes exceeds limit of \(maxPayloadBytes)")
        }
        let root = try Self.parse(payload)
        return try decode(root: root, deviceID: deviceID, receivedAt: receivedAt)
    }

    /// The deepest nesting of arrays and objects a payload may have. The deepest real format, a FHIR
    /// transaction Bundle, nests about 8 levels; without a bound, a few kilobytes of `[[[[…` cost
    /// seconds to parse (the work per level grows with the depth).
    public static let maxNestingDepth = 32

    /// Checks that a payload is UTF-8 JSON, nested at most ``maxNestingDepth`` levels, in which no
    /// object repeats a member, and parses it.
    ///
    /// - Throws: ``Rejection`` `invalid_utf8`, `malformed_json`.
    public static func parse(_ payload: [UInt8]) throws(Rejection) -> JSONValue {
        // Most device payloads: ASCII, shallow, no escapes, no repeated member. Anything else takes
        // the full path below, which decides.
        if let root = FastJSON.parse(payload) { return root }
        return try parseFully(payload)
    }

    /// The full path of ``parse(_:)``: UTF-8, depth, Foundation's `JSONDecoder`, repeated members.
    static func parseFully(_ payload: [UInt8]) throws(Rejection) -> JSONValue {
        guard String(validating: payload, as: UTF8.self) != nil else {
            throw Rejection(.invalidUTF8, "payload of \(payload.count) bytes is not valid UTF-8")
        }
        guard nestingDepth(payload) <= maxNestingDepth else {
            throw Rejection(.malformedJSON, "payload nests arrays and objects deeper than \(maxNestingDepth) levels")
        }
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: Data(payload))
        } catch {
            throw Rejection(.malformedJSON, "payload of \(payload.count) bytes is not valid JSON")
        }
        guard !JSONValue.hasDuplicateKey(payload) else {
            throw Rejection(.malformedJSON, "an object in the payload names the same member twice")
        }
        return root
    }

    /// The deepest nesting of `[` and `{` outside strings (stops counting past the limit).
    static func nestingDepth(_ bytes: [UInt8]) -> Int {
        var depth = 0, deepest = 0, inString = false, i = 0
        while i < bytes.count {
            let b = bytes[i]
            if inString {
                if b == UInt8(ascii: "\\") { i += 1 } else if b == UInt8(ascii: "\"") { inString = false }
            } else if b == UInt8(ascii: "\"") {
                inString = true
            } else if b == UInt8(ascii: "[") || b == UInt8(ascii: "{") {
                depth += 1
                deepest = max(deepest, depth)
                if deepest > maxNestingDepth { return deepest }
            } else if b == UInt8(ascii: "]") || b == UInt8(ascii: "}") {
                depth -= 1
            }
            i += 1
        }
        return deepest
    }

    /// Decodes a payload already parsed by ``parse(_:)``.
    ///
    /// - Throws: ``Rejection`` `malformed_json` (not an object, `readings` not a non-empty array),
    ///   `device_mismatch`, `missing_field`.
    public func decode(root: JSONValue, deviceID: String, receivedAt: Date) throws(Rejection) -> DecodedMessage {
        guard case .object = root else {
            throw Rejection(.malformedJSON, "payload is JSON but not an object")
        }
        if let named = root["device_id"] {
            guard named.stringValue == deviceID else {
                throw Rejection(.deviceMismatch, "device_id in payload differs from the device in the topic")
            }
        }
        let messageID = root["message_id"]?.stringValue

        let items: [JSONValue]
        if let readings = root["readings"] {
            guard case .array(let list) = readings, !list.isEmpty else {
                throw Rejection(.malformedJSON, "field 'readings' is not a non-empty array")
            }
            items = list
        } else if root["type"] != nil {
            items = [root]
        } else {
            throw Rejection(.missingField, "payload has neither 'readings' nor 'type'")
        }

        var events: [DeviceEvent] = []
        let results = items.enumerated().map { index, item in
            Result { () throws(Rejection) -> Observation in
                try reading(item, index: index, envelope: root, deviceID: deviceID, receivedAt: receivedAt, events: &events)
            }
        }
        return DecodedMessage(messageID: messageID, deviceID: deviceID, readings: results, events: events)
    }

    /// One reading: time, type, then the value by ``DeviceNumber`` (``SentinelRules/canonical``): a
    /// sentinel (`"HI"`, 2047) becomes a device event and a `device_error`/`out_of_meter_range` rejection.
    private func reading(
        _ item: JSONValue, index: Int, envelope: JSONValue, deviceID: String, receivedAt: Date, events: inout [DeviceEvent]
    ) throws(Rejection) -> Observation {
        guard case .object = item else {
            throw Rejection(.malformedJSON, "reading \(index) is not an object")
        }
        guard let typeName = item["type"]?.stringValue else {
            throw Rejection(.missingField, "reading \(index) has no string field 'type'")
        }
        guard let value = item["value"] else {
            throw Rejection(.missingField, "reading \(index) has no field 'value'")
        }
        guard let timeJSON = item["measured_at"] ?? envelope["measured_at"] else {
            throw Rejection(.missingField, "reading \(index) has no 'measured_at'")
        }
        let measuredAt = try timePolicy.parse(timeJSON)
        let clockProblem: Rejection?
        do throws(Rejection) {
            try timePolicy.check(measuredAt, receivedAt: receivedAt)
            clockProblem = nil
        } catch {
            clockProblem = error
        }
        if let type = VitalType(rawValue: typeName),
           case .sentinel(let kind, let code) = try DeviceNumber.parse(value, field: "value", type: type, rules: .canonical) {
            if let clockProblem { throw clockProblem }
            events.append(DeviceEvent(deviceID: deviceID, kind: kind, type: type, measuredAt: measuredAt, code: code))
            throw DeviceNumber.rejection(kind, code: code, field: "value")
        }
        if var clockProblem {
            // The time is wrong, not the value: keep the value (timed by receipt) for a device task.
            var received = try Observation.make(
                deviceID: deviceID, typeName: typeName, value: value, unit: item["unit"], measuredAt: receivedAt)
            received.timeSource = .receivedAt
            received.flags.insert(.estimatedTime)
            clockProblem.clockObservation = received
            throw clockProblem
        }
        var observation = try Observation.make(
            deviceID: deviceID, typeName: typeName, value: value, unit: item["unit"], measuredAt: measuredAt)
        // The sender's offset is kept, so that the reading can be shown at the device's local time
        // (FHIR effectiveDateTime).
        observation.localOffsetMinutes = MeasurementTimePolicy.offsetMinutes(of: timeJSON)
        return observation
    }
}

/// Finds the device id in a topic, as the level that the subscription's single `+` matched.
///
/// With the filter `devices/+/readings`, the topic `devices/cuff-17/readings` names device `cuff-17`.
public struct DeviceTopicFilter: Sendable, Hashable {
    /// The MQTT topic filter, e.g. `devices/+/readings`.
    public let filter: String
    private let levels: [Substring]
    /// For a filter with one `+` and no `#` (`devices/+/readings`): the bytes before the `+` level
    /// with its `/` (`devices/`) and after it (`/readings`), for ``deviceID(in:)`` without splitting.
    private let around: (prefix: [UInt8], suffix: [UInt8])?

    /// Whether the filter has a `+` level that names the device.
    public var namesDevice: Bool { levels.contains("+") }

    /// - Parameter deviceInTopic: true (the default) when the device id must come from the topic:
    ///   the filter then needs exactly one `+`; false for a subscription whose device id is in the
    ///   payload: the filter may then have no `+`, or one.
    /// - Throws: ``Rejection`` with reason `bad_topic` if the filter has no `+` level (when required)
    ///   or more than one.
    public init(_ filter: String, deviceInTopic: Bool = true) throws(Rejection) {
        self.filter = filter
        self.levels = filter.split(separator: "/", omittingEmptySubsequences: false)
        let plus = levels.filter({ $0 == "+" }).count
        guard plus == 1 || (!deviceInTopic && plus == 0) else {
            throw Rejection(.badTopic, "topic filter '\(filter)' must have exactly one '+' level for the device id")
        }
        if plus == 1, !levels.contains("#"), let k = levels.firstIndex(of: "+") {
            let before = levels[..<k].map { $0 + "/" }.joined()
            let after = levels[(k + 1)...].map { "/" + $0 }.joined()
            around = (Array(before.utf8), Array(after.utf8))
        } else {
            around = nil
        }
    }

    public static func == (a: Self, b: Self) -> Bool { a.filter == b.filter && a.levels == b.levels }

    public func hash(into hasher: inout Hasher) { hasher.combine(filter) }

    /// True when `topic` matches the filter (MQTT matching: `+` one level, `#` the rest).
    public func matches(_ topic: String) -> Bool {
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
        for (i, level) in levels.enumerated() {
            if level == "#" { return true }
            guard i < parts.count else { return false }
            if level != "+" && level != parts[i] { return false }
        }
        return parts.count == levels.count
    }

    /// True when some topic matches both this filter and `other` (MQTT 3.1.1 §4.7: `+` one level,
    /// `#` the rest, including the parent level itself).
    public func overlaps(_ other: DeviceTopicFilter) -> Bool {
        let (a, b) = (levels, other.levels)
        var i = 0
        while i < a.count, i < b.count {
            if a[i] == "#" || b[i] == "#" { return true }
            if a[i] != "+", b[i] != "+", a[i] != b[i] { return false }
            i += 1
        }
        if a.count == b.count { return true }
        // The longer filter matches a topic as short as the other only through a final `#`.
        return (a.count > b.count ? a : b)[i] == "#"
    }

    /// The device id in `topic`, or `nil` if the topic does not match this filter.
    public func deviceID(in topic: String) -> String? {
        if let (prefix, suffix) = around {
            // The level between the prefix and the suffix, if it is one non-empty level.
            var topic = topic
            return topic.withUTF8 { bytes -> String? in
                guard bytes.count > prefix.count + suffix.count,
                      bytes.starts(with: prefix), bytes[(bytes.count - suffix.count)...].elementsEqual(suffix)
                else { return nil }
                let level = bytes[prefix.count..<(bytes.count - suffix.count)]
                guard !level.contains(UInt8(ascii: "/")) else { return nil }
                return String(decoding: level, as: UTF8.self)
            }
        }
        let parts = topic.split(separator: "/", omittingEmptySubsequences: false)
        var device: Substring?
        for (i, level) in levels.enumerated() {
            if level == "#" { return device.map(String.init) }
            guard i < parts.count else { return nil }
            if level == "+" {
                guard !parts[i].isEmpty else { return nil }
                device = parts[i]
            } else if level != parts[i] {
                return nil
            }
        }
        guard parts.count == levels.count else { return nil }
        return device.map(String.init)
    }
}
