import Foundation
import VitalsDomain

/// A reading's measurement time and how it was found.
public struct ReadingTime: Sendable, Hashable {
    public var date: Date
    public var source: TimeSource
    /// `estimated_time`, `local_time_assumed` as they apply.
    public var flags: ObservationFlags
    /// The device's local UTC offset, minutes east of UTC, when the payload gave one.
    public var offsetMinutes: Int?

    public init(date: Date, source: TimeSource = .device, flags: ObservationFlags = [], offsetMinutes: Int? = nil) {
        self.date = date
        self.source = source
        self.flags = flags
        self.offsetMinutes = offsetMinutes
    }
}

/// The time rules of every format (failure-modes F9, F22; `payload-formats.md` §0).
///
/// - **Epoch numbers** (or numeric strings): seconds or milliseconds by magnitude. A value of at least
///   100,000,000,000 is milliseconds (as seconds it would be after the year 5138; as milliseconds it is
///   after 1973-03-03), a smaller one seconds. Anything from 100,000,000,000,000 on (microseconds,
///   nanoseconds) is refused. Formats whose unit is documented (BodyTrace, Telli: ms; Withings,
///   iHealth: s; SenML: s) still go through this rule, so a device that sends the other unit is read
///   right rather than landing in 1970 or the year 40,000.
/// - **Offsets** are given per format in hours (Tenovi `timezone_offset`), minutes (Telli
///   `tzOffsetMinutes`), seconds (Impilo) or `±hhmm`/`±hh:mm` text (iHealth); they are recorded as the
///   reading's local offset in minutes.
/// - **Naive local times** (no offset, no `Z`) are read in the subscription's `timezone`, else the
///   patient's, and flagged `local_time_assumed` (time source `device_local`). A time inside a
///   daylight-saving gap, or with no zone known, is `bad_timestamp`.
/// - **Unset clocks**: a time before 2000-01-01T00:00:00Z, or within the first day of 2000 (the reset
///   value of many real-time clocks), is `bad_timestamp`; so is a time more than
///   `ingest.max_future_skew_seconds` after receipt.
/// - **Receive time** is used only when a format allows the device to send no time (a SenML record
///   with neither `bt` nor `t`); the reading is then flagged `estimated_time`, time source `received_at`.
public enum DeviceTime {
    /// The first instant past the unset-clock day: 2000-01-02T00:00:00Z.
    static let unsetClockDayEnd = Date(timeIntervalSince1970: 946_771_200)

    /// Epoch seconds or milliseconds, by magnitude.
    /// - Throws: ``Rejection`` `bad_timestamp`.
    public static func epoch(_ json: JSONValue?, field: String, context: DecodeContext) throws(Rejection) -> ReadingTime {
        guard let json else { throw Rejection(.missingField, "field '\(field)' is missing") }
        guard let n = DeviceNumber.plain(json) else {
            throw Rejection(.badTimestamp, "field '\(field)' is not an epoch number")
        }
        return ReadingTime(date: try checked(epochDate(n, field: field), context: context))
    }

    /// The instant of an epoch number in seconds or milliseconds (rule above), unchecked.
    static func epochDate(_ n: Double, field: String) throws(Rejection) -> Date {
        guard n.isFinite, abs(n) < 1e14 else {
            throw Rejection(.badTimestamp, "field '\(field)' is neither epoch seconds nor milliseconds")
        }
        return Date(timeIntervalSince1970: abs(n) >= 1e11 ? n / 1000 : n)
    }

