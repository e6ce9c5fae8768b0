import Foundation
import Logging
import ServiceLifecycle
import VitalsStore

/// Database care on a timer: a truncating WAL checkpoint, the purge of dead-letter payloads older
/// than the retention period, and of outbox copies of task events that every delivery channel took
/// more than 30 days ago (the task events themselves stay). Failures are logged loudly and retried
/// at the next run.
public struct MaintenanceService: Service {
    /// What one run did.
    public struct Summary: Sendable, Hashable {
        /// WAL pages checkpointed (SQLite); nil on PostgreSQL.
        public var checkpointedPages: Int?
        /// Dead-letter payloads purged.
        public var purgedPayloads = 0
        /// Outbox copies of delivered task events purged.
        public var purgedOutbox = 0

        public init(checkpointedPages: Int? = nil, purgedPayloads: Int = 0, purgedOutbox: Int = 0) {
            self.checkpointedPages = checkpointedPages
            self.purgedPayloads = purgedPayloads
            self.purgedOutbox = purgedOutbox
        }
    }

    /// One run at the given time; nil when another node ran it this interval.
    let runOnce: @Sendable (Date) async throws -> Summary?
    let interval: Duration
    let logger: Logger

    /// - Parameters:
    ///   - payloadRetentionDays: days to keep raw dead-letter payloads; nil keeps them forever.
    ///   - deliveryChannels: the delivery channels in use (`mqtt`, `webhook`).
    public init(database: AppDatabase, interval: Duration, payloadRetentionDays: Int?, deliveryChannels: [String] = [],
                logger: Logger) {
        self.init(interval: interval, logger: logger) { now in
            try await databaseWork { try await offPool {
                let pages = try database.checkpoint()
                let purged = try payloadRetentionDays.map {
                    try database.purgeDeadLetterPayloads(before: now.addingTimeInterval(-Double($0) * 86_400))
                } ?? 0
                let delivered = try database.purgeDeliveredEvents(channels: deliveryChannels, olderThanDays: 30, now: now)
                return Summary(checkpointedPages: pages, purgedPayloads: purged, purgedOutbox: delivered)
            } }
        }
    }

    /// Maintenance of another store (PostgreSQL: ``PostgresMaintenance``).
    /// - Parameter run: one run at the given time; nil when another node ran it this interval.
    public init(interval: Duration, logger: Logger, run: @escaping @Sendable (Date) async throws -> Summary?) {
        self.runOnce = run
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let runOnce = self.runOnce
        await repeatUntilShutdown(every: interval) {
            do {
                guard let s = try await runOnce(Date()) else { return }
                if let pages = s.checkpointedPages { logger.debug("WAL checkpoint", metadata: ["db.pages": "\(pages)"]) }
                if s.purgedPayloads > 0 { logger.info("dead-letter payloads purged", metadata: ["db.payloads": "\(s.purgedPayloads)"]) }
                if s.purgedOutbox > 0 { logger.debug("delivered outbox rows purged", metadata: ["db.outbox": "\(s.purgedOutbox)"]) }
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
