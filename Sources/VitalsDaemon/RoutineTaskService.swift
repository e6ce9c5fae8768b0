import Foundation
import Logging
import ServiceLifecycle
import VitalsAlerting
import VitalsDomain
import VitalsStore

/// Raises routine tasks on a timer, even when no message arrives: days of data out of reach for
/// CPT 99454, and patients whose devices fell silent. Its state is the tasks table itself, so a
/// restart neither forgets nor repeats a task.
public struct RoutineTaskService: Service {
    /// One run at the given time: the tasks opened, or nil when another node ran the checks this interval.
    let runOnce: @Sendable (Date) async throws -> RoutineSummary?
    let interval: Duration
    let clock: any WallClock
    let logger: Logger

    /// - Parameters:
    ///   - noDataDays: days of silence before a `no_data` task.
    ///   - interval: time between checks (default 5 minutes).
    ///   - lowBatteryPercent: battery level that makes a routine device task; nil: never.
    ///   - clock: the time the rules see, and the timer's sleep.
    public init(
        database: AppDatabase, rules: BillingRules, noDataDays: Int, lowBatteryPercent: Double? = 15,
        interval: Duration = .seconds(300), clock: any WallClock = SystemWallClock(), logger: Logger
    ) {
        self.init(interval: interval, clock: clock, logger: logger) { now in
            try await databaseWork {
                try await database.openRoutineTasks(
                    rules: rules, noDataDays: noDataDays, lowBatteryPercent: lowBatteryPercent, now: now)
            }
        }
    }

    /// The checks over another store (PostgreSQL: ``PostgresRoutineChecks``).
    /// - Parameter run: one run at the given time: the tasks opened, or nil when another node ran
    ///   the checks this interval.
    public init(
        interval: Duration, clock: any WallClock = SystemWallClock(), logger: Logger,
        run: @escaping @Sendable (Date) async throws -> RoutineSummary?
    ) {
        self.runOnce = run
        self.interval = interval
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        let (runOnce, clock) = (self.runOnce, self.clock)
        await repeatUntilShutdown(every: interval, clock: clock, immediately: true) {
            do {
                guard let s = try await runOnce(clock.now()) else { return }
                if s.total > 0 {
                    logger.notice("routine tasks opened", metadata: [
                        "task.days_of_data": "\(s.daysOfDataTasks)", "task.no_data": "\(s.noDataTasks)",
                        "task.silent_device": "\(s.silentDeviceTasks)", "task.low_battery": "\(s.lowBatteryTasks)"])
                }
            } catch is CancellationError {
                // Shutting down.
            } catch {
                logger.error("routine task check failed", metadata: ["db.error": "\(error)"])
            }
        }
    }
}
