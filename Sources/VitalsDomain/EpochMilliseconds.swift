import Foundation

/// Milliseconds since 1970-01-01T00:00:00Z, rounded: the form in which both storage backends keep
/// instants.
public func epochMilliseconds(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSince1970 * 1000).rounded())
}

/// The instant for stored epoch milliseconds.
public func dateFromEpochMilliseconds(_ ms: Int64) -> Date {
    Date(timeIntervalSince1970: Double(ms) / 1000)
}
