import Foundation
import GRDB
import Testing
import VitalsAlerting
import VitalsDomain
import VitalsStore

/// A patient in Pago Pago (UTC−11, no daylight saving) with a glucometer, episode from 2026-03-01.
private func farPatient(_ dir: TemporaryDirectory) throws -> AppDatabase {
    let db = try AppDatabase.open(path: dir.path + "/billing.sqlite")
    try db.upsertPatient(Patient(id: "pp", timezone: "Pacific/Pago_Pago", programs: [.diabetes]), actor: "t")
    try db.upsertDevice(Device(id: "gpp", kind: .glucometer, patientID: "pp"), actor: "t")
    try db.startEpisode(patientID: "pp", startDate: LocalDate("2026-03-01")!, practitioner: "Dr. Ng", actor: "t")
    return db
}

/// A glucose reading measured at a local time in Pago Pago (`2026-03-05T23:50`).
private func localReading(_ local: String, value: Int = 120) -> IncomingMessage {
    message("gpp", #"{"type":"glucose","value":\#(value),"unit":"mg/dL","measured_at":"\#(local):00-11:00"}"#)
}

@Suite("billing evidence")
struct BillingTests {
    @Test("days of data are distinct local dates: 15 days near midnight give 99445, 16 give 99454")
    func dataDays() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)
        // Days 1–15 of March, each read at 23:50 local (10:50Z the next UTC day), and day 1 again at
        // 00:10 local: 16 readings on 15 local dates, spread over 16 UTC dates.
        var messages = (1...15).map { localReading(String(format: "2026-03-%02dT23:50", $0)) }
        messages.append(localReading("2026-03-01T00:10"))
        _ = try await db.ingest(messages, pipeline: pipeline)
        // A reading typed in by a nurse on March 20 is kept but is not a day of data.
        _ = try db.recordManualReading(
            deviceID: "gpp", typeName: "glucose", value: 130, unit: "mg/dL",
            measuredAt: MeasurementTimePolicy.parseRFC3339("2026-03-20T09:00:00-11:00")!, actor: "nurse", pipeline: pipeline)

        let rules = BillingRules()
        var report = try db.billingReport(month: YearMonth("2026-03")!, rules: rules)
        #expect(report.count == 1)
        #expect(report[0].periods.map(\.period.end) == [LocalDate("2026-03-30")!])
        #expect(report[0].periods[0].dataDays == 15)
        #expect(report[0].periods[0].deviceCode == "99445")
        #expect(report[0].periods[0].setup99453 == false)

        _ = try await db.ingest([localReading("2026-03-30T23:59")], pipeline: pipeline)
        report = try db.billingReport(month: YearMonth("2026-03")!, rules: rules)
        #expect(report[0].periods[0].dataDays == 16)
        #expect(report[0].periods[0].deviceCode == "99454")
        #expect(report[0].periods[0].setup99453)
        // 2026-03-31T00:30 local is past period 1: it starts period 2 (Mar 31 – Apr 29), reported in April.
        _ = try await db.ingest([localReading("2026-03-31T00:30")], pipeline: pipeline)
        let april = try db.billingReport(month: YearMonth("2026-04")!, rules: rules)
        #expect(april[0].periods.map(\.dataDays) == [1])
        #expect(april[0].periods[0].deviceCode == nil)
        #expect(april[0].periods[0].setup99453 == false)  // once per episode

        let log = try db.transmissionDays(
            patientID: "pp", timeZone: TimeZone(identifier: "Pacific/Pago_Pago")!, from: LocalDate("2026-03-01")!,
            through: LocalDate("2026-03-30")!)
        #expect(log.count == 16)
        #expect(log[0].date == LocalDate("2026-03-01")! && log[0].readings == 2)
    }

    @Test("management minutes per local calendar month; voided entries, CCM and non-interactive months")
    func minutes() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)
        func at(_ s: String) -> Date { MeasurementTimePolicy.parseRFC3339(s)! }
        try db.logTime(NewTimeEntry(patientID: "pp", minutes: 15, performedAt: at("2026-03-10T10:00:00-11:00"),
                                    performedBy: "rn.a", activity: "call about lows", modality: .audio))
        // 23:30 on March 31 local is April 1 in UTC: it counts in March.
        try db.logTime(NewTimeEntry(patientID: "pp", minutes: 10, performedAt: at("2026-03-31T23:30:00-11:00"),
                                    performedBy: "rn.a", activity: "data review"))
        let wrong = try db.logTime(NewTimeEntry(patientID: "pp", minutes: 20, performedAt: at("2026-03-12T10:00:00-11:00"),
                                                performedBy: "rn.b", activity: "logged on the wrong patient"))
        try db.voidTime(entryID: wrong, by: "rn.b", reason: "wrong patient")
        #expect(throws: BillingError.self) { try db.voidTime(entryID: wrong, by: "rn.b", reason: "again") }
        try db.logTime(NewTimeEntry(patientID: "pp", program: .ccm, minutes: 20, performedAt: at("2026-03-15T10:00:00-11:00"),
                                    performedBy: "rn.c", activity: "care plan"))
        // April: 30 minutes, none interactive.
        try db.logTime(NewTimeEntry(patientID: "pp", minutes: 30, performedAt: at("2026-04-02T10:00:00-11:00"),
                                    performedBy: "rn.a", activity: "data review"))

        let march = try db.billingReport(month: YearMonth("2026-03")!, rules: BillingRules())[0]
        #expect(march.rpmMinutes == 25)  // 15 + 10; the voided 20 and the CCM 20 do not count
        #expect(march.interactive)
        #expect(march.managementCodes == ["99457": 1])
        #expect(march.ccmMinutes == 20)
        #expect(march.ccmCodes == ["99490": 1])
        let april = try db.billingReport(month: YearMonth("2026-04")!, rules: BillingRules())[0]
        #expect(april.rpmMinutes == 30)
        #expect(april.interactive == false)
        #expect(april.managementCodes == [:])
        // Entries are append-only.
        #expect(throws: DatabaseError.self) { try db.writer.write { try $0.execute(sql: "UPDATE time_entries SET minutes = 60") } }
        #expect(throws: DatabaseError.self) { try db.writer.write { try $0.execute(sql: "DELETE FROM time_entries") } }
    }

    @Test("one open episode per patient; adherence says when 16 days can no longer be reached")
    func episodesAndAdherence() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)
        #expect(throws: BillingError.self) {
            try db.startEpisode(patientID: "pp", startDate: LocalDate("2026-04-01")!, practitioner: "Dr. B", actor: "t")
        }
        _ = try await db.ingest([localReading("2026-03-02T08:00"), localReading("2026-03-03T08:00")], pipeline: pipeline)
        // On 2026-03-17 (local), period 1 (Mar 1–30) has 2 days of data and 13 days after today:
        // at most 2 + 13 + 1 (today) = 16 days: still reachable. On Mar 18, at most 15: not.
        let mar17 = MeasurementTimePolicy.parseRFC3339("2026-03-17T12:00:00-11:00")!
        let a = try db.adherence(rules: BillingRules(), today: mar17)
        #expect(a.count == 1)
        #expect(a[0].dataDaysSoFar == 2)
        #expect(a[0].daysLeft == 13)
        #expect(a[0].reachable16)
        let b = try db.adherence(rules: BillingRules(), today: mar17.addingTimeInterval(86_400))
        #expect(b[0].reachable16 == false)
        #expect(b[0].reachable2)
        try db.endEpisode(patientID: "pp", endDate: LocalDate("2026-03-20")!, actor: "t")
        #expect(try db.adherence(rules: BillingRules(), today: mar17).isEmpty)
    }
}