    /// An RFC 3339 date-time with offset, or a naive local date-time read in the local zone.
    /// - Throws: ``Rejection`` `bad_timestamp`.
    public static func text(
        _ json: JSONValue?, field: String, deviceID: String, context: DecodeContext, naiveIsUTC: Bool = false
    ) throws(Rejection) -> ReadingTime {
        guard let json else { throw Rejection(.missingField, "field '\(field)' is missing") }
        guard case .string(let s) = json else { throw Rejection(.badTimestamp, "field '\(field)' is not a date-time string") }
        if let d = MeasurementTimePolicy.parseRFC3339(s) {
            return ReadingTime(date: try checked(d, context: context), offsetMinutes: offsetMinutes(ofRFC3339: s))
        }
        guard let local = naive(s) else {
            throw Rejection(.badTimestamp, "field '\(field)' is not a date-time (RFC 3339, or a local date and time)")
        }
        if naiveIsUTC {
            return ReadingTime(date: try checked(try instant(local, in: TimeZone(identifier: "UTC")!, field: field), context: context))
        }
        guard let zone = context.localTimeZone(deviceID) else {
            throw Rejection(.badTimestamp, "field '\(field)' has no UTC offset and no time zone is configured for the device")
        }
        return ReadingTime(
            date: try checked(try instant(local, in: zone, field: field), context: context),
            source: .deviceLocal, flags: .localTimeAssumed)
    }

    /// A local date-time without offset and the device's UTC offset sent beside it (Smart Meter
    /// `date_recorded` with `time_zone_offset`): the instant is the wall clock minus the offset, and
    /// the offset is recorded. Without an offset it is a naive local time (``text(_:field:deviceID:context:naiveIsUTC:)``);
    /// a string with its own RFC 3339 offset keeps that one.
    /// - Parameter offsetSeconds: seconds east of UTC, or nil.
    /// - Throws: ``Rejection`` `bad_timestamp`, `missing_field`.
    public static func local(
        _ json: JSONValue?, field: String, offsetSeconds: Int?, deviceID: String, context: DecodeContext
    ) throws(Rejection) -> ReadingTime {
        guard let offsetSeconds, let zone = TimeZone(secondsFromGMT: offsetSeconds), case .string(let s)? = json,
              MeasurementTimePolicy.parseRFC3339(s) == nil, let wall = naive(s) else {
            return try text(json, field: field, deviceID: deviceID, context: context)
        }
        return ReadingTime(date: try checked(try instant(wall, in: zone, field: field), context: context), offsetMinutes: offsetSeconds / 60)
    }

    /// The receive time, flagged as such.
    public static func received(_ context: DecodeContext) -> ReadingTime {
        ReadingTime(date: context.receivedAt, source: .receivedAt, flags: .estimatedTime)
    }

    /// Applies the plausibility rules (unset clock, future skew).
    /// - Throws: ``Rejection`` `bad_timestamp` with ``Rejection/clockReceivedAt`` set: the device's
    ///   clock is wrong, so ``ReadingCollector`` keeps the value, timed by receipt, for a device task.
    public static func checked(_ date: Date, context: DecodeContext) throws(Rejection) -> Date {
        try context.timePolicy.check(date, receivedAt: context.receivedAt)
        if date < unsetClockDayEnd {
            var problem = Rejection(.badTimestamp, "measured_at is on 2000-01-01, the reset value of unset device clocks")
            problem.clockReceivedAt = context.receivedAt
            throw problem
        }
        return date
    }

    /// Parses a `±hh:mm`, `±hhmm` or `±hh` offset; seconds east of UTC.
    public static func offsetSeconds(text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard let sign = t.first, sign == "+" || sign == "-" else { return nil }
        let digits = t.dropFirst().filter { $0 != ":" }
        guard digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.count == 4 || digits.count == 2 else { return nil }
        let h = Int(digits.prefix(2))!, m = digits.count == 4 ? Int(digits.suffix(2))! : 0
        guard h <= 14, m < 60 else { return nil }
        return (sign == "-" ? -1 : 1) * (h * 3600 + m * 60)
    }

    static func offsetMinutes(ofRFC3339 s: String) -> Int? {
        let b = Array(s.utf8)
        guard b.count >= 6 else { return nil }
        if b.last == 0x5A || b.last == 0x7A { return 0 }
        return offsetSeconds(text: String(decoding: b.suffix(6), as: UTF8.self)).map { $0 / 60 }
    }

    /// Date and time parts of `YYYY-MM-DD[T ]hh:mm[:ss[.fraction]]` without offset.
    struct Naive: Hashable {
        var year, month, day, hour, minute, second: Int
        var fraction: Double
    }

