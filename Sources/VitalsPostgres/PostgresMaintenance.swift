import Foundation
import Logging
import PostgresNIO
import VitalsDomain

/// Database care on PostgreSQL, the twin of the SQLite store's maintenance: the purge of dead-letter
/// payloads older than the retention period (payloads can hold PHI), and of outbox copies of task
/// events that every delivery channel took long ago (the task events themselves stay). The server's
/// own care (autovacuum, WAL archiving, backups) stays the operator's.
public struct PostgresMaintenance: Sendable {
    private let client: PostgresClient
    private let logger: Logger

    /// - Parameters:
    ///   - client: a running client on a migrated database.
    ///   - logger: for postgres-nio's query logging.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Empties the payloads of dead letters received before `cutoff`; their reasons, topics, sizes
    /// and digests stay, so a redelivery of the message is still recognised (migration 6).
    /// - Returns: the payloads emptied.
    /// - Throws: the server's or connection's error.
    @discardableResult
    public func purgeDeadLetterPayloads(before cutoff: Date) async throws -> Int {
        try await client.query("""
            UPDATE dead_letters SET payload = ''::bytea WHERE received_at < \(epochMilliseconds(cutoff)) AND length(payload) > 0
            RETURNING 1
            """, logger: logger).collect().count
    }

    /// Deletes the outbox copies of task events that every channel in `channels` delivered and that
    /// are older than `days`. A channel without a cursor yet keeps everything.
    /// - Returns: the outbox rows deleted.
    /// - Throws: the server's or connection's error.
    @discardableResult
    public func purgeDeliveredEvents(channels: [String], olderThanDays days: Int, now: Date) async throws -> Int {
        guard !channels.isEmpty else { return 0 }
        let cutoff = epochMilliseconds(now) - Int64(days) * 86_400_000
        return try await client.query("""
            WITH floor AS (
                SELECT CASE WHEN count(c.channel) = \(channels.count) THEN min(c.last_event_id) ELSE 0 END AS id
                FROM unnest(\(channels)::text[]) AS wanted(channel)
                LEFT JOIN delivery_cursors c ON c.channel = wanted.channel
            )
            DELETE FROM outbox WHERE id <= (SELECT id FROM floor) AND created_at < \(cutoff)
            RETURNING 1
            """, logger: logger).collect().count
    }
}
