import Foundation
import GRDB
import VitalsAlerting
import VitalsDomain

extension AppDatabase {
    /// What one run of the alert timers changed.
    public typealias AlertTimerSummary = VitalsAlerting.AlertTimerSummary

    /// Runs the time-based alert rules (``TimerRules``), even when no message arrives: escalation of
    /// `open` `critical` tasks not acknowledged in time, and the end of confirmation windows without
    /// a re-measurement. The schedule lives in the tasks table (`next_escalation_at`), so a restart
    /// neither forgets an escalation nor repeats one.
    ///
    /// - Parameter now: the daemon clock's time.
    public func runAlertTimers(policy: AlertPolicy, now: Date) async throws -> AlertTimerSummary {
        try await writer.write { db in
            let nowMS = epochMilliseconds(now)
            let due = try Row.fetchAll(
                db, sql: "SELECT \(CareTask.columns) FROM tasks WHERE next_escalation_at <= ? ORDER BY next_escalation_at", arguments: [nowMS]
            ).map(CareTask.init(row:))
            // The active care manager of each due task's patient: whom a first escalation reaches
            // when the task has no owner.
            var careManagers: [String: String] = [:]
            if !due.isEmpty {
                for row in try Row.fetchAll(
                    db,
                    sql: """
                        SELECT p.id, u.username FROM patients p JOIN users u ON u.username = p.care_manager AND u.disabled = 0
                        WHERE p.id IN (SELECT value FROM json_each(?))
                        """,
                    arguments: [try Self.jsonArray(Set(due.map(\.patientID)))]) {
                    careManagers[row[0]] = row[1]
                }
            }
            let escalations = TimerRules.escalations(due, policy: policy, careManagers: careManagers, now: now)
            try Self.apply(db, escalations, incarnation: incarnation)
            let pending = try Row.fetchAll(
                db, sql: "SELECT \(CareTask.columns) FROM tasks WHERE confirmation = 'pending' AND confirmation_due_at < ?", arguments: [nowMS]
            ).map(CareTask.init(row:))
            let expired = TimerRules.expiredConfirmations(pending, now: now)
            try Self.apply(db, expired, incarnation: incarnation)
            return AlertTimerSummary(escalations: escalations, expired: expired)
        }
    }

    /// Open `critical` tasks waiting for an acknowledgement, and how many of them were escalated at least once.
    public func escalationCounts() async throws -> (waiting: Int, escalated: Int) {
        try await writer.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT count(*) AS waiting, coalesce(sum(escalation_level > 0), 0) AS escalated
                FROM tasks WHERE next_escalation_at IS NOT NULL
                """)!
            return (row["waiting"], row["escalated"])
        }
    }

    /// Unresolved tasks by priority, for the `vitalsd_tasks_open{priority}` gauge.
    public func unresolvedTaskCounts() async throws -> [TaskPriority: Int] {
        try await writer.read { db in
            var result = Dictionary(uniqueKeysWithValues: TaskPriority.allCases.map { ($0, 0) })
            for row in try Row.fetchAll(db, sql: "SELECT priority, count(*) FROM tasks WHERE status <> 'resolved' GROUP BY priority") {
                if let p = TaskPriority(rawValue: row[0]) { result[p] = row[1] }
            }
            return result
        }
    }
}
