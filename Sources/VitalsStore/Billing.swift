import Foundation
import GRDB
import VitalsDomain

/// An RPM episode of care: from the patient's consent date until it ends, billed by one practitioner.
public struct Episode: Sendable, Hashable, Codable {
    public var id: Int64
    public var patientID: String
    /// Consent date, local to the patient; device periods count from it.
    public var startDate: LocalDate
    /// Last day of monitoring, if the episode ended.
    public var endDate: LocalDate?
    /// The one practitioner who bills RPM for the patient (CMS: one per 30-day period).
    public var billingPractitioner: String
}

/// The program a minute of care-management time belongs to. A minute belongs to exactly one.
public enum CareProgram: String, Sendable, Hashable, Codable, CaseIterable {
    /// RPM treatment management (99470/99457/99458).
    case rpm
    /// Chronic care management (99490/99439).
    case ccm
}

/// How a real-time interactive communication took place.
public enum InteractionModality: String, Sendable, Hashable, Codable, CaseIterable {
    case audio
    case video
    /// Real-time two-way messaging in which the patient replies; whether it qualifies is disputed [verify].
    case syncMessage = "sync_message"
}

/// Minutes of care-management time, as logged. Entries are never edited: a correction voids one.
public struct TimeEntry: Sendable, Hashable, Codable {
    public var id: Int64
    public var patientID: String
    public var program: CareProgram
    /// Whole minutes as logged; for an entry measured by the workspace timer, its seconds rounded to
    /// the nearest minute (at least 1), for display only: billing counts ``seconds`` then.
    public var minutes: Int
    /// The measured length in seconds of an entry made by the workspace timer; nil for minutes typed in.
    public var seconds: Int?
    public var performedAt: Date
    public var performedBy: String
    public var activity: String
    /// A real-time interactive communication with the patient or caregiver.
    public var interactive: Bool
    public var modality: InteractionModality?
    public var taskID: Int64?
    /// Set on a voiding entry: the entry it cancels.
    public var voidsEntryID: Int64?
    public var voidReason: String?
    /// True when a later entry voided this one.
    public var voided: Bool

    /// Counts toward billing: neither a voiding entry nor voided.
    public var isValid: Bool { voidsEntryID == nil && !voided }

    /// The entry's length in seconds: measured (``seconds``) or logged minutes × 60.
    public var durationSeconds: Int { seconds ?? minutes * 60 }
}

extension TimeEntry {
    /// The length as a person reads it, the measure billing counts: "45 s", "2 min 5 s" for a
    /// timer's entry, "15 min" for minutes typed in.
    public var lengthText: String { seconds.map(Self.lengthText(seconds:)) ?? "\(minutes) min" }

    /// "45 s", "2 min", "2 min 5 s".
    public static func lengthText(seconds: Int) -> String {
        if seconds < 60 { return "\(seconds) s" }
        return seconds % 60 == 0 ? "\(seconds / 60) min" : "\(seconds / 60) min \(seconds % 60) s"
    }
}

extension TimeEntry {
    /// A `time_entries` row with a `voided` column.
    init(row r: Row) {
        self.init(
            id: r["id"], patientID: r["patient_id"], program: CareProgram(rawValue: r["program"]) ?? .rpm,
            minutes: r["minutes"], seconds: r["seconds"], performedAt: dateFromEpochMilliseconds(r["performed_at"]),
            performedBy: r["performed_by"], activity: r["activity"], interactive: r["interactive"],
            modality: (r["modality"] as String?).flatMap(InteractionModality.init), taskID: r["task_id"],
            voidsEntryID: r["voids_entry_id"], voidReason: r["void_reason"], voided: r["voided"])
    }
}

/// A new time entry.
public struct NewTimeEntry: Sendable, Hashable {
    public var patientID: String
    public var program: CareProgram
    public var minutes: Int
    /// Seconds measured by the workspace timer (``init(patientID:program:seconds:performedAt:performedBy:activity:modality:maxMinutes:)``).
    public var seconds: Int?
    public var performedAt: Date
    public var performedBy: String
    public var activity: String
    public var modality: InteractionModality?
    public var taskID: Int64?
    /// The most minutes this entry may hold: `billing.max_entry_minutes` (``BillingRules/maxEntryMinutes``).
    public var maxMinutes: Int
    /// The token of the workspace page whose timer measured this entry; an entry per token
    /// (`time_entries.timer_page` is unique). Nil for entries typed in.
    public var timerPage: String?

