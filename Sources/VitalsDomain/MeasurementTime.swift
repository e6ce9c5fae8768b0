import Foundation

/// Rules for a reading's measurement time (failure-modes F9, F22).
///
/// Accepted forms:
/// - an RFC 3339 string with a UTC offset or `Z`, with or without fractional seconds
///   (`2026-11-28T07:10:00-06:00`, `2026-11-28T13:10:00.250Z`); a time without an offset is rejected,
///   because its instant is unknown;
/// - a JSON integer of epoch **milliseconds** (`1764335400000`). Epoch seconds read as milliseconds
///   land in January 1970 and are rejected by the lower bound, never stored.
///
/// A time is plausible when it is not before 2000-01-01T00:00:00Z (unset device clocks) and not
/// more than `maxFutureSkew` seconds after the time vitalsd received the message.
public struct MeasurementTimePolicy: Sendable, Hashable {
    /// How far in the future, in seconds, a measurement may be relative to receipt. Default 600 s.
    public var maxFutureSkew: TimeInterval
    /// The earliest accepted measurement time. Default 2000-01-01T00:00:00Z.
    public var earliest: Date

    public init(maxFutureSkew: TimeInterval = 600, earliest: Date = Date(timeIntervalSince1970: 946_684_800)) {
        self.maxFutureSkew = maxFutureSkew
        self.earliest = earliest
    }

    /// Parses and checks a `measured_at` value.
    ///
    /// - Parameters:
    ///   - json: the decoded JSON value of `measured_at`.
    ///   - receivedAt: when vitalsd received the message.
    /// - Returns: the measurement instant.
    /// - Throws: ``Rejection`` with reason `bad_timestamp`.
    public func measurementTime(from json: JSONValue, receivedAt: Date) throws(Rejection) -> Date {
        let date: Date
        switch json {
        case .string(let s):
            guard let d = Self.parseRFC3339(s) else {
                throw Rejection(.badTimestamp, "measured_at is not RFC 3339 with a UTC offset")
            }
            date = d
        case .number(let n):
            guard n.rounded() == n, abs(n) < 1e15 else {
                throw Rejection(.badTimestamp, "measured_at number is not an integer of epoch milliseconds")
            }
            date = Date(timeIntervalSince1970: n / 1000)
        default:
            throw Rejection(.badTimestamp, "measured_at is neither an RFC 3339 string nor epoch milliseconds")
        }
        try check(date, receivedAt: receivedAt)
        return date
    }

    /// Checks the plausibility bounds of an already parsed time.
    /// - Throws: ``Rejection`` with reason `bad_timestamp`.
    public func check(_ date: Date, receivedAt: Date) throws(Rejection) {
        if date < earliest {
            throw Rejection(.badTimestamp, "measured_at is before 2000-01-01 (device clock unset, or seconds sent as milliseconds)")
        }
        if date.timeIntervalSince(receivedAt) > maxFutureSkew {
            throw Rejection(.badTimestamp, "measured_at is more than \(Int(maxFutureSkew)) s in the future")
        }
    }

    private static let withFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let withoutFraction = Date.ISO8601FormatStyle()

    /// Parses an RFC 3339 date-time that carries `Z` or a `±hh:mm` offset.
    public static func parseRFC3339(_ s: String) -> Date? {
        // An offset or Z must follow the time: reject naive local times explicitly.
        guard let tIndex = s.firstIndex(where: { $0 == "T" || $0 == "t" || $0 == " " }) else { return nil }
        let timePart = s[s.index(after: tIndex)...]
        guard timePart.contains(where: { $0 == "Z" || $0 == "z" || $0 == "+" || $0 == "-" }) else { return nil }
        let normalised = s.replacingOccurrences(of: " ", with: "T").uppercased()
        if let d = try? withoutFraction.parse(normalised) { return d }
        if let d = try? withFraction.parse(normalised) { return d }
        return nil
    }
}

/// Wall-clock date-times without an offset (`2015-06-06 16:50:27`), read in a given time zone.
///
/// Used for CSV files whose times are local. In a daylight-saving fall-back hour, the earlier
/// of the two instants is taken. A time inside a spring-forward gap does not exist in the zone:
/// ``parse(_:in:)`` returns nil for it and ``isInDaylightSavingGap(_:in:)`` says why; such a time
/// usually means the device's clock does not follow daylight saving, and the file should be read
/// with a fixed offset (``fixedOffsetZone(_:)``).
public enum LocalDateTime {
    /// A fixed-offset zone for `±hh:mm` text (e.g. `-05:00`), or nil for other text.
    public static func fixedOffsetZone(_ text: String) -> TimeZone? {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard t.count == 6, let sign = t.first, sign == "+" || sign == "-",
              t[t.index(t.startIndex, offsetBy: 3)] == ":",
              let h = Int(t.dropFirst().prefix(2)), let m = Int(t.suffix(2)), h <= 14, m < 60
        else { return nil }
        return TimeZone(secondsFromGMT: (sign == "-" ? -1 : 1) * (h * 3600 + m * 60))
    }

    /// True when `text` is a well-formed local time that does not exist in `timeZone`
    /// (skipped by a spring-forward transition).
    public static func isInDaylightSavingGap(_ text: String, in timeZone: TimeZone) -> Bool {
        guard let (components, calendar) = components(text, timeZone), let date = calendar.date(from: components) else {
            return false
        }
        let back = calendar.dateComponents([.hour, .minute], from: date)
        return back.hour != components.hour || back.minute != components.minute
    }

    /// Parses `YYYY-MM-DD HH:MM[:SS]` (or with `T`) in `timeZone`.
    /// - Returns: the instant, or `nil` if the text is not such a date-time or does not exist in the zone.
    public static func parse(_ text: String, in timeZone: TimeZone) -> Date? {
        guard let (components, calendar) = components(text, timeZone), let date = calendar.date(from: components) else {
            return nil
        }
        let back = calendar.dateComponents([.hour, .minute], from: date)
        guard back.hour == components.hour, back.minute == components.minute else { return nil }
        return date
    }

    private static func components(_ text: String, _ timeZone: TimeZone) -> (DateComponents, Calendar)? {
        let parts = text.trimmingCharacters(in: .whitespaces).split(whereSeparator: { $0 == " " || $0 == "T" })
        guard parts.count == 2 else { return nil }
        let day = parts[0].split(separator: "-").compactMap { Int($0) }
        let time = parts[1].split(separator: ":").compactMap { Int($0) }
        guard day.count == 3, time.count == 2 || time.count == 3 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let components = DateComponents(
            year: day[0], month: day[1], day: day[2],
            hour: time[0], minute: time[1], second: time.count == 3 ? time[2] : 0)
        guard (1...12).contains(day[1]), (1...31).contains(day[2]), (0...23).contains(time[0]),
            (0...59).contains(time[1]), (0...60).contains(components.second ?? 0)
        else { return nil }
        return (components, calendar)
    }
}
