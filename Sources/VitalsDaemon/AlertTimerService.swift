import Foundation
import Logging
import ServiceLifecycle
import VitalsAlerting
import VitalsDomain
import VitalsStore

/// Runs the time-based alert rules on a timer, even when no message arrives: escalation of
/// unacknowledged `critical` tasks and the end of confirmation windows. The schedule is stored in
/// the tasks table, so a restart neither forgets nor repeats an escalation.
public struct AlertTimerService: Service {
    /// One run at a time: what changed, and the open critical tasks still waiting.
    let runOnce: @Sendable (Date) async throws -> (AlertTimerSummary, Int)
    let interval: Duration
    let metrics: VitalsMetrics?
    let clock: any WallClock
    let logger: Logger

    /// - Parameters:
    ///   - interval: time between runs (`alerts.check_interval_seconds`, default 30 s), on `clock`.
    ///   - clock: the time the rules see, and the timer's sleep.
    public init(
        database: AppDatabase, policy: AlertPolicy, interval: Duration, metrics: VitalsMetrics?,
        clock: any WallClock = SystemWallClock(), logger: Logger
    ) {
        self.init(interval: interval, metrics: metrics, clock: clock, logger: logger) { now in
            try await databaseWork {
                (try await database.runAlertTimers(policy: policy, now: now), try await database.escalationCounts().waiting)
            }
        }
    }

    /// The timers over another store (PostgreSQL: ``PostgresTimers``).
    /// - Parameter run: one run at the given time: what changed, and the open critical tasks still waiting.
    public init(
        interval: Duration, metrics: VitalsMetrics?, clock: any WallClock = SystemWallClock(), logger: Logger,
        run: @escaping @Sendable (Date) async throws -> (AlertTimerSummary, Int)
    ) {
        self.runOnce = run
        self.interval = interval
        self.metrics = metrics
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        let (runOnce, clock) = (self.runOnce, self.clock)
        await repeatUntilShutdown(every: interval, clock: clock, immediately: true) {
            do {
                let (s, waiting) = try await runOnce(clock.now())
                metrics?.recordEscalations(s.escalated, byLevel: s.escalatedByLevel, unreached: s.unreached.count, waiting: waiting)
                if s.escalated > 0 {
                    logger.warning("critical tasks escalated: not acknowledged in time", metadata: ["task.escalated": "\(s.escalated)"])
                }
                if !s.unreached.isEmpty {
                    logger.error(
                        "critical tasks escalated to nobody: no owner, no active care manager of the patient, and no enabled alerts.escalation_backup_user or _role",
                        metadata: ["task.ids": "\(s.unreached.map(String.init).joined(separator: ","))"])
                }
                if s.notRepeated > 0 {
                    logger.info("confirmation windows ended without a re-measurement", metadata: ["task.not_repeated": "\(s.notRepeated)"])
                }
            } catch is CancellationError {
                // Shutting down.
            } catch {
                logger.error("alert timer run failed", metadata: ["db.error": "\(error)"])
            }
        }
    }
}