    /// - Parameter modality: set only for a real-time interactive communication.
    public init(patientID: String, program: CareProgram = .rpm, minutes: Int, performedAt: Date = Date(),
                performedBy: String, activity: String, modality: InteractionModality? = nil, taskID: Int64? = nil,
                maxMinutes: Int = BillingRules.defaultMaxEntryMinutes) {
        self.maxMinutes = maxMinutes
        self.patientID = patientID
        self.program = program
        self.minutes = minutes
        self.performedAt = performedAt
        self.performedBy = performedBy
        self.activity = activity
        self.modality = modality
        self.taskID = taskID
    }

    /// An entry measured by the workspace timer: `seconds` long, ending at `end`, so performed at
    /// `end − seconds`. Its ``minutes`` are the seconds rounded to the nearest minute (at least 1),
    /// for display; billing counts the seconds.
    public init(patientID: String, program: CareProgram, seconds: Int, end: Date, performedBy: String, activity: String,
                modality: InteractionModality?, maxMinutes: Int = BillingRules.defaultMaxEntryMinutes) {
        self.init(patientID: patientID, program: program, minutes: max(1, Int((Double(seconds) / 60).rounded())),
                  performedAt: end.addingTimeInterval(-Double(seconds)), performedBy: performedBy, activity: activity,
                  modality: modality, maxMinutes: maxMinutes)
        self.seconds = seconds
    }
}

/// A billing change that cannot be made.
public struct BillingError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension AppDatabase {
    // MARK: Episodes

    /// Starts an RPM episode on its consent date.
    /// - Throws: ``BillingError`` when the patient is unknown, already has an open episode, or the date
    ///   is after today in the patient's time zone (consent cannot be given in the future).
    @discardableResult
    public func startEpisode(
        patientID: String, startDate: LocalDate, practitioner: String, actor: String, now: Date = Date()
    ) throws -> Episode {
        try writer.write { db in
            guard let patient = try Self.fetchPatient(db, id: patientID) else { throw BillingError("patient \(patientID) is not enrolled") }
            if let zone = TimeZone(identifier: patient.timezone), startDate > LocalDate(now, in: zone) {
                throw BillingError("an episode starts on the consent date, which cannot be after today (\(LocalDate(now, in: zone)) in \(patient.timezone))")
            }
            if try Int.fetchOne(db, sql: "SELECT 1 FROM episodes WHERE patient_id = ? AND end_date IS NULL", arguments: [patientID]) != nil {
                throw BillingError("patient \(patientID) already has an open episode; end it first")
            }
            try db.execute(
                sql: "INSERT INTO episodes(patient_id, start_date, billing_practitioner, created_at, created_by) VALUES (?, ?, ?, ?, ?)",
                arguments: [patientID, startDate.description, practitioner, epochMilliseconds(Date()), actor])
            let id = db.lastInsertedRowID
            try Self.audit(db, actor: actor, action: "episode.start", targetType: "patient", targetID: patientID,
                           detail: "episode \(id) from \(startDate), practitioner \(practitioner)")
            return Episode(id: id, patientID: patientID, startDate: startDate, endDate: nil, billingPractitioner: practitioner)
        }
    }

