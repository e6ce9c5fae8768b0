import Foundation
import Testing
import VitalsDomain
import VitalsStore

/// A patient in Berlin with a scale, episode from 2025-03-10: device period 1 is 2025-03-10 to
/// 2025-04-08 and holds the daylight-saving change of 2025-03-30 (02:00 CET → 03:00 CEST, a 23-hour day).
private func berlinPatient(_ dir: TemporaryDirectory) throws -> AppDatabase {
    let db = try AppDatabase.open(path: dir.path + "/progress.sqlite")
    try db.upsertPatient(Patient(id: "ber", timezone: "Europe/Berlin", programs: [.heartFailure]), actor: "t")
    try db.upsertDevice(Device(id: "sb", kind: .scale, patientID: "ber"), actor: "t")
    try db.startEpisode(patientID: "ber", startDate: LocalDate("2025-03-10")!, practitioner: "Dr. Weber", actor: "t")
    return db
}

private func at(_ text: String) -> Date { MeasurementTimePolicy.parseRFC3339(text)! }

/// A weight reading at an RFC 3339 time with its offset.
private func weight(_ time: String) -> IncomingMessage {
    message("sb", #"{"type":"body_weight","value":80,"unit":"kg","measured_at":"\#(time)"}"#)
}

@Suite("billing progress")
struct BillingProgressTests {
    /// Readings on local dates 03-10 to 03-15 (6), 03-29, 03-30 (twice, either side of the change),
    /// 03-31 and 04-01. Near midnight they fall on other UTC dates: 03-29 23:30+01:00 and
    /// 03-30 00:30+01:00 are both 2025-03-29 in UTC; 03-30 23:30+02:00 and 03-31 00:30+02:00 both
    /// 2025-03-30; 04-01 00:30+02:00 is 2025-03-31. A count by UTC date would say 8, not 10.
    private func ingestReadings(_ db: AppDatabase) async throws {
        var messages = (10...15).map { weight(String(format: "2025-03-%02dT12:00:00+01:00", $0)) }
        messages += ["2025-03-29T23:30:00+01:00", "2025-03-30T00:30:00+01:00", "2025-03-30T23:30:00+02:00",
                     "2025-03-31T00:30:00+02:00", "2025-04-01T00:30:00+02:00"].map(weight)
        _ = try await db.ingest(messages, pipeline: pipeline)
    }

    /// RPM and CCM entries near the month boundary.
    private func logEntries(_ db: AppDatabase) throws {
        // Local April 1 00:15 is March 31 22:15 UTC: April in Berlin.
        try db.logTime(NewTimeEntry(patientID: "ber", minutes: 12, performedAt: at("2025-04-01T00:15:00+02:00"),
                                    performedBy: "rn.a", activity: "call about weight", modality: .audio))
        // Local March 31 23:50: March.
        try db.logTime(NewTimeEntry(patientID: "ber", minutes: 30, performedAt: at("2025-03-31T23:50:00+02:00"),
                                    performedBy: "rn.a", activity: "data review"))
        try db.logTime(NewTimeEntry(patientID: "ber", minutes: 5, performedAt: at("2025-04-01T09:00:00+02:00"),
                                    performedBy: "rn.a", activity: "data review"))
        let voided = try db.logTime(NewTimeEntry(patientID: "ber", minutes: 40, performedAt: at("2025-04-01T10:00:00+02:00"),
                                                 performedBy: "rn.b", activity: "wrong patient"))
        try db.voidTime(entryID: voided, by: "rn.b", reason: "wrong patient")
        try db.logTime(NewTimeEntry(patientID: "ber", program: .ccm, minutes: 22, performedAt: at("2025-04-01T11:00:00+02:00"),
                                    performedBy: "rn.c", activity: "care plan"))
    }

    @Test("Europe/Berlin across 2025-03-30: days and minutes by local date, equal to report billing and report adherence")
    func berlinAcrossDaylightSaving() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try berlinPatient(dir)
        try await ingestReadings(db)
        try logEntries(db)
        let rules = BillingRules()

        // 2025-04-02 09:00 in Berlin, no reading today. By hand: 10 days of data (03-10…03-15, 03-29,
        // 03-30, 03-31, 04-01); days after today in period 1 (ends 04-08): 6; at most 10 + 6 + 1 = 17
        // ≥ 16: reachable, one day to spare, so a reading is needed by 04-03 (with none on 04-02 and
        // 04-03, at most 10 + 5 = 15). April RPM: 12 (interactive) + 5 = 17 minutes → 99470, next 20;
        // the 40 voided minutes and March's 30 do not count. CCM: 22 → 99490.
        let now = at("2025-04-02T09:00:00+02:00")
        let p = try #require(try await db.billingProgress(patientID: "ber", rules: rules, now: now))
        let d = try #require(p.deviceDays)
        #expect(p.today == LocalDate("2025-04-02")!)
        #expect(d.period == DevicePeriod(number: 1, start: LocalDate("2025-03-10")!, end: LocalDate("2025-04-08")!))
        #expect(d.dataDays == 10)
        #expect(d.todayHasData == false)
        #expect(d.daysLeft == 6)
        #expect(d.reachable16 && d.reachable2)
        #expect(d.sixteenNeedsDataBy == LocalDate("2025-04-03")!)
        #expect(d.codeSoFar == "99445")
        #expect(p.time == MonthlyTime(rpmMinutes: 17, interactive: true, ccmMinutes: 22))
        #expect(p.managementCodes == ["99470": 1])
        #expect(p.nextMinuteTarget == 20)
        #expect(p.ccmCodes == ["99490": 1])
        #expect(p.monthDaysLeft == 28)
        // A reading is needed within a day (by 04-03); the minutes can wait to the month's end.
        #expect(p.need == BillingProgress.Need(days: 1, minutesShort: 0))

        // The same values as the reports for the same patient and day.
        let report = try #require(try db.billingReport(month: YearMonth("2025-04")!, rules: rules, today: now).first)
        #expect(report.rpmMinutes == p.time.rpmMinutes)
        #expect(report.interactive == p.time.interactive)
        #expect(report.ccmMinutes == p.time.ccmMinutes)
        #expect(report.managementCodes == p.managementCodes)
        #expect(report.ccmCodes == p.ccmCodes)
        #expect(report.periods.first?.dataDays == d.dataDays)
        let adherence = try #require(try db.adherence(rules: rules, today: now).first)
        #expect(adherence.period == d.period)
        #expect(adherence.dataDaysSoFar == d.dataDays)
        #expect(adherence.daysLeft == d.daysLeft)
        #expect(adherence.reachable16 == d.reachable16)
        #expect(adherence.reachable2 == d.reachable2)

        // On the day of the change itself, 22:30 CEST: 03-30 has data (00:30 CET, before the change).
        // By hand: 6 + 03-29 + 03-30 = 8 days; 9 days after today; 8 + 9 = 17: a day to spare, so
        // the next reading is needed by 04-01. March RPM: 30 minutes, none interactive: no code.
        let dstDay = at("2025-03-30T22:30:00+02:00")
        let q = try #require(try await db.billingProgress(patientID: "ber", rules: rules, now: dstDay))
        #expect(q.today == LocalDate("2025-03-30")!)
        #expect(q.deviceDays?.dataDays == 8)
        #expect(q.deviceDays?.todayHasData == true)
        #expect(q.deviceDays?.daysLeft == 9)
        #expect(q.deviceDays?.sixteenNeedsDataBy == LocalDate("2025-04-01")!)
        #expect(q.time == MonthlyTime(rpmMinutes: 30, interactive: false, ccmMinutes: 0))
        #expect(q.managementCodes == [:])
        #expect(q.need == BillingProgress.Need(days: 1, minutesShort: 0))
        let marchAdherence = try #require(try db.adherence(rules: rules, today: dstDay).first)
        #expect(marchAdherence.dataDaysSoFar == 8 && marchAdherence.daysLeft == 9 && marchAdherence.reachable16)
        let march = try #require(try db.billingReport(month: YearMonth("2025-03")!, rules: rules, today: dstDay).first)
        #expect(march.rpmMinutes == 30 && march.interactive == false && march.managementCodes == [:])
    }

    @Test("16 days out of reach: no date, the 2-day code reached; a patient without an episode has no progress")
    func outOfReach() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try berlinPatient(dir)
        try await ingestReadings(db)
        // 2025-04-05 08:00: 10 days, 3 after today: at most 10 + 3 + 1 = 14 < 16.
        let now = at("2025-04-05T08:00:00+02:00")
        let p = try #require(try await db.billingProgress(patientID: "ber", rules: BillingRules(), now: now))
        #expect(p.deviceDays?.reachable16 == false)
        #expect(p.deviceDays?.sixteenNeedsDataBy == nil)
        #expect(p.deviceDays?.codeSoFar == "99445")
        // Only the call is still needed: 20 minutes with an interactive communication, 25 days left in April.
        #expect(p.need == BillingProgress.Need(days: 25, minutesShort: 20))
        #expect(try db.adherence(rules: BillingRules(), today: now).first?.reachable16 == false)
        try db.upsertPatient(Patient(id: "none", timezone: "UTC", programs: [.heartFailure]), actor: "t")
        #expect(try await db.billingProgress(patientID: "none", rules: BillingRules(), now: now) == nil)
    }
}

