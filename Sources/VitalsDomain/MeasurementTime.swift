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
/// A time is plausible when it is not before 2000-01-02T00:00:00Z (2000-01-01 is the day unset device
/// clocks start from, `failure-modes.md` F22) and not
/// more than `maxFutureSkew` seconds after the time vitalsd received the message.
public struct MeasurementTimePolicy: Sendable, Hashable {
    /// How far in the future, in seconds, a measurement may be relative to receipt. Default 600 s.
    public var maxFutureSkew: TimeInterval
    /// The earliest accepted measurement time. Default 2000-01-02T00:00:00Z.
    public var earliest: Date

    public init(maxFutureSkew: TimeInterval = 600, earliest: Date = Date(timeIntervalSince1970: 946_771_200)) {
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
        let date = try parse(json)
        try check(date, receivedAt: receivedAt)
        return date
    }

    /// Parses a `measured_at` value without checking its plausibility.
    /// - Throws: ``Rejection`` with reason `bad_timestamp` for a value that is no time at all.
    public func parse(_ json: JSONValue) throws(Rejection) -> Date {
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
        return date
    }

    /// Checks the plausibility bounds of an already parsed time.
    /// - Throws: ``Rejection`` with reason `bad_timestamp`.
    /// The rejection carries ``Rejection/clockReceivedAt``: the time was read, the clock is wrong.
    public func check(_ date: Date, receivedAt: Date) throws(Rejection) {
        var problem: Rejection?
        if date < earliest {
            problem = Rejection(.badTimestamp, "measured_at is before 2000-01-02 (device clock unset, or seconds sent as milliseconds)")
        } else if date.timeIntervalSince(receivedAt) > maxFutureSkew {
            problem = Rejection(.badTimestamp, "measured_at is more than \(Int(maxFutureSkew)) s in the future")
        }
        if var problem {
            problem.clockReceivedAt = receivedAt
            throw problem
        }
    }

    /// The UTC offset an RFC 3339 `measured_at` was written with, in minutes east of UTC (`-06:00` → -360,
    /// `Z` → 0), or nil for an epoch number or text that ``parseRFC3339(_:)`` refuses.
    public static func offsetMinutes(of json: JSONValue) -> Int? {
        guard case .string(let text) = json, parseRFC3339(text) != nil else { return nil }
        let b = Array(text.utf8)
        if b.last == 0x5A || b.last == 0x7A { return 0 }
        let tail = b.suffix(6)
        let hours = Int(tail[tail.startIndex + 1] - 0x30) * 10 + Int(tail[tail.startIndex + 2] - 0x30)
        let minutes = Int(tail[tail.startIndex + 4] - 0x30) * 10 + Int(tail[tail.startIndex + 5] - 0x30)
        return (hours * 60 + minutes) * (tail.first == 0x2D ? -1 : 1)
    }

    /// Parses an RFC 3339 date-time, strictly: `YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)`.
    ///
    /// Every field is range-checked, so an impossible time is refused instead of rolled over:
    /// `2026-02-30`, `2026-02-29` (not a leap year), `24:00:00`, `12:61:00` and an offset without a
    /// colon (`+0100`) give nil. Leap seconds (`23:59:60`) are refused too. `T` may be `t` or a space;
    /// fractions beyond nanoseconds are truncated.
    /// - Returns: the instant, or nil.
    public static func parseRFC3339(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func number(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= b.count else { return nil }
            var value = 0
            for k in at..<(at + count) {
                guard b[k] >= 0x30 && b[k] <= 0x39 else { return nil }
                value = value * 10 + Int(b[k] - 0x30)
            }
            return value
        }
        guard b.count >= 20, let year = number(0, 4), b[4] == 0x2D, let month = number(5, 2), b[7] == 0x2D,
              let day = number(8, 2), b[10] == 0x54 || b[10] == 0x74 || b[10] == 0x20,
              let hour = number(11, 2), b[13] == 0x3A, let minute = number(14, 2), b[16] == 0x3A,
              let second = number(17, 2)
        else { return nil }
        var i = 19
        var nanoseconds = 0
        if i < b.count && b[i] == 0x2E {
            i += 1
            let first = i
            var scale = 100_000_000
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                nanoseconds += Int(b[i] - 0x30) * scale
                scale /= 10
                i += 1
            }
            guard i > first else { return nil }
        }
        guard i < b.count else { return nil }
        var offsetSeconds = 0
        switch b[i] {
        case 0x5A, 0x7A:  // Z z
            i += 1
        case 0x2B, 0x2D:  // + -
            guard let oh = number(i + 1, 2), i + 3 < b.count, b[i + 3] == 0x3A, let om = number(i + 4, 2),
                  oh <= 23, om <= 59 else { return nil }
            offsetSeconds = (oh * 3600 + om * 60) * (b[i] == 0x2D ? -1 : 1)
            i += 6
        default:
            return nil
        }
        guard i == b.count, (1...12).contains(month), day >= 1, day <= daysInMonth(year, month),
              hour <= 23, minute <= 59, second <= 59
        else { return nil }
        let days = daysFromCivil(year, month, day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds) + Double(nanoseconds) / 1e9)
    }

    /// Days in a month of the proleptic Gregorian calendar (1–12; 0 for another month number).
    public static func days(inMonth month: Int, of year: Int) -> Int {
        (1...12).contains(month) ? daysInMonth(year, month) : 0
    }

    /// Days in a month of the proleptic Gregorian calendar.
    static func daysInMonth(_ year: Int, _ month: Int) -> Int { Int(CivilCalendar.daysIn(month: Int64(month), year: Int64(year))) }

    /// Days from 1970-01-01 to a Gregorian date.
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        Int(CivilCalendar.days(fromCivil: Int64(year), Int64(month), Int64(day)))
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