    /// Ends a patient's open episode on `endDate` (inclusive).
    /// - Throws: ``BillingError`` when there is no open episode or the date precedes its start.
    public func endEpisode(patientID: String, endDate: LocalDate, actor: String) throws {
        try writer.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT id, start_date FROM episodes WHERE patient_id = ? AND end_date IS NULL",
                                             arguments: [patientID]) else {
                throw BillingError("patient \(patientID) has no open episode")
            }
            guard endDate >= LocalDate(row["start_date"] as String)! else { throw BillingError("end date is before the episode start") }
            let id: Int64 = row["id"]
            try db.execute(sql: "UPDATE episodes SET end_date = ? WHERE id = ?", arguments: [endDate.description, id])
            try Self.audit(db, actor: actor, action: "episode.end", targetType: "patient", targetID: patientID,
                           detail: "episode \(id) ends \(endDate)")
        }
    }

    /// Episodes, optionally one patient's, oldest first.
    public func episodes(patientID: String? = nil) throws -> [Episode] {
        try writer.read { db in try Self.fetchEpisodes(db, patientID: patientID) }
    }

    static func fetchEpisodes(_ db: Database, patientID: String?) throws -> [Episode] {
        try Row.fetchAll(
            db, sql: "SELECT * FROM episodes WHERE ?1 IS NULL OR patient_id = ?1 ORDER BY patient_id, start_date",
            arguments: [patientID]
        ).map { r in
            Episode(id: r["id"], patientID: r["patient_id"], startDate: LocalDate(r["start_date"] as String)!,
                    endDate: (r["end_date"] as String?).flatMap(LocalDate.init), billingPractitioner: r["billing_practitioner"])
        }
    }

    // MARK: Time entries

    /// Logs care-management minutes.
    ///
    /// Refused: more minutes than ``NewTimeEntry/maxMinutes`` in one entry (a typo that would bill
    /// 99457 + 29 × 99458, `clinical-and-billing.md` §2.2 rule 8: an entry is the duration of one piece
    /// of work); a time in the future; and RPM time on a local date (patient's time zone) outside every
    /// RPM episode of the patient: consent comes before service (§2.2 rule 15), and such time would
    /// never be billed.
    /// - Returns: the new entry's id.
    /// - Throws: ``BillingError`` naming the rule.
    @discardableResult
    public func logTime(_ entry: NewTimeEntry) throws -> Int64 {
        try writer.write { db in try Self.logTime(db, entry) }
    }

    /// ``logTime(_:)`` for async callers (the workspace): the same rules, without blocking a thread of the pool.
    @discardableResult
    public func recordTime(_ entry: NewTimeEntry) async throws -> Int64 {
        try await writer.write { db in try Self.logTime(db, entry) }
    }

    static func logTime(_ db: Database, _ entry: NewTimeEntry) throws -> Int64 {
        guard try fetchPatient(db, id: entry.patientID) != nil else { throw BillingError("patient \(entry.patientID) is not enrolled") }
        guard entry.minutes >= 1 else { throw BillingError("minutes must be at least 1") }
        let limit = min(entry.maxMinutes, 600)
        if let seconds = entry.seconds {
            guard (1...limit * 60).contains(seconds) else {
                throw BillingError(
                    "a timed entry of \(seconds) seconds is refused: it must be 1 second to billing.max_entry_minutes (\(limit) minutes); each entry is the duration of one piece of work (clinical-and-billing.md §2.2 rule 8)")
            }
        }
        guard entry.minutes <= limit else {
            throw BillingError(
                "a single time entry of \(entry.minutes) minutes is refused: more than billing.max_entry_minutes (\(limit)); log each session as its own entry (each entry is the duration of one piece of work, clinical-and-billing.md §2.2 rule 8)")
        }
        if entry.program == .rpm, let problem = try episodeProblem(db, patientID: entry.patientID, at: entry.performedAt) {
            throw BillingError(problem)
        }
        // Time is logged for work done: a time in the future (beyond clock skew) is a typo that would
        // count toward a month not yet begun.
        guard entry.performedAt <= Date().addingTimeInterval(600) else {
            throw BillingError("the time entry is in the future; log time for work already done")
        }
        if let page = entry.timerPage {
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM time_entries WHERE timer_page = ?", arguments: [page]) == true {
                throw BillingError("this timer's time is already logged (the page was sent twice); reload the page to start a new timer")
            }
            // One person's time is counted once: timers of two pages (two tabs) running together for
            // the same patient and program would log the same minutes twice.
            let start = epochMilliseconds(entry.performedAt)
            let end = start + Int64(entry.seconds ?? entry.minutes * 60) * 1000
            if try Bool.fetchOne(db, sql: """
                SELECT 1 FROM time_entries e
                WHERE e.patient_id = ? AND e.program = ? AND e.performed_by = ? AND e.timer_page IS NOT NULL
                  AND e.performed_at < ? AND e.performed_at + e.seconds * 1000 > ?
                  AND NOT EXISTS (SELECT 1 FROM time_entries v WHERE v.voids_entry_id = e.id)
                """, arguments: [entry.patientID, entry.program.rawValue, entry.performedBy, end, start]) == true {
                throw BillingError("this timer ran while another page's timer for the same patient was counting your time, and that time is already logged")
            }
        }
        try db.execute(
            sql: """
                INSERT INTO time_entries(patient_id, program, minutes, seconds, performed_at, performed_by, activity, interactive,
                                         modality, task_id, created_at, timer_page)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [entry.patientID, entry.program.rawValue, entry.minutes, entry.seconds, epochMilliseconds(entry.performedAt),
                        entry.performedBy, entry.activity, entry.modality != nil, entry.modality?.rawValue, entry.taskID,
                        epochMilliseconds(Date()), entry.timerPage])
        let id = db.lastInsertedRowID
        try audit(db, actor: entry.performedBy, action: "time.log", targetType: "patient", targetID: entry.patientID,
                  detail: "entry \(id): \(entry.seconds.map { "\($0) s" } ?? "\(entry.minutes) min") \(entry.program.rawValue)\(entry.modality.map { ", interactive \($0.rawValue)" } ?? "")")
        return id
    }

    /// Why RPM time at `instant` cannot be logged for a patient, or nil when one of the patient's RPM
    /// episodes covers its local date (patient's time zone).
    static func episodeProblem(_ db: Database, patientID: String, at instant: Date) throws -> String? {
        guard let patient = try fetchPatient(db, id: patientID), let zone = TimeZone(identifier: patient.timezone) else { return nil }
        let day = LocalDate(instant, in: zone)
        let episodes = try Row.fetchAll(
            db, sql: "SELECT start_date, end_date FROM episodes WHERE patient_id = ? AND program = 'rpm' ORDER BY start_date",
            arguments: [patientID]
        ).compactMap { r -> (start: LocalDate, end: LocalDate?)? in
            guard let start = LocalDate(r["start_date"] as String) else { return nil }
            return (start, (r["end_date"] as String?).flatMap(LocalDate.init))
        }
        if episodes.contains(where: { $0.start <= day && ($0.end.map { day <= $0 } ?? true) }) { return nil }
        let rule = "RPM time counts only within an episode, which starts on the consent date (clinical-and-billing.md §2.2 rule 15); time outside one is never billed"
        guard let first = episodes.first else {
            return "patient \(patientID) has no RPM episode (vitalsd episode start): \(rule)"
        }
        if day < first.start {
            return "\(day) is before patient \(patientID)'s RPM episode started on \(first.start): \(rule)"
        }
        return "no RPM episode of patient \(patientID) covers \(day): \(rule)"
    }

    /// Voids an entry with a new entry that records who and why.
    /// - Returns: the voiding entry's id.
    /// - Throws: ``BillingError`` when the entry does not exist, is itself a void, or is already voided.
    @discardableResult
    public func voidTime(entryID: Int64, by actor: String, reason: String) throws -> Int64 {
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw BillingError("a void needs a reason") }
        return try writer.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM time_entries WHERE id = ?", arguments: [entryID]) else {
                throw BillingError("time entry \(entryID) does not exist")
            }
            guard row["voids_entry_id"] as Int64? == nil else { throw BillingError("entry \(entryID) is itself a void") }
            if try Int.fetchOne(db, sql: "SELECT 1 FROM time_entries WHERE voids_entry_id = ?", arguments: [entryID]) != nil {
                throw BillingError("entry \(entryID) is already voided")
            }
            try db.execute(
                sql: """
                    INSERT INTO time_entries(patient_id, program, minutes, seconds, performed_at, performed_by, activity, interactive,
                                             voids_entry_id, void_reason, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
                    """,
                arguments: [row["patient_id"], row["program"], row["minutes"], row["seconds"], row["performed_at"], actor,
                            "void of entry \(entryID)", entryID, reason, epochMilliseconds(Date())])
            let id = db.lastInsertedRowID
            try Self.audit(db, actor: actor, action: "time.void", targetType: "patient", targetID: row["patient_id"],
                           detail: "entry \(id) voids entry \(entryID): \(reason)")
            return id
        }
    }

    /// A patient's time entries performed in [from, to), oldest first, with their voided state.
    public func timeEntries(patientID: String, from: Date? = nil, to: Date? = nil) throws -> [TimeEntry] {
        try writer.read { db in try Self.timeEntries(db, patientID: patientID, from: from, to: to) }
    }

    static func timeEntries(_ db: Database, patientID: String, from: Date?, to: Date?) throws -> [TimeEntry] {
        try Row.fetchAll(
            db.cachedStatement(sql: """
                SELECT e.*, EXISTS (SELECT 1 FROM time_entries v WHERE v.voids_entry_id = e.id) AS voided
                FROM time_entries e
                WHERE e.patient_id = ?1 AND (?2 IS NULL OR e.performed_at >= ?2) AND (?3 IS NULL OR e.performed_at < ?3)
                ORDER BY e.performed_at, e.id
                """),
            arguments: [patientID, from.map(epochMilliseconds), to.map(epochMilliseconds)]
        ).map(TimeEntry.init(row:))
    }

    /// The time entries logged against a task, oldest first, with their voided state.
    public func timeEntries(taskID: Int64) async throws -> [TimeEntry] {
        try await writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT e.*, EXISTS (SELECT 1 FROM time_entries v WHERE v.voids_entry_id = e.id) AS voided
                    FROM time_entries e WHERE e.task_id = ? ORDER BY e.performed_at, e.id
                    """,
                arguments: [taskID]
            ).map(TimeEntry.init(row:))
        }
    }

    // MARK: Days of data

    /// One local date on which a patient's devices transmitted readings.
    public struct TransmissionDay: Sendable, Hashable, Codable {
        public var date: LocalDate
        /// Device-transmitted readings on that date.
        public var readings: Int
        /// The devices that transmitted, by id.
        public var devices: [String]
        public var first: Date
        public var last: Date
    }

    /// The dated transmission log of a patient between two local dates (inclusive): one row per
    /// local date with at least one reading transmitted by a device. Manual readings, duplicates
    /// (never stored twice), dead letters and telemetry (never stored as readings) do not count.
    public func transmissionDays(patientID: String, timeZone: TimeZone, from: LocalDate, through: LocalDate) throws -> [TransmissionDay] {
        try writer.read { db in try Self.transmissionDays(db, patientID: patientID, timeZone: timeZone, from: from, through: through) }
    }

    static func transmissionDays(
        _ db: Database, patientID: String, timeZone: TimeZone, from: LocalDate, through: LocalDate
    ) throws -> [TransmissionDay] {
        let start = epochMilliseconds(from.start(in: timeZone))
        let end = epochMilliseconds(through.adding(days: 1).start(in: timeZone))
        do {
            var days: [LocalDate: TransmissionDay] = [:]
            let calendar = LocalDate.calendar(timeZone)
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT measured_at, device_id FROM readings
                    WHERE patient_id = ? AND source = 'device' AND measured_at >= ? AND measured_at < ?
                    ORDER BY measured_at
                    """,
                arguments: [patientID, start, end])
            while let row = try rows.next() {
                let at = dateFromEpochMilliseconds(row["measured_at"])
                let date = LocalDate(at, calendar: calendar)
                let device: String = row["device_id"]
                if var day = days[date] {
                    day.readings += 1
                    day.last = at
                    if !day.devices.contains(device) { day.devices.append(device) }
                    days[date] = day
                } else {
                    days[date] = TransmissionDay(date: date, readings: 1, devices: [device], first: at, last: at)
                }
            }
            return days.values.sorted { $0.date < $1.date }
        }
    }
}
