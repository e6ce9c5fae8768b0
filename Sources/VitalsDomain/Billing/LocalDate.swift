import Foundation

/// A calendar date without a time, as a patient lives it in their own time zone (`2026-03-01`).
///
/// Days of data for CPT 99445/99454 are counted as distinct local dates of the patient
/// (`clinical-and-billing.md` §2.2 rule 5: no source defines the time zone of a "day"; vitalsd
/// uses the patient's IANA time zone).
public struct LocalDate: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    private static let utc: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()

    /// A date from its parts; nil when the date does not exist (2026-02-30).
    public init?(year: Int, month: Int, day: Int) {
        let c = DateComponents(year: year, month: month, day: day)
        guard (1...12).contains(month), (1...31).contains(day), let d = Self.utc.date(from: c),
              Self.utc.component(.day, from: d) == day else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD`.
    public init?(_ text: String) {
        let parts = text.split(separator: "-")
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    /// The local date of an instant in `timeZone`.
    public init(_ instant: Date, in timeZone: TimeZone) {
        self.init(instant, calendar: Self.calendar(timeZone))
    }

    /// The local date of an instant in `calendar`'s time zone; for loops over many instants.
    public init(_ instant: Date, calendar c: Calendar) {
        let parts = c.dateComponents([.year, .month, .day], from: instant)
        year = parts.year!
        month = parts.month!
        day = parts.day!
    }

    /// A Gregorian calendar in `timeZone`.
    public static func calendar(_ timeZone: TimeZone) -> Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return c
    }

    private var utcMidnight: Date { Self.utc.date(from: DateComponents(year: year, month: month, day: day))! }

    /// The date `n` days later (earlier for negative `n`).
    public func adding(days n: Int) -> LocalDate {
        let d = Self.utc.date(byAdding: .day, value: n, to: utcMidnight)!
        let p = Self.utc.dateComponents([.year, .month, .day], from: d)
        return LocalDate(year: p.year!, month: p.month!, day: p.day!)!
    }

    /// Whole days from `other` to this date (positive when this date is later).
    public func days(since other: LocalDate) -> Int {
        Int((utcMidnight.timeIntervalSince(other.utcMidnight) / 86_400).rounded())
    }

    /// The first instant of this date in `timeZone` (local midnight, or the first instant after a DST gap).
    public func start(in timeZone: TimeZone) -> Date {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return c.startOfDay(for: c.date(from: DateComponents(year: year, month: month, day: day, hour: 12))!)
    }

    /// The last day of this date's month.
    public var endOfMonth: LocalDate {
        let next = month == 12 ? LocalDate(year: year + 1, month: 1, day: 1)! : LocalDate(year: year, month: month + 1, day: 1)!
        return next.adding(days: -1)
    }

    public static func < (a: LocalDate, b: LocalDate) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }

    public var description: String { String(format: "%04d-%02d-%02d", year, month, day) }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let d = LocalDate(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not YYYY-MM-DD: \(text)"))
        }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// A calendar month, `2026-03`.
public struct YearMonth: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let year: Int
    public let month: Int

    /// Parses `YYYY-MM`: exactly four digits, a hyphen, two digits (no sign, no other separator).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        let isDigit = { (b: UInt8) in (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
        guard bytes.count == 7, bytes[4] == UInt8(ascii: "-"), bytes[0..<4].allSatisfy(isDigit), bytes[5..<7].allSatisfy(isDigit),
              let y = Int(text.prefix(4)), let m = Int(text.suffix(2)), (1...12).contains(m) else { return nil }
        year = y
        month = m
    }

    public init(_ date: LocalDate) {
        year = date.year
        month = date.month
    }

    /// The first day of the month.
    public var first: LocalDate { LocalDate(year: year, month: month, day: 1)! }
    /// The last day of the month.
    public var last: LocalDate { first.endOfMonth }

    public static func < (a: YearMonth, b: YearMonth) -> Bool { (a.year, a.month) < (b.year, b.month) }
    public var description: String { String(format: "%04d-%02d", year, month) }
}
