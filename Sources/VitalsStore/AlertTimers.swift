import Foundation
import GRDB
import VitalsDomain

extension AppDatabase {
    /// What one run of the alert timers changed.
    public struct AlertTimerSummary: Sendable, Hashable {
        /// Tasks escalated in this run.
        public var escalated = 0
        /// Pending confirmations closed as `not_repeated`.
        public var notRepeated = 0
        public init() {}
    }

    /// Runs the time-based alert rules, even when no message arrives:
    /// - each `open` `critical` task whose escalation time has come is escalated: its
    ///   `escalation_level` rises by one, `escalated_at` is set, an `escalated` event is written (and
    ///   so delivered), and its next escalation is scheduled per ``AlertPolicy/escalationRepeat(after:)``;
    /// - each pending confirmation whose window has passed without a re-measurement becomes `not_repeated`.
    ///
    /// The schedule lives in the tasks table (`next_escalation_at`), so a restart neither forgets an
    /// escalation nor repeats one. Acknowledging or resolving a task clears it.
    public func runAlertTimers(policy: AlertPolicy, now: Date = Date()) throws -> AlertTimerSummary {
        let nowMS = epochMilliseconds(now)
        return try writer.write { db in
            var summary = AlertTimerSummary()
            let due = try Row.fetchAll(
                db, sql: "SELECT id, escalation_level FROM tasks WHERE next_escalation_at <= ? ORDER BY next_escalation_at",
                arguments: [nowMS])
            for row in due {
                let id: Int64 = row["id"]
                let level: Int = row["escalation_level"] + 1
                let next = nowMS + Int64(policy.escalationRepeat(after: level) * 1000)
                try db.execute(
                    sql: "UPDATE tasks SET escalation_level = ?, escalated_at = ?, next_escalation_at = ?, updated_at = ? WHERE id = ?",
                    arguments: [level, nowMS, next, nowMS, id])
                try db.execute(
                    sql: "INSERT INTO task_events(task_id, at, event, actor, detail) VALUES (?, ?, 'escalated', 'vitalsd', ?)",
                    arguments: [id, nowMS, "level \(level)"])
                summary.escalated += 1
            }
            let expired = try Int64.fetchAll(
                db, sql: "SELECT id FROM tasks WHERE confirmation = 'pending' AND confirmation_due_at < ?", arguments: [nowMS])
            for id in expired {
                try db.execute(
                    sql: "UPDATE tasks SET confirmation = 'not_repeated', confirmation_due_at = NULL, updated_at = ? WHERE id = ?",
                    arguments: [nowMS, id])
                try db.execute(
                    sql: "INSERT INTO task_events(task_id, at, event, actor, detail) VALUES (?, ?, 'confirmation', 'vitalsd', 'not_repeated')",
                    arguments: [id, nowMS])
                summary.notRepeated += 1
            }
            return summary
        }
    }

    /// Open `critical` tasks waiting for an acknowledgement, and how many of them were escalated at least once.
    public func escalationCounts() throws -> (waiting: Int, escalated: Int) {
        try writer.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT count(*) AS waiting, coalesce(sum(escalation_level > 0), 0) AS escalated
                FROM tasks WHERE next_escalation_at IS NOT NULL
                """)!
            return (row["waiting"], row["escalated"])
        }
    }
}