@Suite("routine tasks on a timer")
struct RoutineTaskTests {
    @Test("16 days out of reach: one routine task per period, never repeated, also after a restart")
    func daysOfData() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)
        _ = try await db.ingest([localReading("2026-03-02T08:00"), localReading("2026-03-03T08:00")], pipeline: pipeline)
        let mar17 = MeasurementTimePolicy.parseRFC3339("2026-03-17T12:00:00-11:00")!
        let mar18 = mar17.addingTimeInterval(86_400)
        // noDataDays is large here so that only the days-of-data rule speaks.
        #expect(try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 60, now: mar17).daysOfDataTasks == 0)
        #expect(try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 60, now: mar18).daysOfDataTasks == 1)
        #expect(try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 60, now: mar18.addingTimeInterval(3600)).daysOfDataTasks == 0)
        let reopened = try AppDatabase.open(path: dir.path + "/billing.sqlite")
        #expect(try await reopened.openRoutineTasks(rules: BillingRules(), noDataDays: 60, now: mar18).daysOfDataTasks == 0)
        let task = try #require(try db.tasks().first)
        #expect(task.kind == .daysOfData)
        #expect(task.priority == .routine)
        #expect(task.reason == "Days of data: 16 can no longer be reached in period 1 (2026-03-01 to 2026-03-30): 2 so far, 12 days left")
        _ = try db.resolveTask(id: task.id, by: "rn.a", time: NewTimeEntry(
            patientID: "", minutes: 12, performedBy: "rn.a", activity: "called about the meter", modality: .audio))
        #expect(try await db.openRoutineTasks(rules: BillingRules(), noDataDays: 60, now: mar18.addingTimeInterval(7200)).daysOfDataTasks == 0)
        let entries = try db.timeEntries(patientID: "pp")
        #expect(entries.map(\.minutes) == [12])
        #expect(entries.first?.taskID == task.id)
        #expect(entries.first?.interactive == true)
    }

    @Test("no data for 3 days: one task per silence")
    func noData() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)
        _ = try await db.ingest([localReading("2026-03-03T08:00")], pipeline: pipeline)
        let last = MeasurementTimePolicy.parseRFC3339("2026-03-03T08:00:00-11:00")!
        let rules = BillingRules()
        #expect(try await db.openRoutineTasks(rules: rules, noDataDays: 3, now: last.addingTimeInterval(3 * 86_400 - 60)).noDataTasks == 0)
        #expect(try await db.openRoutineTasks(rules: rules, noDataDays: 3, now: last.addingTimeInterval(3 * 86_400)).noDataTasks == 1)
        #expect(try await db.openRoutineTasks(rules: rules, noDataDays: 3, now: last.addingTimeInterval(4 * 86_400)).noDataTasks == 0)
        let task = try #require(try db.tasks().first { $0.kind == .noData })
        #expect(task.reason == "No device data for 3 days since the last reading on 2026-03-03")
        _ = try db.resolveTask(id: task.id, by: "rn.a")
        #expect(try await db.openRoutineTasks(rules: rules, noDataDays: 3, now: last.addingTimeInterval(5 * 86_400)).noDataTasks == 0)
        // Data resumes, then stops again: a new silence, a new task.
        _ = try await db.ingest([localReading("2026-03-10T08:00")], pipeline: pipeline)
        let later = MeasurementTimePolicy.parseRFC3339("2026-03-14T08:00:00-11:00")!
        #expect(try await db.openRoutineTasks(rules: rules, noDataDays: 3, now: later).noDataTasks == 1)
    }
}

