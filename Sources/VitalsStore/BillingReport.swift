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
        try writer.read { db in try Self.billingReport(db, month: month, rules: rules, today: today) }
    }

    /// ``billingReport(month:rules:today:)`` for async callers (the workspace's billing page).
    public func billingReportAsync(month: YearMonth, rules: BillingRules, today: Date) async throws -> [PatientBilling] {
        try await writer.read { db in try Self.billingReport(db, month: month, rules: rules, today: today) }
    }

    static func billingReport(_ db: Database, month: YearMonth, rules: BillingRules, today: Date) throws -> [PatientBilling] {
        try checkReportMonth(month, today: today)
        var result: [PatientBilling] = []
        let programs = try programsByPatient(db)
        let patients = Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT * FROM patients ORDER BY id").map { row in
            (row["id"] as String, Patient(row: row, programs: programs[row["id"]] ?? []))
        })
        for episode in try fetchEpisodes(db, patientID: nil) {
            guard let patient = patients[episode.patientID], let zone = TimeZone(identifier: patient.timezone) else { continue }
            if episode.startDate > month.last { continue }
            if let end = episode.endDate, end < month.first { continue }
            let todayLocal = LocalDate(today, in: zone)
            let periods = rules.devicePeriods(episodeStart: episode.startDate, episodeEnd: episode.endDate, through: month.last)
            let days = Set(try Self.transmissionDays(
                db, patientID: patient.id, timeZone: zone, from: episode.startDate, through: month.last).map(\.date))
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
            let (time, review) = Self.monthlyTime(
                try Self.timeEntries(db, patientID: patient.id, from: month.first.start(in: zone), to: month.last.adding(days: 1).start(in: zone)),
                episode: episode, zone: zone, rules: rules)
            let rpmMinutes = time.rpmMinutes, interactive = time.interactive, ccmMinutes = time.ccmMinutes
            result.append(PatientBilling(
                patientID: patient.id, timezone: patient.timezone, episodeID: episode.id,
                billingPractitioner: episode.billingPractitioner, periods: reported, rpmMinutes: rpmMinutes,
                interactive: interactive, managementCodes: rules.managementCodes(minutes: rpmMinutes, interactive: interactive),
                ccmMinutes: ccmMinutes, ccmCodes: rules.ccmCodes(minutes: ccmMinutes), review: review))
        }
        return result.sorted { ($0.patientID, $0.episodeID) < ($1.patientID, $1.episodeID) }
    }

    /// The valid time of one calendar month's entries for an episode, as `report billing` counts it,
    /// and the entries it did not count with why: entries longer than `billing.max_entry_minutes`
    /// (`clinical-and-billing.md` §2.2 rule 8), and RPM entries dated outside the episode (consent
    /// precedes service, §2.2 rule 15).
    /// - Parameter entries: the patient's entries performed in the month (voided ones included).
    static func monthlyTime(_ entries: [TimeEntry], episode: Episode, zone: TimeZone, rules: BillingRules) -> (MonthlyTime, review: [String]) {
        let valid = entries.filter(\.isValid)
        var review: [String] = []
        // Entries longer than one piece of work are not counted until voided and logged again.
        let tooLong = valid.filter { $0.durationSeconds > rules.maxEntryMinutes * 60 }
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
        let counted = valid.filter { !excluded.contains($0.id) }
        let rpm = counted.filter { $0.program == .rpm }
        let ccm = counted.filter { $0.program == .ccm }
        // Full minutes of the month's time: timed entries count their seconds.
        let time = MonthlyTime(
            rpmMinutes: rpm.map(\.durationSeconds).reduce(0, +) / 60, interactive: rpm.contains(where: \.interactive),
            ccmMinutes: ccm.map(\.durationSeconds).reduce(0, +) / 60)
        return (time, review)
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

extension PatientBilling {
    /// The columns of `report billing`'s table and of its CSV (the CSV adds `review`).
    public static let columns = [
        "patient_id", "device_period", "data_days", "device_code", "rpm_minutes", "interactive", "management_codes",
        "ccm_minutes", "ccm_codes", "billing_practitioner",
    ]

    /// CPT codes as the reports print them: `99457 + 99458 x2`, or `none`.
    public static func codesText(_ codes: CPTCodes) -> String {
        codes.isEmpty ? "none" : codes.sorted { $0.key < $1.key }.map { $0.value > 1 ? "\($0.key) x\($0.value)" : $0.key }.joined(separator: " + ")
    }

    /// The patient's rows of `report billing`: one per device period ending in the month (one with
    /// `-` when none does), in ``columns`` order, with the review notes last when `review` is set.
    public func rows(review withReview: Bool) -> [[String]] {
        let management = Self.codesText(managementCodes)
        let ccm = Self.codesText(ccmCodes)
        return (periods.isEmpty ? [nil] : periods.map(Optional.some)).map { period in
            var device = ""
            if let period {
                device = period.deviceCode ?? "none"
                if period.setup99453 { device += " + 99453" }
            }
            return [
                patientID, period.map { "\($0.period.number): \($0.period.start)..\($0.period.end)\($0.inProgress ? " (in progress)" : "")" } ?? "-",
                period.map { String($0.dataDays) } ?? "", device, String(rpmMinutes), interactive ? "yes" : "no",
                management, String(ccmMinutes), ccm, billingPractitioner,
            ] + (withReview ? [review.joined(separator: "; ")] : [])
        }
    }
}

/// The evidence behind a device-supply code: the dated transmission log of one device period of a
/// patient's latest episode (`vitalsd report days`).
public struct PeriodEvidence: Sendable, Hashable {
    public var patientID: String
    public var timezone: String
    public var episode: Episode
    public var period: DevicePeriod
    /// Each local date with device data, oldest first.
    public var days: [AppDatabase.TransmissionDay]
    /// The code the days give (``BillingRules/deviceSupplyCode(dataDays:)``).
    public var code: String?
}

extension AppDatabase {
    /// Months a report covers: from 2000-01 to a year after `today`. A month further out names no
    /// billing and would cost a period list per episode for every month in between.
    /// - Throws: ``BillingError`` for a month outside that range.
    static func checkReportMonth(_ month: YearMonth, today: Date) throws {
        let latest = YearMonth(LocalDate(today, in: .gmt).adding(days: 366))
        guard month.year >= 2000, month.first <= latest.first else {
            throw BillingError("the month must be between 2000-01 and \(latest)")
        }
    }

    /// Highest period number asked of ``periodEvidence(patientID:period:rules:)``: 100 years of periods.
    static let maximumPeriodNumber = 1_300

    /// The transmission log of period `number` (1 for the first) of the patient's latest episode.
    /// - Throws: ``BillingError`` when the patient is unknown, has no episode, or the period does not exist yet.
    public func periodEvidence(patientID: String, period number: Int, rules: BillingRules) throws -> PeriodEvidence {
        try writer.read { db in try Self.periodEvidence(db, patientID: patientID, period: number, rules: rules) }
    }

    /// ``periodEvidence(patientID:period:rules:)`` for async callers (the workspace).
    public func periodEvidenceAsync(patientID: String, period number: Int, rules: BillingRules) async throws -> PeriodEvidence {
        try await writer.read { db in try Self.periodEvidence(db, patientID: patientID, period: number, rules: rules) }
    }

    static func periodEvidence(_ db: Database, patientID: String, period number: Int, rules: BillingRules) throws -> PeriodEvidence {
        guard let p = try fetchPatient(db, id: patientID), let zone = TimeZone(identifier: p.timezone) else {
            throw BillingError("patient \(patientID) is not enrolled")
        }
        guard let episode = try fetchEpisodes(db, patientID: patientID).last else { throw BillingError("patient \(patientID) has no episode") }
        guard (1...maximumPeriodNumber).contains(number) else { throw BillingError("there is no period \(number)") }
        let through = episode.startDate.adding(days: 31 * number + 31)
        let periods = rules.devicePeriods(episodeStart: episode.startDate, episodeEnd: episode.endDate, through: through)
        guard number >= 1, number <= periods.count else { throw BillingError("the episode has \(periods.count) periods so far") }
        let chosen = periods[number - 1]
        let days = try transmissionDays(db, patientID: patientID, timeZone: zone, from: chosen.start, through: chosen.end)
        return PeriodEvidence(patientID: patientID, timezone: p.timezone, episode: episode, period: chosen, days: days,
                              code: rules.deviceSupplyCode(dataDays: days.count))
    }
}
