import Foundation
import GRDB
import VitalsDomain

/// The tabs of the care manager's worklist.
public enum WorklistTab: String, Sendable, Hashable, CaseIterable {
    /// Clinical tasks (critical and warning) the signed-in user owns.
    case mine
    /// Clinical tasks nobody owns.
    case unassigned
    /// Every clinical task of the team.
    case team
    /// Routine tasks (no data, days of data, device errors, low battery), apart from clinical alerts.
    case routine
    /// Resolved tasks, most recent first (to look back, or reopen one).
    case resolved

    /// The SQL condition on `tasks t` that selects the tab's tasks; `?1` is the signed-in user name,
    /// `?4` their role as an escalation target (`role:<role>`). Mine holds the user's tasks and the
    /// open tasks escalated to them or their role.
    var filter: String {
        switch self {
        case .mine: "t.status <> 'resolved' AND t.priority <> 'routine' AND (t.owner = ?1 OR (t.status = 'open' AND t.escalated_to IN (?1, ?4)))"
        case .unassigned: "t.status <> 'resolved' AND t.priority <> 'routine' AND t.owner IS NULL"
        case .team: "t.status <> 'resolved' AND t.priority <> 'routine'"
        case .routine: "t.status <> 'resolved' AND t.priority = 'routine'"
        case .resolved: "t.status = 'resolved'"
        }
    }

    /// Open tasks escalated to the user or their role on top, then priority (critical, warning,
    /// routine), then the escalation due first, then the oldest; resolved: the latest resolved first.
    var order: String {
        switch self {
        case .resolved: "t.resolved_at DESC, t.id DESC"
        default:
            """
            coalesce(t.status = 'open' AND t.escalated_to IN (?1, ?4), 0) DESC,
            CASE t.priority WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
            t.next_escalation_at IS NULL, t.next_escalation_at, t.opened_at, t.id
            """
        }
    }
}

/// A stored reading as the worklist shows it: canonical value and unit of its type.
public struct WorklistReading: Sendable, Hashable {
    public var type: VitalType
    /// In ``VitalType/canonicalUnit``.
    public var value: Double
    public var measuredAt: Date
    public var receivedAt: Date
}

/// The lowest and highest value of one time bucket of a sparkline (so that a low never disappears).
public struct SparklineBucket: Sendable, Hashable {
    /// 0 ..< bucket count, oldest first.
    public var index: Int
    public var minimum: Double
    public var maximum: Double
}

/// One task of the worklist with what its row shows.
public struct WorklistEntry: Sendable {
    public var task: CareTask
    public var patientName: String?
    /// The owner's display name.
    public var ownerName: String?
    /// When an open critical task escalates next, if it waits for an acknowledgement.
    public var nextEscalationAt: Date?
    /// The readings of the task's last occurrence, of its vital (systolic and diastolic for blood pressure).
    public var latest: [WorklistReading]
    /// The patient's programs and own limits, for the limits in force.
    public var programs: [Program]
    public var overrides: [ThresholdSlot: Double]
    /// The patient has an unresolved late-data review task.
    public var lateData: Bool
    /// The patient's unresolved device tasks (error codes, low battery, a silent device, HI/LO).
    public var deviceProblems: Int
    /// Readings of the task's vital types over the sparkline window, bucketed, by type.
    public var history: [VitalType: [SparklineBucket]]

    /// The vital types of the task: both pressures for `blood_pressure`, none for routine conditions.
    public var types: [VitalType] { WorklistEntry.types(ofVital: task.vital) }

    static func types(ofVital vital: String) -> [VitalType] {
        vital == "blood_pressure" ? [.systolicBP, .diastolicBP] : VitalType(rawValue: vital).map { [$0] } ?? []
    }
}

/// One page of a worklist tab, with the counts the tabs show.
public struct WorklistPage: Sendable {
    /// Highest page number served (a page past the last is empty): a bound that keeps offsets
    /// (`(page - 1) × page size`) far from overflow whatever a URL asks for.
    public static let maximumPage = 1_000_000

    /// `page` within 1...``maximumPage``.
    public static func clamp(_ page: Int) -> Int { min(max(1, page), maximumPage) }

    public var tab: WorklistTab
    /// 1-based.
    public var page: Int
    public var pageSize: Int
    /// Tasks in the tab.
    public var total: Int
    public var entries: [WorklistEntry]
    /// Tasks per tab (not for `resolved`).
    public var counts: [WorklistTab: Int]
    /// Critical tasks waiting for acknowledgement that are the user's or nobody's.
    public var openCritical: Int
}

/// The window and resolution of the sparklines.
public struct SparklineWindow: Sendable, Hashable {
    /// Seconds back from now (14 days).
    public var seconds: Double = 14 * 86_400
    /// Buckets across the window (56: one per 6 hours).
    public var buckets: Int = 56
    public init() {}
}

