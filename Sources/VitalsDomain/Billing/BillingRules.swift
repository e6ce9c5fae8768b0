/// How device-supply periods (CPT 99445/99454/99453) are laid out.
///
/// CMS speaks of "each 30 days"; several vendors run a rolling 30-day cycle from the start of
/// monitoring (`clinical-and-billing.md` §2.2 rule 4). The exact anchoring is a [verify] item, so
/// it is configurable.
public enum DevicePeriodAnchor: String, Sendable, Hashable, CaseIterable {
    /// Consecutive 30-day periods from the episode start: days 1–30, 31–60, … (default).
    case rolling30Days = "rolling_30_days"
    /// Calendar months, the first one starting at the episode start.
    case calendarMonth = "calendar_month"
}

/// A device-supply period: inclusive local dates.
public struct DevicePeriod: Sendable, Hashable, Codable {
    /// 1 for the first period of the episode.
    public var number: Int
    public var start: LocalDate
    /// The last day of the period (inclusive).
    public var end: LocalDate

    public init(number: Int, start: LocalDate, end: LocalDate) {
        self.number = number
        self.start = start
        self.end = end
    }

    /// Days in the period.
    public var length: Int { end.days(since: start) + 1 }

    /// True when `date` lies in the period.
    public func contains(_ date: LocalDate) -> Bool { start <= date && date <= end }
}

/// CPT codes with their units for one patient and period, e.g. `["99457": 1, "99458": 2]`.
public typealias CPTCodes = [String: Int]

/// The RPM and CCM billing rules of the CMS CY2026 Physician Fee Schedule, with the points marked
/// [verify] in `clinical-and-billing.md` kept configurable.
///
/// - Device supply (per device period): 0–1 days of data: nothing; 2–15: **99445**; 16 or more:
///   **99454**; never both (CY2026 PFS final rule, 90 FR 49266; rimidi.com 2026 RPM code expansion).
/// - Set-up (**99453**): once per episode, in the first period that reaches `setupMinimumDays`
///   (16 by most sources; whether 2026 lowered it to 2 is unclear [verify]).
/// - Treatment management (per calendar month, RPM minutes only, at least one real-time interactive
///   communication): under 10 minutes: nothing; 10–19: **99470**; 20 or more: **99457**, plus one
///   **99458** per further full 20 minutes (40 → 1, 60 → 2), capped by `max99458Units` when set
///   [verify]. The CPT midpoint rule does not apply: full minutes are required.
/// - CCM (per calendar month, CCM minutes only): 20 or more: **99490**, plus one **99439** per
///   further full 20 minutes, at most `max99439Units` (2, rvudoc.com).
/// Minutes belong to exactly one program and never count twice (§2.2 rule 14).
public struct BillingRules: Sendable, Hashable {
    public var anchor: DevicePeriodAnchor
    /// Days of data that make a period count for 99453. Default 16 [verify].
    public var setupMinimumDays: Int
    /// Days of data a device period needs for 99454 (16; 2–15 are 99445). The adherence rule
    /// ("16 days can no longer be reached") uses it.
    public var fullSupplyMinimumDays: Int = 16
    /// Most 99458 units a month; nil for no cap [verify].
    public var max99458Units: Int?
    /// Most 99439 units a month. Default 2.
    public var max99439Units: Int?
    /// Most minutes one time entry may hold (default 120, at most 600). Each entry records the
    /// duration of one piece of work (`clinical-and-billing.md` §2.2 rule 8); no source gives a
    /// ceiling, so this is a program choice that catches typos: one 600-minute entry would bill
    /// 99457 + 29 × 99458 with no 99458 cap.
    public var maxEntryMinutes: Int

    /// The default of ``maxEntryMinutes``.
    public static let defaultMaxEntryMinutes = 120

    public init(anchor: DevicePeriodAnchor = .rolling30Days, setupMinimumDays: Int = 16, max99458Units: Int? = nil,
                max99439Units: Int? = 2, maxEntryMinutes: Int = BillingRules.defaultMaxEntryMinutes) {
        self.anchor = anchor
        self.setupMinimumDays = setupMinimumDays
        self.max99458Units = max99458Units
        self.max99439Units = max99439Units
        self.maxEntryMinutes = maxEntryMinutes
    }

    /// The device periods of an episode that start on or before `through`.
    ///
    /// - Parameters:
    ///   - start: the episode start (consent date), a local date of the patient.
    ///   - end: the episode end, if it ended; the last period is cut at it.
    ///   - through: the last date of interest.
    public func devicePeriods(episodeStart start: LocalDate, episodeEnd end: LocalDate?, through: LocalDate) -> [DevicePeriod] {
        var periods: [DevicePeriod] = []
        var periodStart = start
        let last = min(end ?? through, through)
        while periodStart <= last {
            var periodEnd: LocalDate
            switch anchor {
            case .rolling30Days: periodEnd = periodStart.adding(days: 29)
            case .calendarMonth: periodEnd = periodStart.endOfMonth
            }
            if let end, end < periodEnd { periodEnd = end }
            periods.append(DevicePeriod(number: periods.count + 1, start: periodStart, end: periodEnd))
            periodStart = periodEnd.adding(days: 1)
        }
        return periods
    }

    /// The device-supply code for a period's days of data: none below 2, 99445 for 2–15, 99454 from 16.
    public func deviceSupplyCode(dataDays: Int) -> String? {
        if dataDays >= fullSupplyMinimumDays { return "99454" }
        return dataDays >= 2 ? "99445" : nil
    }

    /// RPM treatment-management codes for a calendar month.
    ///
    /// - Parameters:
    ///   - minutes: RPM management minutes in the month (valid entries only).
    ///   - interactive: whether the month holds at least one real-time interactive communication.
    public func managementCodes(minutes: Int, interactive: Bool) -> CPTCodes {
        guard interactive else { return [:] }
        switch minutes {
        case ..<10: return [:]
        case 10..<20: return ["99470": 1]
        default:
            var extra = (minutes - 20) / 20
            if let cap = max99458Units { extra = min(extra, cap) }
            return extra > 0 ? ["99457": 1, "99458": extra] : ["99457": 1]
        }
    }

    /// CCM codes for a calendar month of CCM minutes.
    public func ccmCodes(minutes: Int) -> CPTCodes {
        guard minutes >= 20 else { return [:] }
        var extra = (minutes - 20) / 20
        if let cap = max99439Units { extra = min(extra, cap) }
        return extra > 0 ? ["99490": 1, "99439": extra] : ["99490": 1]
    }
}
