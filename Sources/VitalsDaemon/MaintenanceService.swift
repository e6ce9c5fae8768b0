import Foundation
import Logging
import ServiceLifecycle
import VitalsStore

/// Database care on a timer: a truncating WAL checkpoint, and the purge of dead-letter payloads
/// older than the retention period. Failures are logged loudly and retried at the next run.
public struct MaintenanceService: Service {
    let database: AppDatabase
    let interval: Duration
    /// Days to keep raw dead-letter payloads; nil keeps them forever.
    let payloadRetentionDays: Int?
    let logger: Logger

    public init(database: AppDatabase, interval: Duration, payloadRetentionDays: Int?, logger: Logger) {
        self.database = database
        self.interval = interval
        self.payloadRetentionDays = payloadRetentionDays
        self.logger = logger
    }

    public func run() async throws {
        let interval = self.interval
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            guard !Task.isShuttingDownGracefully else { break }
            do {
                let pages = try database.checkpoint()
                logger.debug("WAL checkpoint", metadata: ["db.pages": "\(pages)"])
                if let days = payloadRetentionDays {
                    let purged = try database.purgeDeadLetterPayloads(before: Date().addingTimeInterval(-Double(days) * 86_400))
                    if purged > 0 { logger.info("dead-letter payloads purged", metadata: ["db.payloads": "\(purged)"]) }
                }
            } catch {
                logger.error("database maintenance failed", metadata: ["db.error": "\(error)"])
            }
        }
    }
}
