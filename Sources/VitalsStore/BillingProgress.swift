import Foundation
import GRDB
import VitalsDomain

extension AppDatabase {
    /// A patient's ``BillingProgress`` at `now`, or nil without an RPM episode started by today
    /// (patient's time zone). Counted as `report billing` and `report adherence` count.
    public func billingProgress(patientID: String, rules: BillingRules, now: Date) async throws -> BillingProgress? {
        try await writer.read { db in try Self.billingProgress(db, patientIDs: [patientID], rules: rules, now: now)[patientID] }
    }

    /// A patient's time entries performed in [from, to), oldest first, with their voided state.
    public func timeEntriesAsync(patientID: String, from: Date, to: Date) async throws -> [TimeEntry] {
        try await writer.read { db in try Self.timeEntries(db, patientID: patientID, from: from, to: to) }
    }

    /// The ``BillingProgress`` of several patients at `now`, by patient id; patients without an RPM
    /// episode started by today are left out.
    public func billingProgress(patientIDs: Set<String>, rules: BillingRules, now: Date) async throws -> [String: BillingProgress] {
        try await writer.read { db in try Self.billingProgress(db, patientIDs: patientIDs, rules: rules, now: now) }
    }

    /// One read for many patients: their zones and latest episodes in two queries, then per patient
    /// the month's time entries and one index probe per day of the current device period.
    static func billingProgress(_ db: Database, patientIDs: Set<String>, rules: BillingRules, now: Date) throws -> [String: BillingProgress] {
        guard !patientIDs.isEmpty else { return [:] }
        let ids = try jsonArray(patientIDs)
        var zones: [String: TimeZone] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, timezone FROM patients WHERE id IN (SELECT value FROM json_each(?))", arguments: [ids]) {
            zones[row[0]] = TimeZone(identifier: row[1])
        }
        // Each patient's latest RPM episode (by start date).
        var episodes: [String: Episode] = [:]
        for r in try Row.fetchAll(
            db,
            sql: """
                SELECT * FROM episodes WHERE program = 'rpm' AND patient_id IN (SELECT value FROM json_each(?))
                ORDER BY patient_id, start_date, id
                """,
            arguments: [ids]) {
            guard let start = LocalDate(r["start_date"] as String) else { continue }
            episodes[r["patient_id"]] = Episode(
                id: r["id"], patientID: r["patient_id"], startDate: start, endDate: (r["end_date"] as String?).flatMap(LocalDate.init),
                billingPractitioner: r["billing_practitioner"])
        }
        var result: [String: BillingProgress] = [:]
        for (id, zone) in zones {
            let today = LocalDate(now, in: zone)
            guard let episode = episodes[id], episode.startDate <= today else { continue }
            let month = YearMonth(today)
            let (time, _) = monthlyTime(
                try timeEntries(db, patientID: id, from: month.first.start(in: zone), to: month.last.adding(days: 1).start(in: zone)),
                episode: episode, zone: zone, rules: rules)
            // A device period is at most 31 days (a calendar month).
            let from = max(episode.startDate, today.adding(days: -31))
            let dates = try dataDates(db, patientID: id, timeZone: zone, from: from, through: today)
            result[id] = BillingProgress.evaluate(
                rules: rules, episodeStart: episode.startDate, episodeEnd: episode.endDate, dataDates: dates, time: time,
                now: now, timeZone: zone)
        }
        return result
    }

    /// The local dates from `from` through `through` (inclusive) with at least one device-transmitted
    /// reading: one index probe per date (``transmissionDays(patientID:timeZone:from:through:)`` reads
    /// every reading, 288 a day from a CGM). Date bounds are the local midnights, so a 23- or 25-hour
    /// day across a daylight-saving change counts as one date.
    static func dataDates(_ db: Database, patientID: String, timeZone: TimeZone, from: LocalDate, through: LocalDate) throws -> Set<LocalDate> {
        var result: Set<LocalDate> = []
        guard from <= through else { return result }
        let statement = try db.cachedStatement(sql: """
            SELECT 1 FROM readings WHERE patient_id = ? AND measured_at >= ? AND measured_at < ? AND source = 'device' LIMIT 1
            """)
        var day = from
        var start = epochMilliseconds(day.start(in: timeZone))
        while day <= through {
            let next = day.adding(days: 1)
            let end = epochMilliseconds(next.start(in: timeZone))
            if try Int.fetchOne(statement, arguments: [patientID, start, end]) != nil { result.insert(day) }
            day = next
            start = end
        }
        return result
    }

    /// One page of a tab's task rows: tasks escalated to the user on top, then by priority, then by the
    /// patient's billing need (soonest first, none last), then as ``WorklistTab/order`` says: every
    /// task of the tab is ranked, then the page's rows are read.
    static func billableOrderedRows(
        _ db: Database, tab: WorklistTab, username: String, roleTarget: String, page: Int, pageSize: Int, rules: BillingRules, now: Date
    ) throws -> [Row] {
        // ?2 and ?3 are the page's limit and offset in the plain query; here every task is ranked.
        let ranked = try Row.fetchAll(
            db, sql: "SELECT t.id, t.priority, t.patient_id, coalesce(t.status = 'open' AND t.escalated_to IN (?1, ?4), 0) FROM tasks t WHERE \(tab.filter) ORDER BY \(tab.order)",
            arguments: [username, -1, 0, roleTarget])
        let progress = try billingProgress(db, patientIDs: Set(ranked.map { $0[2] as String }), rules: rules, now: now)
        let order = ranked.enumerated().map {
            index, row -> (escalated: Bool, priority: TaskPriority, need: BillingProgress.Need?, index: Int, id: Int64) in
            (row[3], TaskPriority(rawValue: row[1]) ?? .routine, progress[row[2] as String]?.need, index, row[0])
        }.sorted { a, b in
            if a.escalated != b.escalated { return a.escalated }
            if a.priority != b.priority { return a.priority > b.priority }
            switch (a.need, b.need) {
            case let (x?, y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return a.index < b.index
            }
        }
        let ids = order.dropFirst((WorklistPage.clamp(page) - 1) * pageSize).prefix(pageSize).map(\.id)
        guard !ids.isEmpty else { return [] }
        let rows = try Row.fetchAll(
            db,
            sql: """
                SELECT \(CareTask.columns(of: "t")), p.name AS patient_name, u.display_name AS owner_name
                FROM tasks t JOIN patients p ON p.id = t.patient_id LEFT JOIN users u ON u.username = t.owner
                WHERE t.id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))
                """,
            arguments: [try jsonArray(Set(ids.map(String.init)))])
        let position = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        return rows.sorted { position[$0["id"] as Int64] ?? 0 < position[$1["id"] as Int64] ?? 0 }
    }
}
