import Foundation

/// A patient's care-management time in one calendar month, as `report billing` counts it: valid
/// entries only, each program apart (minutes never count twice, `clinical-and-billing.md` §2.2 rule 14).
public struct MonthlyTime: Sendable, Hashable, Codable {
    /// Full RPM management minutes: the month's RPM time in seconds, divided by 60 and rounded down
    /// (the CPT midpoint rule does not apply, §2.2 rule 7).
    public var rpmMinutes: Int
    /// At least one valid RPM entry was a real-time interactive communication (§2.2 rule 6).
    public var interactive: Bool
    /// Full CCM minutes, counted the same way.
    public var ccmMinutes: Int

    public init(rpmMinutes: Int = 0, interactive: Bool = false, ccmMinutes: Int = 0) {
        self.rpmMinutes = rpmMinutes
        self.interactive = interactive
        self.ccmMinutes = ccmMinutes
    }
}

/// Where a patient stands today toward the codes of ``BillingRules``: days of data in the current
/// device period against 2 (99445) and 16 (99454), RPM minutes this calendar month against 10
/// (99470), 20 (99457) and each further 20 (99458) with the interactive communication, and CCM
/// minutes apart (99490/99439). Sources: `clinical-and-billing.md` §2.2 rules 3–9 and §2.3; the
/// reachability test is §3.2's `days_with_data + days_remaining >= 16`.
///
/// The same values as `vitalsd report billing` (minutes, interactive, codes) and `report adherence`
/// (days so far, days left, reachable) for the same patient and day.
public struct BillingProgress: Sendable, Hashable {
    /// The current device period and its days of data so far.
    public struct DeviceDays: Sendable, Hashable {
        public var period: DevicePeriod
        /// Distinct local dates with device-transmitted readings from the period start through today.
        public var dataDays: Int
        public var todayHasData: Bool
        /// Days of the period after today.
        public var daysLeft: Int
        /// ``BillingRules/fullSupplyMinimumDays`` (16) can still be reached.
        public var reachable16: Bool
        /// 2 days (99445) can still be reached.
        public var reachable2: Bool
        /// While 16 is not reached but reachable: the last local date on which a first new day of
        /// data still keeps 16 reachable; with no reading through the end of this date, 16 is out
        /// of reach. Nil once 16 are reached or out of reach.
        public var sixteenNeedsDataBy: LocalDate?
        /// The device-supply code the days so far give (nil, 99445 or 99454).
        public var codeSoFar: String?
    }

    /// What keeps a patient billable, and how soon someone must act.
    public struct Need: Sendable, Hashable, Comparable {
        /// Days from today (0: today) until a reading must arrive, or the month ends without the
        /// minutes or the interactive communication.
        public var days: Int
        /// Minutes still missing to the next RPM threshold (0 when only a reading is needed).
        public var minutesShort: Int

        public init(days: Int, minutesShort: Int) {
            self.days = days
            self.minutesShort = minutesShort
        }

        public static func < (a: Need, b: Need) -> Bool { (a.days, -a.minutesShort) < (b.days, -b.minutesShort) }
    }

    /// Today in the patient's time zone.
    public var today: LocalDate
    /// Nil when no device period runs today (no episode, or it ended).
    public var deviceDays: DeviceDays?
    public var time: MonthlyTime
    /// The next RPM minute threshold: 10, 20, 40, 60, …
    public var nextMinuteTarget: Int
    /// The RPM management codes the month holds so far (``BillingRules/managementCodes(minutes:interactive:)``).
    public var managementCodes: CPTCodes
    public var ccmCodes: CPTCodes
    /// Days of the calendar month after today.
    public var monthDaysLeft: Int
    /// Whether a reading (days of data) or a call (20 RPM minutes with an interactive communication)
    /// is still needed this period or month; nil when both are done or out of reach.
    public var need: Need?

    /// Whether `minimum` days of data can still be reached in a period: the days so far, the days
    /// left after today, and today unless it already has data
    /// (`days_with_data + days_remaining >= minimum`, `clinical-and-billing.md` §3.2).
    public static func reachable(_ minimum: Int, dataDays: Int, daysLeft: Int, todayHasData: Bool) -> Bool {
        dataDays + daysLeft + (todayHasData ? 0 : 1) >= minimum
    }

    /// The progress of one patient on one day.
    ///
    /// - Parameters:
    ///   - episodeStart: the RPM episode's consent date; nil without an episode.
    ///   - episodeEnd: its last day, if it ended.
    ///   - dataDates: local dates with device-transmitted readings (at least those of the current period).
    ///   - time: the calendar month's valid time (``MonthlyTime``).
    ///   - now: the instant; `timeZone`: the patient's zone, in which dates are counted.
    public static func evaluate(
        rules: BillingRules, episodeStart: LocalDate?, episodeEnd: LocalDate?, dataDates: Set<LocalDate>,
        time: MonthlyTime, now: Date, timeZone: TimeZone
    ) -> BillingProgress {
        let today = LocalDate(now, in: timeZone)
        var deviceDays: DeviceDays?
        if let start = episodeStart, start <= today, episodeEnd.map({ today <= $0 }) ?? true,
           let period = rules.devicePeriods(episodeStart: start, episodeEnd: nil, through: today).last {
            let days = dataDates.filter { period.start <= $0 && $0 <= today }.count
            let todayHasData = dataDates.contains(today)
            let daysLeft = period.end.days(since: today)
            let full = rules.fullSupplyMinimumDays
            let spare = days + daysLeft + (todayHasData ? 0 : 1) - full
            deviceDays = DeviceDays(
                period: period, dataDays: days, todayHasData: todayHasData, daysLeft: daysLeft,
                reachable16: reachable(full, dataDays: days, daysLeft: daysLeft, todayHasData: todayHasData),
                reachable2: reachable(2, dataDays: days, daysLeft: daysLeft, todayHasData: todayHasData),
                sixteenNeedsDataBy: days < full && spare >= 0 ? today.adding(days: (todayHasData ? 1 : 0) + spare) : nil,
                codeSoFar: rules.deviceSupplyCode(dataDays: days))
        }
        let minutes = time.rpmMinutes
        let nextTarget = minutes < 10 ? 10 : minutes < 20 ? 20 : (minutes / 20 + 1) * 20
        let monthDaysLeft = today.endOfMonth.days(since: today)
        var needs: [Need] = []
        if let d = deviceDays {
            // The next device-supply target still in reach: 16, or else 2.
            let target = d.reachable16 && d.dataDays < rules.fullSupplyMinimumDays ? rules.fullSupplyMinimumDays
                : d.reachable2 && d.dataDays < 2 ? 2 : nil
            if let target {
                let spare = d.dataDays + d.daysLeft + (d.todayHasData ? 0 : 1) - target
                needs.append(Need(days: (d.todayHasData ? 1 : 0) + spare, minutesShort: 0))
            }
        }
        if episodeStart != nil && (minutes < 20 || !time.interactive) {
            needs.append(Need(days: monthDaysLeft, minutesShort: max(0, 20 - minutes)))
        }
        return BillingProgress(
            today: today, deviceDays: deviceDays, time: time, nextMinuteTarget: nextTarget,
            managementCodes: rules.managementCodes(minutes: minutes, interactive: time.interactive),
            ccmCodes: rules.ccmCodes(minutes: time.ccmMinutes), monthDaysLeft: monthDaysLeft, need: needs.min())
    }
}
