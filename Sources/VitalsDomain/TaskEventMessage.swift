import Foundation

/// The delivered form of a task event, the same from both storage backends: its `event_id`, its
/// JSON body (README, "Task events"), and the JSON of a task reading as stored.
public enum TaskEventMessage {
    /// A task event's `event_id`, the receivers' idempotency key: `task-event-<row id>-<incarnation>`,
    /// e.g. `task-event-42-3f09a1c2b7de`. The row id alone is not unique for ever: after a restore
    /// from a backup, SQLite counts on from the copy's highest id, so events raised after the restore
    /// would repeat the ids of events delivered after the backup was taken, and a receiver that drops
    /// repeats would drop them. The incarnation is new each time the database is opened, which a
    /// restore always involves.
    public static func eventID(_ id: Int64, incarnation: String) -> String {
        "task-event-\(id)-\(incarnation)"
    }

    /// A new incarnation: 12 random hexadecimal digits (48 bits), for each opening of a store.
    public static func newIncarnation() -> String {
        let digits = String(UInt64.random(in: 0..<(1 << 48)), radix: 16)
        return String(repeating: "0", count: 12 - digits.count) + digits
    }

    /// The delivered form of a task event (README, "Task events"): FHIR R4 Task vocabulary where it
    /// fits, times in UTC with milliseconds, the task's latest and worst readings with their
    /// measurement times. Carries values, so it is PHI for the receiving system.
    public static func body(eventID: String, task t: CareTask, event: TaskEventRecord) -> String {
        var json = TaskEventJSONWriter()
        json.begin()
        json.field("event_id", eventID)
        json.field("event", event.kind.rawValue)
        json.field("at", isoMilliseconds(event.at))
        json.field("actor", event.actor)
        json.field("detail", event.detail)
        json.key("task")
        json.begin()
        json.field("id", t.id)
        json.field("patient_id", t.patientID)
        json.field("kind", t.kind.rawValue)
        json.field("condition", t.vital)
        json.field("direction", t.direction.rawValue)
        json.field("priority", t.priority.rawValue)
        json.field("fhir_priority", t.priority.fhirPriority)
        json.field("status", t.status.rawValue)
        json.field("fhir_status", t.status.fhirStatus)
        json.field("reason", t.reason)
        json.field("occurrences", Int64(t.occurrences))
        json.field("escalation_level", Int64(t.escalationLevel))
        json.field("escalated_to", t.escalatedTo)
        json.field("confirmation", t.confirmation?.rawValue)
        json.field("data_stale", t.dataStale)
        json.field("opened_at", isoMilliseconds(t.openedAt))
        json.field("acknowledged_by", t.acknowledgedBy)
        json.field("resolved_by", t.resolvedBy)
        json.field("owner", t.owner)
        json.field("disposition", t.disposition?.rawValue)
        for (name, reading) in [("latest", t.latest), ("worst", t.worst)] {
            json.key(name)
            if let reading {
                json.begin()
                json.field("reading_id", reading.readingID)
                json.field("summary", reading.summary)
                json.field("measured_at", isoMilliseconds(reading.measuredAt))
                json.end()
            } else {
                json.null()
            }
        }
        json.field("suppressed_breaches", Int64(t.suppressedBreaches))
        json.field("version", Int64(t.version))
        json.end()
        json.end()
        return json.text
    }

    /// `2026-11-28T13:10:05.120Z`.
    public static func isoMilliseconds(_ date: Date) -> String {
        // By hand (CivilCalendar): the format style costs more than the rest of an outbox row.
        let ms = epochMilliseconds(date)
        let days = Int64((Double(ms) / 86_400_000).rounded(.down))
        let inDay = ms - days * 86_400_000
        let (year, month, day) = CivilCalendar.civil(fromDays: days)
        let pad = CivilCalendar.pad
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(inDay / 3_600_000, 2)):\(pad(inDay / 60_000 % 60, 2)):"
            + "\(pad(inDay / 1_000 % 60, 2)).\(pad(inDay % 1_000, 3))Z"
    }

    /// A task reading as stored in `acknowledged_worst`: `{"reading_id":…,"summary":…,"measured_at":…,
    /// "severity":…,"level":…}` (JSONEncoder, sorted keys).
    public static func readingJSON(_ r: TaskReading) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: (try? encoder.encode(r)) ?? Data("null".utf8), as: UTF8.self)
    }

    public static func reading(json: String?) -> TaskReading? {
        guard let json else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return try? decoder.decode(TaskReading.self, from: Data(json.utf8))
    }

}

/// A small JSON writer for task event bodies: objects, strings, integers, booleans and null,
/// escaped per RFC 8259. Faster than an encoder, and with a fixed member order.
struct TaskEventJSONWriter {
    private(set) var text = ""
    /// Whether the object being written has no member yet, innermost last.
    private var empty: [Bool] = []

    /// Starts an object; its members follow (``key(_:)``, the `field` methods), then ``end()``.
    mutating func begin() {
        text += "{"
        empty.append(true)
    }

    /// Ends the innermost object.
    mutating func end() {
        empty.removeLast()
        text += "}"
    }

    /// Starts a member; its value follows (``begin()`` or ``null()``).
    mutating func key(_ name: String) {
        if empty[empty.count - 1] { empty[empty.count - 1] = false } else { text += "," }
        string(name)
        text += ":"
    }

    mutating func null() { text += "null" }

    mutating func field(_ name: String, _ value: String?) {
        key(name)
        if let value { string(value) } else { null() }
    }

    mutating func field(_ name: String, _ value: Int64?) {
        key(name)
        text += value.map(String.init) ?? "null"
    }

    mutating func field(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }

    private mutating func string(_ s: String) {
        text += "\""
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            text += s
            text += "\""
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}

/// One task event waiting in the outbox, as delivered to other systems.
///
/// `body` is a JSON object (documented in the README, "Task events"):
/// `{"event_id": "task-event-42-3f09a1c2b7de", "event": "opened", "at": "2026-11-28T13:10:00.000Z", "actor": "vitalsd",
///   "detail": "critical", "task": {"id": 7, "patient_id": "p-100", "kind": "threshold",
///   "condition": "blood_pressure", "direction": "high", "priority": "critical", "fhir_priority": "stat",
///   "status": "open", "fhir_status": "requested", "reason": "…", "occurrences": 1, "escalation_level": 0,
///   "confirmation": "pending", "data_stale": false, "opened_at": "…", "acknowledged_by": null, "resolved_by": null}}`.
/// `event_id` is the idempotency key: a receiver that has seen it can ignore a repeat.
public struct OutboxEvent: Sendable, Hashable {
    /// The task event's row id; events are delivered in this order.
    public var id: Int64
    /// The body's `event_id` (`task-event-<id>-<incarnation>`), unique also across restores from a
    /// backup; the webhook's `Idempotency-Key`.
    public var eventID: String
    public var patientID: String
    /// UTF-8 JSON.
    public var body: String

    /// An event from its parts.
    public init(id: Int64, eventID: String, patientID: String, body: String) {
        self.id = id
        self.eventID = eventID
        self.patientID = patientID
        self.body = body
    }
}