@Suite("the worklist sorted by billing need")
struct BillableWorklistTests {
    @Test("within a priority, the patient who needs a reading soonest comes first; patients without an episode last")
    func billableOrder() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try AppDatabase.open(path: dir.path + "/worklist.sqlite")
        // Three diabetes patients in UTC, episodes from 2026-03-01; on 2026-03-16 (14 days left after today),
        // with today's critical reading as a day of data: "a" has 03-01…03-04 and today, 5 days
        // (5 + 14 = 19: three to spare, a reading needed by 03-20, 4 days on); "b" 03-01 and today,
        // 2 days (2 + 14 = 16: none to spare, a reading needed tomorrow); "c" has no episode.
        for id in ["a", "b", "c"] {
            try db.upsertPatient(Patient(id: id, timezone: "UTC", programs: [.diabetes]), actor: "t")
            try db.upsertDevice(Device(id: "g-\(id)", kind: .glucometer, patientID: id), actor: "t")
        }
        for id in ["a", "b"] { try db.startEpisode(patientID: id, startDate: LocalDate("2026-03-01")!, practitioner: "Dr. Ng", actor: "t") }
        func reading(_ device: String, _ value: Int, _ time: String) -> IncomingMessage {
            message(device, #"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":"\#(time)"}"#)
        }
        let now = MeasurementTimePolicy.parseRFC3339("2026-03-16T10:00:00Z")!
        var messages = (1...4).map { reading("g-a", 110, String(format: "2026-03-%02dT08:00:00Z", $0)) }
        messages.append(reading("g-b", 110, "2026-03-01T08:00:00Z"))
        _ = try await db.ingest(messages, pipeline: pipeline, now: now)
        // A critical low for each, opened in the order c, a, b (the default order: the oldest first).
        for (id, minute) in [("c", 1), ("a", 2), ("b", 3)] {
            _ = try await db.ingest([reading("g-\(id)", 45, "2026-03-16T09:0\(minute):00Z")], pipeline: pipeline, now: now)
        }
        let plain = try await db.worklist(tab: .team, username: "nobody", page: 1, pageSize: 10, now: now)
        #expect(plain.entries.map(\.task.patientID) == ["c", "a", "b"])
        let billable = try await db.worklist(tab: .team, username: "nobody", page: 1, pageSize: 10, now: now, billable: BillingRules())
        #expect(billable.entries.map(\.task.patientID) == ["b", "a", "c"])
        let second = try await db.worklist(tab: .team, username: "nobody", page: 2, pageSize: 2, now: now, billable: BillingRules())
        #expect(second.entries.map(\.task.patientID) == ["c"])
        let progress = try await db.billingProgress(patientIDs: ["a", "b", "c"], rules: BillingRules(), now: now)
        #expect(progress["b"]?.need == BillingProgress.Need(days: 1, minutesShort: 0))
        #expect(progress["b"]?.deviceDays?.sixteenNeedsDataBy == LocalDate("2026-03-17")!)
        #expect(progress["a"]?.need == BillingProgress.Need(days: 4, minutesShort: 0))
        #expect(progress["a"]?.deviceDays?.sixteenNeedsDataBy == LocalDate("2026-03-20")!)
        #expect(progress["c"] == nil)
    }
}