@Suite("database care")
struct MaintenanceTests {
    @Test("online backup, WAL checkpoint, payload retention and the audit trail")
    func care() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try enrolledDatabase(dir)
        _ = try await db.ingest([glucose(100, minutesAgo: 5), glucose(101, minutesAgo: 4)], pipeline: pipeline)
        let old = IncomingMessage(topic: "devices/g1/readings", deviceID: "g1", payload: Array(#"{"old":1"#.utf8),
                                  receivedAt: Date().addingTimeInterval(-40 * 86_400))
        let recent = message("g1", #"{"recent":1"#)
        _ = try await db.ingest([old, recent], pipeline: pipeline)

        try db.backup(to: dir.path + "/copy.sqlite")
        let copy = try AppDatabase.open(path: dir.path + "/copy.sqlite")
        #expect(try copy.statistics().readings == 2)
        #expect(try copy.statistics().deadLetters == 2)
        #expect(try db.checkpoint() >= 0)

        #expect(try db.purgeDeadLetterPayloads(before: Date().addingTimeInterval(-30 * 86_400)) == 1)
        let letters = try db.deadLetters()
        #expect(letters.count == 2)  // reasons stay
        let byAge = Dictionary(uniqueKeysWithValues: letters.map { ($0.receivedAt < Date().addingTimeInterval(-86_400), $0.id) })
        #expect(try db.deadLetterPayload(id: byAge[true]!) == Data())
        #expect(try db.deadLetterPayload(id: byAge[false]!) == Data(#"{"recent":1"#.utf8))

        let audit = try db.auditEntries()
        #expect(audit.map(\.action) == ["patient.create", "device.create", "patient.create", "device.create"])
        #expect(audit.allSatisfy { $0.actor == "test" })
    }

    @Test("an episode cannot start after today, nor time be logged for the future")
    func noFutureBillingEvidence() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)
        try db.endEpisode(patientID: "pp", endDate: LocalDate("2026-03-31")!, actor: "t")
        // 2026-11-29T05:00Z is still 2026-11-28 in Pago Pago (UTC−11): the 29th is tomorrow there.
        let now = MeasurementTimePolicy.parseRFC3339("2026-11-29T05:00:00Z")!
        #expect(throws: BillingError.self) {
            try db.startEpisode(patientID: "pp", startDate: LocalDate("2026-11-29")!, practitioner: "Dr. Ng", actor: "t", now: now)
        }
        _ = try db.startEpisode(patientID: "pp", startDate: LocalDate("2026-11-28")!, practitioner: "Dr. Ng", actor: "t", now: now)
        #expect(throws: BillingError.self) {
            try db.logTime(NewTimeEntry(patientID: "pp", minutes: 5, performedAt: Date().addingTimeInterval(3_600),
                                        performedBy: "nurse", activity: "call"))
        }
    }

    @Test("one entry longer than billing.max_entry_minutes, and RPM time before the episode, are refused with the rule")
    func implausibleTimeRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try farPatient(dir)  // episode from 2026-03-01 in Pago Pago (UTC−11)
        func log(_ minutes: Int, _ at: String, program: CareProgram = .rpm, max: Int = 120) throws {
            try db.logTime(NewTimeEntry(patientID: "pp", program: program, minutes: minutes,
                                        performedAt: MeasurementTimePolicy.parseRFC3339(at)!, performedBy: "rn", activity: "call",
                                        maxMinutes: max))
        }
        do {
            try log(600, "2026-03-10T10:00:00-11:00")
            Issue.record("a 600-minute entry was accepted")
        } catch let e as BillingError {
            #expect(e.description.hasPrefix("a single time entry of 600 minutes is refused: more than billing.max_entry_minutes (120)"))
            #expect(e.description.contains("clinical-and-billing.md §2.2 rule 8"))
        }
        try log(120, "2026-03-10T10:00:00-11:00")
        try log(180, "2026-03-11T10:00:00-11:00", max: 240)  // a program that allows longer sessions
        // 2026-03-01T05:00Z is still February 28 in Pago Pago: before the episode.
        do {
            try log(20, "2026-03-01T05:00:00Z")
            Issue.record("time before the episode was accepted")
        } catch let e as BillingError {
            #expect(e.description.hasPrefix("2026-02-28 is before patient pp's RPM episode started on 2026-03-01"))
            #expect(e.description.contains("clinical-and-billing.md §2.2 rule 15"))
        }
        // CCM minutes are not RPM episode time.
        try log(20, "2026-02-20T10:00:00-11:00", program: .ccm)
        try db.upsertPatient(Patient(id: "noep", timezone: "UTC", programs: [.diabetes]), actor: "t")
        #expect(throws: BillingError.self) {
            try db.logTime(NewTimeEntry(patientID: "noep", minutes: 10, performedAt: Date().addingTimeInterval(-60),
                                        performedBy: "rn", activity: "call"))
        }
    }

    @Test("entries logged before these rules do not bill: the report leaves them out and says so")
    func legacyEntriesFlagged() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let db = try AppDatabase.open(path: dir.path + "/legacy.sqlite")
        try db.upsertPatient(Patient(id: "lg", timezone: "UTC", programs: [.diabetes]), actor: "t")
        try db.startEpisode(patientID: "lg", startDate: LocalDate("2026-03-10")!, practitioner: "Dr. Ng", actor: "t")
        try db.logTime(NewTimeEntry(patientID: "lg", minutes: 25, performedAt: MeasurementTimePolicy.parseRFC3339("2026-03-12T15:00:00Z")!,
                                    performedBy: "rn", activity: "call", modality: .audio))
        // As the old code accepted them: 600 minutes in one entry, and 30 minutes before the episode.
        try db.writer.write { db in
            for (minutes, at) in [(600, "2026-03-15T15:00:00Z"), (30, "2026-03-05T15:00:00Z")] {
                try db.execute(sql: """
                    INSERT INTO time_entries(patient_id, program, minutes, performed_at, performed_by, activity, interactive, created_at)
                    VALUES ('lg', 'rpm', ?, ?, 'rn', 'old', 0, 0)
                    """, arguments: [minutes, epochMilliseconds(MeasurementTimePolicy.parseRFC3339(at)!)])
            }
        }
        let row = try #require(try db.billingReport(month: YearMonth("2026-03")!, rules: BillingRules()).first)
        // 25 interactive minutes: 99457 alone. Counting everything, 655 minutes would have billed
        // 99457 + 31 × 99458 ((655 − 20) / 20, uncapped).
        #expect(row.rpmMinutes == 25)
        #expect(row.managementCodes == ["99457": 1])
        #expect(row.review.count == 2)
        #expect(row.review.first?.hasSuffix(": 600 minutes, more than billing.max_entry_minutes (120): not counted; void it and log each session") == true)
        #expect(row.review.last == "30 RPM minutes dated outside episode 1 (2026-03-10 to open) not counted: consent precedes service (clinical-and-billing.md §2.2 rule 15)")
    }
}
