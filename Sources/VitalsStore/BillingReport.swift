import GRDB
import VitalsAlerting
import Foundation
import VitalsDomain

/// One patient's billing evidence for a calendar month.
public struct PatientBilling: Sendable, Hashable, Codable {
    /// A device period that ends in the month.
    public struct Period: Sendable, Hashable, Codable {
        public var period: DevicePeriod
        /// Distinct local dates with device-transmitted readings in the period.
        public var dataDays: Int
        /// `99445`, `99454`, or nil.
        public var deviceCode: String?
        /// The period has not ended yet (its end is today or later).
        public var inProgress: Bool
        /// This period is the episode's first to reach the 99453 threshold.
        public var setup99453: Bool
    }

    public var patientID: String
    public var timezone: String
    public var episodeID: Int64
    public var billingPractitioner: String
    public var periods: [Period]
    /// Valid RPM management minutes in the calendar month.
    public var rpmMinutes: Int
    /// At least one valid RPM entry in the month was a real-time interactive communication.
    public var interactive: Bool
    /// 99470, or 99457 with 99458 units.
    public var managementCodes: CPTCodes
    /// Valid CCM minutes in the month, never counted toward RPM.
    public var ccmMinutes: Int
    /// 99490 with 99439 units.
    public var ccmCodes: CPTCodes
    /// Time entries of the month that were not counted, and why: RPM minutes dated outside the
    /// episode (consent precedes service, `clinical-and-billing.md` §2.2 rule 15), and entries longer
    /// than `billing.max_entry_minutes` (§2.2 rule 8), logged before these were refused. Empty when
    /// every entry counted.
    public var review: [String] = []
}

extension AppDatabase {
    /// The billing evidence of every patient with an episode that overlaps `month`.
    ///
    /// Device periods are those of the episode (``BillingRules/devicePeriods(episodeStart:episodeEnd:through:)``)
    /// that end in the month; management minutes are those performed on local dates (patient's time zone)
    /// of the calendar month. See ``BillingRules`` for the codes and their sources.
    ///
    /// - Parameters:
    ///   - today: the current local date logic uses to mark periods in progress.
    public func billingReport(month: YearMonth, rules: BillingRules, today: Date = Date()) throws -> [PatientBilling] {
        var result: [PatientBilling] = []
        let patients = Dictionary(uniqueKeysWithValues: try patients().map { ($0.id, $0) })
        for episode in try episodes() {
            guard let patient = patients[episode.patientID], let zone = TimeZone(identifier: patient.timezone) else { continue }
            if episode.startDate > month.last { continue }
            if let end = episode.endDate, end < month.first { continue }
            let todayLocal = LocalDate(today, in: zone)
            let periods = rules.devicePeriods(episodeStart: episode.startDate, episodeEnd: episode.endDate, through: month.last)
            let days = Set(try transmissionDays(
                patientID: patient.id, timeZone: zone, from: episode.startDate, through: month.last).map(\.date))
            var setupDone = false
            var reported: [PatientBilling.Period] = []
            for period in periods {
                let dataDays = days.filter { period.contains($0) }.count
                let isSetup = !setupDone && dataDays >= rules.setupMinimumDays
                if isSetup { setupDone = true }
                guard YearMonth(period.end) == month else { continue }
                reported.append(PatientBilling.Period(
                    period: period, dataDays: dataDays, deviceCode: rules.deviceSupplyCode(dataDays: dataDays),
                    inProgress: period.end >= todayLocal, setup99453: isSetup))
            }
            let valid = try timeEntries(
                patientID: patient.id, from: month.first.start(in: zone), to: month.last.adding(days: 1).start(in: zone)
            ).filter(\.isValid)
            var review: [String] = []
            // Entries longer than one piece of work are not counted until voided and logged again.
            let tooLong = valid.filter { $0.minutes > rules.maxEntryMinutes }
            for e in tooLong {
                review.append("entry \(e.id): \(e.minutes) minutes, more than billing.max_entry_minutes (\(rules.maxEntryMinutes)): not counted; void it and log each session")
            }
            // RPM minutes outside this episode's dates are not its minutes.
            let outside = valid.filter {
                let day = LocalDate($0.performedAt, in: zone)
                return $0.program == .rpm && (day < episode.startDate || episode.endDate.map { day > $0 } ?? false)
            }
            let outsideMinutes = outside.filter { $0.minutes <= rules.maxEntryMinutes }.map(\.minutes).reduce(0, +)
            if outsideMinutes > 0 {
                review.append("\(outsideMinutes) RPM minutes dated outside episode \(episode.id) (\(episode.startDate) to \(episode.endDate?.description ?? "open")) not counted: consent precedes service (clinical-and-billing.md §2.2 rule 15)")
            }
            let excluded = Set((tooLong + outside).map(\.id))
            let entries = valid.filter { !excluded.contains($0.id) }
            let rpm = entries.filter { $0.program == .rpm }
            let ccm = entries.filter { $0.program == .ccm }
            let rpmMinutes = rpm.map(\.minutes).reduce(0, +)
            let interactive = rpm.contains(where: \.interactive)
            let ccmMinutes = ccm.map(\.minutes).reduce(0, +)
            result.append(PatientBilling(
                patientID: patient.id, timezone: patient.timezone, episodeID: episode.id,
                billingPractitioner: episode.billingPractitioner, periods: reported, rpmMinutes: rpmMinutes,
                interactive: interactive, managementCodes: rules.managementCodes(minutes: rpmMinutes, interactive: interactive),
                ccmMinutes: ccmMinutes, ccmCodes: rules.ccmCodes(minutes: ccmMinutes), review: review))
        }
        return result.sorted { ($0.patientID, $0.episodeID) < ($1.patientID, $1.episodeID) }
    }

