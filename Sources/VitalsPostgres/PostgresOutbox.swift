import Foundation
import Logging
import PostgresNIO
import VitalsDomain

/// The outbox of task events on PostgreSQL, delivered by one node per channel.
///
/// Each channel (`mqtt`, `webhook`) has a cursor in `delivery_cursors`: the highest event id its
/// receiver accepted. Event ids are taken under a transaction-level advisory lock held to the
/// commit (``orderLockKey``), so they become visible in id order and the cursor never passes an
/// event still to commit. The node that delivers a channel holds the lease named
/// ``leaseName(channel:)``; its cursor moves only under that lease, which fences a former holder.
public struct PostgresOutbox: Sendable {
    /// The advisory lock that orders event ids by commit: the bytes of "vitalsdo" as a bigint.
    public static let orderLockKey: Int64 = 0x7669_7461_6C73_646F

    /// The lease that makes one node the deliverer of `channel` (in `mqtt_session_leases`).
    public static func leaseName(channel: String) -> String { "delivery:\(channel)" }

    private let client: PostgresClient
    private let logger: Logger

    /// - Parameters:
    ///   - client: a running client on a migrated database.
    ///   - logger: for postgres-nio's query logging.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Starts `channel` at the newest event unless it has a cursor: call it before ingest starts, so
    /// that nothing raised after start-up is skipped and no older history is replayed.
    /// - Throws: the server's or connection's error.
    public func open(channel: String, now: Date) async throws {
        try await client.query("""
            INSERT INTO delivery_cursors (channel, last_event_id, updated_at)
            SELECT \(channel), coalesce(max(id), 0), \(epochMilliseconds(now)) FROM outbox
            ON CONFLICT (channel) DO NOTHING
            """, logger: logger)
    }

    /// The events after `channel`'s cursor, oldest first, at most `limit`.
    /// - Throws: the server's or connection's error.
    public func pendingEvents(channel: String, limit: Int) async throws -> [OutboxEvent] {
        try await client.query("""
            SELECT o.id, o.event_id, o.patient_id, o.body FROM outbox o
            WHERE o.id > (SELECT last_event_id FROM delivery_cursors WHERE channel = \(channel))
            ORDER BY o.id LIMIT \(limit)
            """, logger: logger).decode((Int64, String, String, String).self).collected()
            .map { OutboxEvent(id: $0.0, eventID: $0.1, patientID: $0.2, body: $0.3) }
    }

    /// Moves `channel`'s cursor to `eventID` (never back), if `lease` still holds.
    /// - Throws: ``LeaseLost`` (nothing moved) when another node delivers the channel now.
    public func markDelivered(channel: String, through eventID: Int64, lease: Lease, at: Date) async throws {
        let rows = try await client.query("""
            UPDATE delivery_cursors SET last_event_id = greatest(last_event_id, \(eventID)), updated_at = \(epochMilliseconds(at))
            WHERE channel = \(channel) AND EXISTS (
                SELECT 1 FROM mqtt_session_leases WHERE session_id = \(lease.session) AND owner = \(lease.node) AND epoch = \(lease.epoch))
            RETURNING last_event_id
            """, logger: logger).decode(Int64.self).collected()
        guard !rows.isEmpty else { throw LeaseLost(lease: lease, currentOwner: nil, currentEpoch: nil) }
    }

    /// Events not yet delivered on `channel`.
    /// - Throws: the server's or connection's error.
    public func backlog(channel: String) async throws -> Int {
        let rows = try await client.query("""
            SELECT count(*) FROM outbox WHERE id > coalesce((SELECT last_event_id FROM delivery_cursors WHERE channel = \(channel)), 0)
            """, logger: logger).decode(Int64.self).collected()
        return Int(rows.first ?? 0)
    }
}
