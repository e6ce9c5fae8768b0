import Foundation
import Logging
import PostgresNIO
import VitalsAlerting
import VitalsDomain

/// The time-based alert rules (``TimerRules``) on PostgreSQL: escalation of `open` `critical` tasks
/// not acknowledged in time, and the end of confirmation windows without a re-measurement.
///
/// Every node runs them on its timer; one run at a time does the work: each run's transaction first
/// tries a transaction-level advisory lock (``lockKey``), and a node that does not get it does
/// nothing this round. The schedule lives in the tasks table (`next_escalation_at`), so a node's
/// death neither forgets an escalation nor lets another node repeat it.
public struct PostgresTimers: Sendable {
    /// The advisory lock of a timer run: the bytes of "vitalsdt" as a bigint.
    public static let lockKey: Int64 = 0x7669_7461_6C73_6474

    private let client: PostgresClient
    private let logger: Logger

    /// - Parameters:
    ///   - client: a running client on a migrated database.
    ///   - logger: for postgres-nio's query logging.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// One run at `now`: the same decisions as the SQLite store's `runAlertTimers`, applied by the
    /// PostgreSQL task writer in one transaction.
    /// - Parameters:
    ///   - policy: the escalation schedule and backup.
    ///   - now: the daemon clock's time.
    ///   - incarnation: part of each event's `event_id`.
    /// - Returns: what changed; empty when another node's run held the lock.
    /// - Throws: the server's or connection's error (nothing changed).
    public func run(policy: AlertPolicy, now: Date, incarnation: String) async throws -> AlertTimerSummary {
        let logger = logger
        return try await unwrappingTransactionError {
            try await client.withTransaction(logger: logger) { connection -> AlertTimerSummary in
                let locked = try await connection.query("SELECT pg_try_advisory_xact_lock(\(Self.lockKey))", logger: logger)
                    .decode(Bool.self).collected()
                guard locked.first == true else { return AlertTimerSummary() }
                let nowMS = epochMilliseconds(now)
                let due = try await Self.tasks(
                    connection, "WHERE next_escalation_at <= \(nowMS) ORDER BY next_escalation_at", logger)
                var careManagers: [String: String] = [:]
                if !due.isEmpty {
                    let patients = Array(Set(due.map(\.patientID)))
                    for (patient, username) in try await connection.query("""
                        SELECT p.id, u.username FROM patients p JOIN users u ON u.username = p.care_manager AND u.disabled = 0
                        WHERE p.id = ANY(\(patients)::text[])
                        """, logger: logger).decode((String, String).self).collected() {
                        careManagers[patient] = username
                    }
                }
                let escalations = TimerRules.escalations(due, policy: policy, careManagers: careManagers, now: now)
                _ = try await PostgresTaskWriter.apply(connection, escalations, incarnation: incarnation, logger: logger)
                let pending = try await Self.tasks(
                    connection, "WHERE confirmation = 'pending' AND confirmation_due_at < \(nowMS)", logger)
                let expired = TimerRules.expiredConfirmations(pending, now: now)
                _ = try await PostgresTaskWriter.apply(connection, expired, incarnation: incarnation, logger: logger)
                return AlertTimerSummary(escalations: escalations, expired: expired)
            }
        }
    }

    /// Open `critical` tasks waiting for an acknowledgement.
    /// - Throws: the server's or connection's error.
    public func waitingForAcknowledgement() async throws -> Int {
        let rows = try await client.query("SELECT count(*) FROM tasks WHERE next_escalation_at IS NOT NULL", logger: logger)
            .decode(Int64.self).collected()
        return Int(rows.first ?? 0)
    }

    private static func tasks(_ connection: PostgresConnection, _ condition: String, _ logger: Logger) async throws -> [CareTask] {
        var tasks: [CareTask] = []
        for try await row in try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT \(PostgresTaskWriter.taskColumns) FROM tasks \(condition) FOR UPDATE"), logger: logger) {
            tasks.append(try PostgresTaskWriter.task(row))
        }
        return tasks
    }
}