    /// Where a patient stands in the current device period.
    public struct Adherence: Sendable, Hashable, Codable {
        public var patientID: String
        public var period: DevicePeriod
        public var dataDaysSoFar: Int
        /// Days after today left in the period.
        public var daysLeft: Int
        /// The days of data of 99454 (``BillingRules/fullSupplyMinimumDays``, 16) can still be reached.
        public var reachable16: Bool
        /// 2 days of data (99445) can still be reached.
        public var reachable2: Bool
        /// The last local date with data, if any.
        public var lastDataDay: LocalDate?
    }

    /// Adherence in the current device period of every open episode
    /// (`days_with_data + days_remaining >= 16`, ``RoutineRules/reachable(_:dataDays:daysLeft:todayHasData:)``).
    public func adherence(rules: BillingRules, today: Date = Date()) throws -> [Adherence] {
        var result: [Adherence] = []
        // One patient at a time: the daemon runs this every few minutes, and loading every enrolled
        // patient at once took its memory from ~40 to ~100 MiB with 100,000 patients (BENCHMARKS.md).
        for episode in try episodes() where episode.endDate == nil {
            if let a = try writer.read({ db in try Self.adherence(db, episode: episode, rules: rules, today: today) }) {
                result.append(a)
            }
        }
        return result
    }

    /// Where one open episode stands in its current device period; nil before it starts.
    static func adherence(_ db: Database, episode: Episode, rules: BillingRules, today: Date) throws -> Adherence? {
        guard let patient = try fetchPatient(db, id: episode.patientID), let zone = TimeZone(identifier: patient.timezone) else { return nil }
        let todayLocal = LocalDate(today, in: zone)
        guard episode.startDate <= todayLocal,
              let period = rules.devicePeriods(episodeStart: episode.startDate, episodeEnd: nil, through: todayLocal).last
        else { return nil }
        let days = try transmissionDays(db, patientID: patient.id, timeZone: zone, from: period.start, through: todayLocal).map(\.date)
        let daysLeft = period.end.days(since: todayLocal)
        let todayHasData = days.last == todayLocal
        return Adherence(
            patientID: patient.id, period: period, dataDaysSoFar: days.count, daysLeft: daysLeft,
            reachable16: RoutineRules.reachable(rules.fullSupplyMinimumDays, dataDays: days.count, daysLeft: daysLeft, todayHasData: todayHasData),
            reachable2: RoutineRules.reachable(2, dataDays: days.count, daysLeft: daysLeft, todayHasData: todayHasData),
            lastDataDay: days.last)
    }
}