    static func naive(_ s: String) -> Naive? {
        let b = Array(s.utf8)
        func num(_ at: Int, _ n: Int) -> Int? {
            guard at + n <= b.count else { return nil }
            var v = 0
            for k in at..<(at + n) {
                guard b[k] >= 0x30, b[k] <= 0x39 else { return nil }
                v = v * 10 + Int(b[k] - 0x30)
            }
            return v
        }
        guard b.count >= 16, b.count <= 40, let y = num(0, 4), b[4] == 0x2D, let mo = num(5, 2), b[7] == 0x2D,
              let d = num(8, 2), b[10] == 0x54 || b[10] == 0x20, let h = num(11, 2), b[13] == 0x3A, let mi = num(14, 2)
        else { return nil }
        var sec = 0
        var fraction = 0.0
        var i = 16
        if i < b.count {
            guard b[i] == 0x3A, let s2 = num(17, 2) else { return nil }
            sec = s2
            i = 19
            if i < b.count {
                guard b[i] == 0x2E, i + 1 < b.count else { return nil }
                var scale = 0.1
                for k in (i + 1)..<b.count {
                    guard b[k] >= 0x30, b[k] <= 0x39 else { return nil }
                    fraction += Double(b[k] - 0x30) * scale
                    scale /= 10
                }
            }
        }
        guard (1...12).contains(mo), d >= 1, d <= MeasurementTimePolicy.days(inMonth: mo, of: y), h <= 23, mi <= 59, sec <= 59
        else { return nil }
        return Naive(year: y, month: mo, day: d, hour: h, minute: mi, second: sec, fraction: fraction)
    }

    /// Date and time parts of the US format `M/D/YYYY h:mm:ss AM|PM` (LibreLinkUp, `payload-formats.md`
    /// §1.8), strictly: month and day of one or two digits, a four-digit year, an hour 1–12 of one or
    /// two digits, two-digit minutes and seconds, one space before `AM` or `PM` (upper case). 12 AM is
    /// midnight, 12 PM noon. Anything else, an impossible date included, is nil.
    static func usDateTime(_ s: String) -> Naive? {
        let b = Array(s.utf8)
        guard b.count <= 22 else { return nil }
        var i = 0
        func number(maxDigits: Int, exactly: Bool = false) -> Int? {
            var v = 0, n = 0
            while i < b.count, n < maxDigits, b[i] >= 0x30, b[i] <= 0x39 {
                v = v * 10 + Int(b[i] - 0x30)
                i += 1
                n += 1
            }
            return n == 0 || (exactly && n != maxDigits) ? nil : v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let month = number(maxDigits: 2), expect(0x2F), let day = number(maxDigits: 2), expect(0x2F),
              let year = number(maxDigits: 4, exactly: true), expect(0x20), let hour12 = number(maxDigits: 2), expect(0x3A),
              let minute = number(maxDigits: 2, exactly: true), expect(0x3A), let second = number(maxDigits: 2, exactly: true),
              expect(0x20), i + 2 == b.count, b[i] == 0x41 || b[i] == 0x50, b[i + 1] == 0x4D
        else { return nil }
        let pm = b[i] == 0x50
        guard (1...12).contains(month), (1...12).contains(hour12), minute <= 59, second <= 59, day >= 1,
              day <= MeasurementTimePolicy.days(inMonth: month, of: year) else { return nil }
        let hour = hour12 % 12 + (pm ? 12 : 0)
        return Naive(year: year, month: month, day: day, hour: hour, minute: minute, second: second, fraction: 0)
    }

    /// The instant of a naive time in a zone; a time skipped by daylight saving is refused.
    static func instant(_ n: Naive, in zone: TimeZone, field: String) throws(Rejection) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let c = DateComponents(year: n.year, month: n.month, day: n.day, hour: n.hour, minute: n.minute, second: n.second)
        guard let date = calendar.date(from: c) else {
            throw Rejection(.badTimestamp, "field '\(field)' is not a valid local date-time")
        }
        let back = calendar.dateComponents([.hour, .minute], from: date)
        guard back.hour == n.hour, back.minute == n.minute else {
            throw Rejection(.badTimestamp, "field '\(field)' is a local time skipped by daylight saving in the configured time zone")
        }
        return date.addingTimeInterval(n.fraction)
    }
}
