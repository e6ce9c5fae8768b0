import VitalsDomain

/// FHIR `dateTime`/`instant` text for stored epoch milliseconds, and the ranges of FHIR `date`
/// search values. Pure arithmetic on the proleptic Gregorian calendar (no Foundation formatter):
/// a search page formats thousands of instants.
public enum FHIRTime {
    /// `2026-03-01T08:00:29-05:00` (or `…29.250-05:00` when the milliseconds are not zero) for the
    /// instant `ms` shown at `offsetMinutes` east of UTC; `…Z` when the offset is unknown (nil).
    ///
    /// FHIR R4 `dateTime` and `instant` both accept this form (hl7.org/fhir/R4/datatypes.html).
    public static func format(epochMilliseconds ms: Int64, offsetMinutes: Int? = nil) -> String {
        let offset = Int64(offsetMinutes ?? 0)
        let local = ms + offset * 60_000
        let (days, msOfDay) = floorDivide(local, 86_400_000)
        let (y, m, d) = CivilCalendar.civil(fromDays: days)
        let pad = CivilCalendar.pad
        let seconds = msOfDay / 1000
        let millis = msOfDay % 1000
        var s = pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(seconds / 3600, 2) + ":"
            + pad(seconds / 60 % 60, 2) + ":" + pad(seconds % 60, 2)
        if millis != 0 { s += "." + pad(millis, 3) }
        guard let offsetMinutes else { return s + "Z" }
        let sign = offsetMinutes < 0 ? "-" : "+"
        let a = Int64(abs(offsetMinutes))
        return s + sign + pad(a / 60, 2) + ":" + pad(a % 60, 2)
    }

    /// An instant in UTC, `2026-03-01T13:00:29.250Z`: for `issued` and `meta.lastUpdated`.
    public static func instant(epochMilliseconds ms: Int64) -> String { format(epochMilliseconds: ms) }

    /// The range of instants a FHIR date search value stands for, `[start, end)` in epoch milliseconds.
    ///
    /// Accepts `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, `YYYY-MM-DDThh:mm`, `…:ss`, `…:ss.fff` with `Z` or
    /// `±hh:mm`. The range is the value's precision (a whole day for `2026-03-01`; a second for
    /// `…T08:00:29Z`), as FHIR R4 search defines it (hl7.org/fhir/R4/search.html#date). A value
    /// without a time zone is read in UTC. A space where the offset's `+` belongs is read as `+`:
    /// clients that forget to percent-encode `+` in a query string send it so.
    /// - Returns: nil when the text is not such a value or names an impossible date or time.
    public static func searchRange(_ text: String) -> (start: Int64, end: Int64)? {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ n: Int) -> Int64? {
            guard i + n <= b.count else { return nil }
            var v: Int64 = 0
            for k in i..<(i + n) {
                guard (0x30...0x39).contains(b[k]) else { return nil }
                v = v * 10 + Int64(b[k] - 0x30)
            }
            i += n
            return v
        }
        func expect(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), year >= 1 else { return nil }
        var month: Int64 = 1, day: Int64 = 1, hour: Int64 = 0, minute: Int64 = 0, second: Int64 = 0, millis: Int64 = 0
        enum Precision { case year, month, day, minute, second, millisecond }
        var precision = Precision.year
        if i < b.count {
            guard expect("-"), let m = digits(2), (1...12).contains(m) else { return nil }
            month = m
            precision = .month
        }
        if i < b.count {
            guard expect("-"), let d = digits(2), d >= 1, d <= CivilCalendar.daysIn(month: month, year: year) else { return nil }
            day = d
            precision = .day
        }
        var offsetMinutes: Int64 = 0
        if i < b.count {
            guard expect("T"), let h = digits(2), h < 24, expect(":"), let mi = digits(2), mi < 60 else { return nil }
            hour = h
            minute = mi
            precision = .minute
            if i < b.count, b[i] == UInt8(ascii: ":") {
                i += 1
                guard let s = digits(2), s < 60 else { return nil }
                second = s
                precision = .second
                if i < b.count, b[i] == UInt8(ascii: ".") {
                    i += 1
                    let start = i
                    while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
                    guard i > start else { return nil }
                    let fraction = b[start..<min(i, start + 3)].reduce(Int64(0)) { $0 * 10 + Int64($1 - 0x30) }
                    millis = fraction * [100, 10, 1][min(i - start, 3) - 1]
                    precision = .millisecond
                }
            }
            if i < b.count {
                if b[i] == UInt8(ascii: "Z") {
                    i += 1
                } else {
                    guard b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: " ") else { return nil }
                    let negative = b[i] == UInt8(ascii: "-")
                    i += 1
                    guard let oh = digits(2), oh <= 14, expect(":"), let om = digits(2), om < 60 else { return nil }
                    offsetMinutes = (oh * 60 + om) * (negative ? -1 : 1)
                }
            }
        }
        guard i == b.count else { return nil }
        let startDays = CivilCalendar.days(fromCivil: year, month, day)
        let start = (startDays * 86_400 + hour * 3600 + minute * 60 + second) * 1000 + millis - offsetMinutes * 60_000
        let end: Int64
        switch precision {
        case .year: end = CivilCalendar.days(fromCivil: year + 1, 1, 1) * 86_400_000 - offsetMinutes * 60_000
        case .month:
            end = (month == 12 ? CivilCalendar.days(fromCivil: year + 1, 1, 1) : CivilCalendar.days(fromCivil: year, month + 1, 1)) * 86_400_000
                - offsetMinutes * 60_000
        case .day: end = start + 86_400_000
        case .minute: end = start + 60_000
        case .second: end = start + 1000
        case .millisecond: end = start + 1
        }
        return (start, end)
    }

    // MARK: - Calendar arithmetic (the rest is CivilCalendar)

    static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        let q = a >= 0 ? a / b : (a - b + 1) / b
        return (q, a - q * b)
    }

}
