import Foundation
import Logging
import ServiceLifecycle
import VitalsStore

/// Database care on a timer: a truncating WAL checkpoint, the purge of dead-letter payloads older
/// than the retention period, and of outbox copies of task events that every delivery channel took
/// more than 30 days ago (the task events themselves stay). Failures are logged loudly and retried
/// at the next run.
public struct MaintenanceService: Service {
    let database: AppDatabase
    let interval: Duration
    /// Days to keep raw dead-letter payloads; nil keeps them forever.
    let payloadRetentionDays: Int?
    /// The delivery channels in use (`mqtt`, `webhook`).
    let deliveryChannels: [String]
    let logger: Logger

    public init(database: AppDatabase, interval: Duration, payloadRetentionDays: Int?, deliveryChannels: [String] = [],
                logger: Logger) {
        self.database = database
        self.interval = interval
        self.payloadRetentionDays = payloadRetentionDays
        self.deliveryChannels = deliveryChannels
        self.logger = logger
    }

    public func run() async throws {
        await repeatUntilShutdown(every: interval) {
            let (database, days, channels) = (self.database, self.payloadRetentionDays, self.deliveryChannels)
            do {
                let (pages, purged, delivered) = try await databaseWork { try await offPool {
                    let pages = try database.checkpoint()
                    let purged = try days.map {
                        try database.purgeDeadLetterPayloads(before: Date().addingTimeInterval(-Double($0) * 86_400))
                    } ?? 0
                    return (pages, purged, try database.purgeDeliveredEvents(channels: channels, olderThanDays: 30))
                } }
                logger.debug("WAL checkpoint", metadata: ["db.pages": "\(pages)"])
                if purged > 0 { logger.info("dead-letter payloads purged", metadata: ["db.payloads": "\(purged)"]) }
                if delivered > 0 { logger.debug("delivered outbox rows purged", metadata: ["db.outbox": "\(delivered)"]) }
            } catch is CancellationError {
                // Shutting down.
            } catch {
                logger.error("database maintenance failed", metadata: ["db.error": "\(error)"])
            }
        }
    }
}

/// Checkpoints the WAL every `interval` (default 0.1 s) from a connection of its own, so that the
/// commits of ingest never run a checkpoint themselves (`AppDatabase.open(backgroundCheckpoints:)`).
///
/// The interval sets how much each checkpoint writes into the database file and `fsync`s at once,
/// and while it does, the commits' `fsync` of the WAL waits behind it on the disk: without any
/// checkpoint the live p99 at 5,000 msg/s was 7.5 ms, with one every 0.5 s 50-190 ms, with one
/// every 0.1 s 30-50 % less than that in six of six paired runs, at no cost to the backlog drain
/// (BENCHMARKS.md, "Checkpoints and the live tail"). An idle WAL makes a checkpoint a no-op.
/// Failures are logged and retried at the next turn; the WAL then grows until one succeeds, and the
/// truncating checkpoint of ``MaintenanceService`` still runs.
public struct WALCheckpointService: Service {
    let checkpointer: WALCheckpointer
    let interval: Duration
    let logger: Logger

    public init(checkpointer: WALCheckpointer, interval: Duration = .milliseconds(100), logger: Logger) {
        self.checkpointer = checkpointer
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var failures = FailureLog(every: .seconds(60))
        await repeatUntilShutdown(firstAfter: interval) {
            do {
                let result = try await checkpointer.checkpointBounded()
                logger.trace("passive WAL checkpoint", metadata: ["db.pages": "\(result.checkpointed)", "db.wal_pages": "\(result.walPages)"])
                if let failed = failures.recovered() {
                    logger.notice("WAL checkpoints succeed again", metadata: ["db.failed_checkpoints": "\(failed)"])
                }
                // While the WAL is large, the next turn comes soon: each copies less, and the restart
                // finds little left to copy while it holds commits back.
                return result.walPages > WALCheckpointer.restartAbovePages && !result.restarted ? .milliseconds(20) : interval
            } catch {
                // Every turn: log the first failure, then one line a minute with the count.
                if let count = failures.failed() {
                    logger.error("WAL checkpoint failed", metadata: [
                        "db.error": "\(AppDatabase.describeWriteFailure(error))", "db.failed_checkpoints": "\(count)",
                    ])
                }
                return interval
            }
        }
        try? checkpointer.close()
    }
}

/// Rate-limits the log lines of a failure that repeats on a timer: the first failure, then at most
/// one line per interval, each with the failures counted since the failing began.
public struct FailureLog: Sendable {
    public let every: Duration
    private var count = 0
    private var lastLogged: ContinuousClock.Instant?

    public init(every: Duration) { self.every = every }

    /// Records a failure.
    /// - Returns: the failures so far when this one should be logged, else nil.
    public mutating func failed(now: ContinuousClock.Instant = .now) -> Int? {
        count += 1
        if let last = lastLogged, now - last < every { return nil }
        lastLogged = now
        return count
    }

    /// Records a success.
    /// - Returns: the failures counted when this success ends a failing, else nil.
    public mutating func recovered() -> Int? {
        defer {
            count = 0
            lastLogged = nil
        }
        return count > 0 ? count : nil
    }
}

/// Runs `body` every `interval` until the service group shuts down gracefully or the task is cancelled.