extension AppDatabase {
    /// A page of a worklist tab for `username`, sorted as ``WorklistTab/order`` says, with each row's
    /// latest readings, limits context, badges and sparkline data, read in one transaction.
    ///
    /// - Parameter billable: when set, tasks of the same priority are sorted by their patient's
    ///   ``BillingProgress/need`` under these rules (who needs a reading or a call soonest to stay
    ///   billable first; patients who need nothing last), then as ``WorklistTab/order`` says.
    ///   `role`: the user's role (`care_manager`, …): tasks escalated to it count as escalated to the user.
    public func worklist(
        tab: WorklistTab, username: String, page: Int, pageSize: Int, window: SparklineWindow = .init(), now: Date,
        billable: BillingRules? = nil, role: String? = nil
    ) async throws -> WorklistPage {
        let roleTarget = role.map { "role:" + $0 } ?? ""
        return try await writer.read { db in
            let counts = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT coalesce(sum(priority <> 'routine' AND (owner = ?1 OR (status = 'open' AND escalated_to IN (?1, ?2)))), 0) AS mine,
                           coalesce(sum(priority <> 'routine' AND owner IS NULL), 0) AS unassigned,
                           coalesce(sum(priority <> 'routine'), 0) AS team,
                           coalesce(sum(priority = 'routine'), 0) AS routine,
                           coalesce(sum(status = 'open' AND priority = 'critical'
                                        AND (owner = ?1 OR owner IS NULL OR escalated_to IN (?1, ?2))), 0) AS critical
                    FROM tasks WHERE status <> 'resolved'
                    """),
                arguments: [username, roleTarget])!
            let byTab: [WorklistTab: Int] = [
                .mine: counts["mine"], .unassigned: counts["unassigned"], .team: counts["team"], .routine: counts["routine"],
            ]
            let total = try tab == .resolved
                ? Int.fetchOne(db, sql: "SELECT count(*) FROM tasks WHERE status = 'resolved'") ?? 0
                : byTab[tab] ?? 0
            let rows: [Row]
            if let rules = billable, tab != .resolved {
                rows = try Self.billableOrderedRows(
                    db, tab: tab, username: username, roleTarget: roleTarget, page: page, pageSize: pageSize, rules: rules, now: now)
            } else {
                rows = try Row.fetchAll(
                    db.cachedStatement(sql: """
                        SELECT \(CareTask.columns(of: "t")), p.name AS patient_name, u.display_name AS owner_name
                        FROM tasks t JOIN patients p ON p.id = t.patient_id LEFT JOIN users u ON u.username = t.owner
                        WHERE \(tab.filter)
                        ORDER BY \(tab.order)
                        LIMIT ?2 OFFSET ?3
                        """),
                    // The resolved tab's filter and order name no ?4: SQLite then takes exactly three arguments.
                    arguments: StatementArguments([username, pageSize, (WorklistPage.clamp(page) - 1) * pageSize]
                                                  + (tab == .resolved ? [] : [roleTarget])))
            }
            return WorklistPage(
                tab: tab, page: page, pageSize: pageSize, total: total,
                entries: try Self.entries(db, rows, window: window, now: now), counts: byTab, openCritical: counts["critical"])
        }
    }

    /// The task with `id` as a worklist entry, or nil.
    public func worklistEntry(taskID: Int64, window: SparklineWindow = .init(), now: Date) async throws -> WorklistEntry? {
        try await writer.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT \(CareTask.columns(of: "t")), p.name AS patient_name, u.display_name AS owner_name
                    FROM tasks t JOIN patients p ON p.id = t.patient_id LEFT JOIN users u ON u.username = t.owner
                    WHERE t.id = ?
                    """,
                arguments: [taskID])
            return try Self.entries(db, rows, window: window, now: now).first
        }
    }

    /// Decorates task rows (with `patient_name` and `owner_name`) with what their worklist rows show;
    /// a fixed number of queries for the whole page.
    static func entries(_ db: Database, _ rows: [Row], window: SparklineWindow, now: Date) throws -> [WorklistEntry] {
        guard !rows.isEmpty else { return [] }
        let tasks = rows.map(CareTask.init(row:))
        let patients = Set(tasks.map(\.patientID))
        let patientsJSON = try jsonArray(patients)

        var programs: [String: [Program]] = [:]
        for row in try Row.fetchAll(
            db, sql: "SELECT patient_id, program FROM patient_programs WHERE patient_id IN (SELECT value FROM json_each(?)) ORDER BY program",
            arguments: [patientsJSON]) {
            if let p = Program(rawValue: row[1]) { programs[row[0], default: []].append(p) }
        }
        let overrides = try thresholdOverrides(db, patientIDsJSON: patientsJSON)

        var badges: [String: (late: Bool, devices: Int)] = [:]
        for row in try Row.fetchAll(
            db,
            sql: """
                SELECT patient_id, sum(kind = 'late_data') AS late, sum(kind = 'device') AS devices FROM tasks
                WHERE status <> 'resolved' AND kind IN ('late_data', 'device') AND patient_id IN (SELECT value FROM json_each(?))
                GROUP BY patient_id
                """,
            arguments: [patientsJSON]) {
            badges[row["patient_id"]] = ((row["late"] as Int) > 0, row["devices"])
        }

        // The readings measured with each task's last reading on the same device (both pressures of a cuff).
        var latest: [Int64: [WorklistReading]] = [:]
        let anchors = Set(tasks.compactMap(\.lastReadingID).map(String.init))
        if !anchors.isEmpty {
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT l.id AS anchor, r.type, r.canonical_value, r.measured_at, r.received_at
                    FROM readings l JOIN readings r ON r.device_id = l.device_id AND r.measured_at = l.measured_at
                    WHERE l.id IN (SELECT CAST(value AS INTEGER) FROM json_each(?))
                    ORDER BY r.id
                    """,
                arguments: [try jsonArray(anchors)]) {
                guard let type = VitalType(rawValue: row["type"]) else { continue }
                latest[row["anchor"], default: []].append(WorklistReading(
                    type: type, value: row["canonical_value"], measuredAt: dateFromEpochMilliseconds(row["measured_at"]),
                    receivedAt: dateFromEpochMilliseconds(row["received_at"])))
            }
        }

        // Sparklines: the minimum and maximum of each bucket, per patient and type.
        let end = epochMilliseconds(now)
        let span = Int64(window.seconds * 1000)
        let start = end - span
        let types = Set(tasks.flatMap { WorklistEntry.types(ofVital: $0.vital) }.map(\.rawValue))
        var history: [String: [VitalType: [SparklineBucket]]] = [:]
        if !types.isEmpty {
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT patient_id, type, min(?4 - 1, (measured_at - ?2) * ?4 / ?3) AS bucket,
                           min(canonical_value) AS low, max(canonical_value) AS high
                    FROM readings
                    WHERE patient_id IN (SELECT value FROM json_each(?1)) AND measured_at >= ?2
                      AND type IN (SELECT value FROM json_each(?5))
                    GROUP BY patient_id, type, bucket
                    ORDER BY bucket
                    """,
                arguments: [patientsJSON, start, span, window.buckets, try jsonArray(types)]) {
                // By position: thousands of rows, and a lookup by name costs more than the query.
                guard let type = VitalType(rawValue: row[1]) else { continue }
                history[row[0], default: [:]][type, default: []].append(SparklineBucket(index: row[2], minimum: row[3], maximum: row[4]))
            }
        }

        return zip(rows, tasks).map { row, task in
            let vitalTypes = Set(WorklistEntry.types(ofVital: task.vital))
            return WorklistEntry(
                task: task, patientName: row["patient_name"], ownerName: row["owner_name"],
                nextEscalationAt: (row["next_escalation_at"] as Int64?).map(dateFromEpochMilliseconds),
                latest: task.lastReadingID.flatMap { latest[$0] }?.filter { vitalTypes.contains($0.type) } ?? [],
                programs: programs[task.patientID] ?? [], overrides: overrides[task.patientID] ?? [:],
                lateData: badges[task.patientID]?.late ?? false, deviceProblems: badges[task.patientID]?.devices ?? 0,
                history: (history[task.patientID] ?? [:]).filter { vitalTypes.contains($0.key) })
        }
    }

    /// The events of a task, oldest first.
    public func taskHistory(taskID: Int64) async throws -> [TaskEvent] {
        try await writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT at, event, actor, reading_id, detail FROM task_events WHERE task_id = ? ORDER BY id", arguments: [taskID]
            ).map { r in
                TaskEvent(at: dateFromEpochMilliseconds(r["at"]), event: r["event"], actor: r["actor"], readingID: r["reading_id"],
                          detail: r["detail"])
            }
        }
    }

    /// The notes of a task, oldest first.
    public func taskNotes(taskID: Int64) async throws -> [TaskNote] {
        try await writer.read { db in try Self.fetchNotes(db, taskID: taskID) }
    }

    /// The newest task event id and the newest audit entry id: a change to either may change a worklist.
    /// Other processes (the CLI, a second daemon) write the same file, so this is read, not pushed.
    public func worklistCursor() async throws -> (taskEvent: Int64, audit: Int64) {
        try await writer.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT (SELECT coalesce(max(id), 0) FROM task_events) AS events, (SELECT coalesce(max(id), 0) FROM audit_log) AS audit
                """)!
            return (row["events"], row["audit"])
        }
    }
}

